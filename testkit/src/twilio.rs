//! A fake Twilio: an HTTP server speaking the Messages API
//! (`POST /2010-04-01/Accounts/{sid}/Messages.json`, Basic auth, form fields To/From/Body) that
//! records what it was sent and can be told to fail.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// The account SID the fake accepts.
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// The auth token the fake accepts.
pub const AUTH_TOKEN: &str = "test-auth-token";
/// The sender number the system is configured with.
pub const FROM: &str = "+12015550199";

/// One message the fake accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioMessage {
    /// The `To` number.
    pub to: String,
    /// The `From` number.
    pub from: String,
    /// The text (`Body`).
    pub body: String,
}

#[derive(Default)]
struct State {
    accepted: Vec<TwilioMessage>,
    /// Every request that reached the fake, accepted or not.
    requests: usize,
    /// Status codes to answer the next requests with, in order.
    failures: VecDeque<u16>,
}

/// The fake server; stops when dropped.
pub struct FakeTwilio {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeTwilio {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake twilio");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(handle(req, &state).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// The base URL to configure (`--twilio-base-url`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The messages accepted so far.
    pub fn messages(&self) -> Vec<TwilioMessage> {
        self.state.lock().expect("state").accepted.clone()
    }

    /// How many requests reached the fake.
    pub fn requests(&self) -> usize {
        self.state.lock().expect("state").requests
    }

    /// Answers the next `times` requests with HTTP `status` (and a Twilio-style error body).
    pub fn fail_next(&self, status: u16, times: usize) {
        let mut state = self.state.lock().expect("state");
        state.failures.extend(std::iter::repeat_n(status, times));
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(req: Request<Incoming>, state: &Mutex<State>) -> Response<Full<Bytes>> {
    let expected_path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    let method_ok = req.method() == hyper::Method::POST && req.uri().path() == expected_path;
    let auth_ok = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(expected_auth.as_str());
    let form_ok = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();

    let mut state = state.lock().expect("state");
    state.requests += 1;
    if !method_ok {
        return reply(404, r#"{"code": 20404, "message": "not found"}"#);
    }
    if !auth_ok {
        return reply(401, r#"{"code": 20003, "message": "authenticate"}"#);
    }
    if let Some(status) = state.failures.pop_front() {
        return reply(status, r#"{"code": 30001, "message": "told to fail"}"#);
    }
    let fields: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let (Some(to), Some(from), Some(text)) =
        (fields.get("To"), fields.get("From"), fields.get("Body"))
    else {
        return reply(
            400,
            r#"{"code": 21604, "message": "missing To, From or Body"}"#,
        );
    };
    if !form_ok {
        return reply(400, r#"{"code": 21604, "message": "not a form"}"#);
    }
    state.accepted.push(TwilioMessage {
        to: to.clone(),
        from: from.clone(),
        body: text.clone(),
    });
    reply(
        201,
        r#"{"sid": "SM00000000000000000000000000000001", "status": "queued"}"#,
    )
}

fn reply(status: u16, json: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).expect("status"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(json.as_bytes())))
        .expect("response")
}
