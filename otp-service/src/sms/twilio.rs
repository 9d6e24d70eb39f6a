//! Twilio's Messages REST API.

use std::time::Duration;

use async_trait::async_trait;

use super::{SmsError, SmsSender};

/// Waits before the 2nd, 3rd, ... attempt; the last repeats.
const BACKOFF: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];

/// Where and how to reach Twilio.
#[derive(Clone)]
pub struct TwilioConfig {
    /// API base URL (default `https://api.twilio.com`); tests point it at a local server.
    pub base_url: String,
    /// Account SID (Basic auth user and part of the path).
    pub account_sid: String,
    /// Auth token (Basic auth password).
    pub auth_token: String,
    /// The sending number or messaging service, Twilio's `From`.
    pub from: String,
    /// Timeout of each HTTP attempt (default 10 s).
    pub timeout: Duration,
    /// Attempts in all, counting the first (default 3). Only 5xx answers, network errors and
    /// timeouts are retried.
    pub max_attempts: u32,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: String::new(),
            auth_token: String::new(),
            from: String::new(),
            timeout: Duration::from_secs(10),
            max_attempts: 3,
        }
    }
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// Sends SMS through `POST {base}/2010-04-01/Accounts/{sid}/Messages.json`.
#[derive(Debug)]
pub struct TwilioSender {
    config: TwilioConfig,
    url: String,
    client: reqwest::Client,
}

/// What one attempt came to.
enum Attempt {
    Sent,
    Retryable(String),
    Final(SmsError),
}

impl TwilioSender {
    /// A sender for `config`. Fails only if the HTTP client cannot be built (TLS setup).
    pub fn new(config: TwilioConfig) -> Result<Self, SmsError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|_| SmsError::Unavailable {
                detail: "could not build the HTTP client".into(),
            })?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            config.base_url.trim_end_matches('/'),
            config.account_sid
        );
        Ok(Self {
            config,
            url,
            client,
        })
    }

    async fn attempt(&self, to_e164: &str, body: &str) -> Attempt {
        let response = self
            .client
            .post(&self.url)
            .basic_auth(&self.config.account_sid, Some(&self.config.auth_token))
            .form(&[
                ("To", to_e164),
                ("From", self.config.from.as_str()),
                ("Body", body),
            ])
            .send()
            .await;
        let status = match response {
            Ok(response) => response.status(),
            Err(e) if e.is_timeout() => return Attempt::Retryable("timeout".into()),
            Err(e) if e.is_connect() => return Attempt::Retryable("connection failed".into()),
            Err(e) if e.is_builder() => {
                return Attempt::Final(SmsError::Misconfigured { status: 0 });
            }
            Err(_) => return Attempt::Retryable("network error".into()),
        };
        let code = status.as_u16();
        match code {
            _ if status.is_success() => Attempt::Sent,
            401 | 403 => Attempt::Final(SmsError::Misconfigured { status: code }),
            429 => Attempt::Final(SmsError::Unavailable {
                detail: "HTTP 429".into(),
            }),
            _ if status.is_client_error() => Attempt::Final(SmsError::Rejected { status: code }),
            _ if status.is_server_error() => Attempt::Retryable(format!("HTTP {code}")),
            _ => Attempt::Final(SmsError::Unavailable {
                detail: format!("HTTP {code}"),
            }),
        }
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, to_e164: &str, body: &str) -> Result<(), SmsError> {
        let attempts = self.config.max_attempts.max(1);
        let mut last = String::new();
        for n in 0..attempts {
            if n > 0 {
                let backoff = BACKOFF[(n as usize - 1).min(BACKOFF.len() - 1)];
                tokio::time::sleep(backoff).await;
            }
            match self.attempt(to_e164, body).await {
                Attempt::Sent => return Ok(()),
                Attempt::Final(e) => return Err(e),
                Attempt::Retryable(detail) => {
                    tracing::warn!(attempt = n + 1, %detail, "Twilio send failed");
                    last = detail;
                }
            }
        }
        Err(SmsError::Unavailable {
            detail: format!("{attempts} attempts failed, last: {last}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::convert::Infallible;
    use std::sync::{Arc, Mutex};

    use base64::Engine;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;

    use super::*;

    /// One request the fake Twilio saw.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        authorization: Option<String>,
        content_type: Option<String>,
        form: HashMap<String, String>,
    }

    /// A tiny HTTP/1 server that answers with `statuses` in turn (the last repeats), after
    /// `delay`, and records every request.
    struct FakeTwilio {
        base_url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for FakeTwilio {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl FakeTwilio {
        async fn start(statuses: Vec<u16>, delay: Duration) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let base_url = format!("http://{}", listener.local_addr().expect("addr"));
            let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
            let recorded = seen.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let (seen, statuses) = (recorded.clone(), statuses.clone());
                    tokio::spawn(async move {
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (seen, statuses) = (seen.clone(), statuses.clone());
                            async move {
                                let header = |name: &str| {
                                    req.headers()
                                        .get(name)
                                        .and_then(|v| v.to_str().ok())
                                        .map(str::to_owned)
                                };
                                let (authorization, content_type) =
                                    (header("authorization"), header("content-type"));
                                let path = req.uri().path().to_owned();
                                let body =
                                    req.into_body().collect().await.expect("body").to_bytes();
                                let form = serde_urlencoded::from_bytes(&body).expect("form body");
                                let n = {
                                    let mut seen = seen.lock().expect("lock");
                                    seen.push(Seen {
                                        path,
                                        authorization,
                                        content_type,
                                        form,
                                    });
                                    seen.len()
                                };
                                tokio::time::sleep(delay).await;
                                let status = statuses[(n - 1).min(statuses.len() - 1)];
                                let response = Response::builder()
                                    .status(StatusCode::from_u16(status).expect("status"))
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from_static(b"{}")))
                                    .expect("response");
                                Ok::<_, Infallible>(response)
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self {
                base_url,
                seen,
                task,
            }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().expect("lock").clone()
        }

        fn sender(&self, timeout: Duration) -> TwilioSender {
            TwilioSender::new(TwilioConfig {
                base_url: format!("{}/", self.base_url),
                account_sid: "AC123".into(),
                auth_token: "tok".into(),
                from: "+15005550006".into(),
                timeout,
                ..Default::default()
            })
            .expect("sender")
        }
    }

    #[tokio::test]
    async fn posts_the_form_with_basic_auth() {
        let fake = FakeTwilio::start(vec![201], Duration::ZERO).await;
        fake.sender(Duration::from_secs(5))
            .send("+12015550123", "Your code")
            .await
            .expect("send");
        let seen = fake.seen();
        assert_eq!(seen.len(), 1);
        let request = &seen[0];
        assert_eq!(request.path, "/2010-04-01/Accounts/AC123/Messages.json");
        let expected = base64::engine::general_purpose::STANDARD.encode("AC123:tok");
        assert_eq!(
            request.authorization.as_deref(),
            Some(format!("Basic {expected}").as_str())
        );
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        let form: HashMap<String, String> = [
            ("To", "+12015550123"),
            ("From", "+15005550006"),
            ("Body", "Your code"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(request.form, form);
    }

    #[tokio::test]
    async fn retries_5xx_then_succeeds() {
        let fake = FakeTwilio::start(vec![503, 503, 201], Duration::ZERO).await;
        fake.sender(Duration::from_secs(5))
            .send("+12015550123", "x")
            .await
            .expect("third try");
        assert_eq!(fake.seen().len(), 3);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_of_5xx() {
        let fake = FakeTwilio::start(vec![500], Duration::ZERO).await;
        let err = fake
            .sender(Duration::from_secs(5))
            .send("+12015550123", "x")
            .await;
        assert!(matches!(err, Err(SmsError::Unavailable { .. })), "{err:?}");
        assert_eq!(fake.seen().len(), 3);
    }

    #[tokio::test]
    async fn never_retries_4xx() {
        let fake = FakeTwilio::start(vec![400, 201], Duration::ZERO).await;
        let err = fake
            .sender(Duration::from_secs(5))
            .send("+12015550123", "x")
            .await;
        assert!(
            matches!(err, Err(SmsError::Rejected { status: 400 })),
            "{err:?}"
        );
        assert_eq!(fake.seen().len(), 1);

        let fake = FakeTwilio::start(vec![401, 201], Duration::ZERO).await;
        let err = fake
            .sender(Duration::from_secs(5))
            .send("+12015550123", "x")
            .await;
        assert!(
            matches!(err, Err(SmsError::Misconfigured { status: 401 })),
            "{err:?}"
        );
        assert_eq!(fake.seen().len(), 1);
    }

    #[tokio::test]
    async fn retries_timeouts() {
        let fake = FakeTwilio::start(vec![201], Duration::from_secs(2)).await;
        let err = fake
            .sender(Duration::from_millis(100))
            .send("+12015550123", "x")
            .await;
        assert!(matches!(err, Err(SmsError::Unavailable { .. })), "{err:?}");
        assert_eq!(fake.seen().len(), 3);
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        let sender = TwilioSender::new(TwilioConfig {
            base_url,
            ..Default::default()
        })
        .expect("sender");
        let err = sender.send("+12015550123", "x").await;
        assert!(matches!(err, Err(SmsError::Unavailable { .. })), "{err:?}");
    }
}
