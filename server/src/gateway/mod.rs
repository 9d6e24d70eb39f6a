//! The gateway: the one public endpoint.
//!
//! Every request passes, in order: the route table (only allow-listed public methods leave the
//! gateway), the per-address rate limit, the access-token check and per-user rate limit (for
//! methods that need a token), header hygiene (client-sent identity and forwarding headers are
//! dropped, the verified identity and client address are set), and the per-message size cap
//! while the body streams to the upstream pool. Responses, trailers included, stream back as
//! they come, so long-lived bidirectional streams pass through unchanged.

mod auth;
mod body;
mod limits;
mod pool;
mod routes;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use juntos_proto::clock::SharedClock;
use juntos_proto::error::{reason, status};
use juntos_proto::meta;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::Code;
use tower::ServiceExt;

pub use self::auth::Auth;
use self::body::FrameLimit;
use self::limits::Limits;
pub use self::limits::Rate;
use self::pool::Pool;
pub use self::pool::parse_endpoints;
use self::routes::{Access, Route, Upstream};
use crate::shutdown::Shutdown;
use crate::tasks::Tasks;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// otp-service endpoints.
    pub otp: Vec<Uri>,
    /// login-service endpoints.
    pub login: Vec<Uri>,
    /// chat endpoints; when empty, chat calls answer UNAVAILABLE.
    pub chat: Vec<Uri>,
    /// Rate per client address.
    pub per_ip: Rate,
    /// Rate per signed-in user.
    pub per_user: Rate,
    /// Largest single gRPC request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// How long SIGTERM waits for open connections to finish.
    pub drain: Duration,
}

/// The routing proxy.
pub struct Gateway {
    pools: HashMap<Upstream, Pool>,
    auth: Arc<Auth>,
    limits: Limits,
    local: tonic::service::Routes,
    max_message_bytes: usize,
    drain: Duration,
}

impl Gateway {
    /// Builds the gateway and starts its background work (key refresh, revocation polling,
    /// limiter cleanup), which stops when the returned [`Tasks`] are dropped.
    pub async fn new(
        config: GatewayConfig,
        clock: SharedClock,
    ) -> Result<(Arc<Self>, Tasks), String> {
        let login_channel =
            tonic::transport::Channel::balance_list(config.login.iter().map(|uri| {
                // A stuck login pod must not stall key refresh or revocation polling.
                tonic::transport::Endpoint::from(uri.clone())
                    .connect_timeout(Duration::from_secs(3))
                    .timeout(Duration::from_secs(2))
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_timeout(Duration::from_secs(5))
            }));
        let auth = Auth::new(login_channel, clock);
        let mut tasks = auth.start();
        let mut pools = HashMap::from([
            (Upstream::Otp, Pool::new(config.otp)),
            (Upstream::Login, Pool::new(config.login)),
        ]);
        if !config.chat.is_empty() {
            pools.insert(Upstream::Chat, Pool::new(config.chat));
        }
        let gateway = Arc::new(Self {
            pools,
            auth,
            limits: Limits::new(config.per_ip, config.per_user),
            local: crate::serve::local_routes(&[]).await?,
            max_message_bytes: config.max_message_bytes,
            drain: config.drain,
        });
        let this = Arc::clone(&gateway);
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                this.limits.forget_idle();
            }
        });
        Ok((gateway, tasks))
    }

    /// Accepts HTTP/2 connections on `listener` until `shutdown`, then lets open ones finish
    /// for at most the configured drain time.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: Shutdown) {
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.wait() => break,
            };
            let _ = stream.set_nodelay(true);
            let gateway = Arc::clone(&self);
            let mut conn_shutdown = shutdown.clone();
            connections.spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let gateway = Arc::clone(&gateway);
                    async move { Ok::<_, Infallible>(gateway.handle(req, peer).await) }
                });
                let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                builder
                    .timer(TokioTimer::new())
                    .keep_alive_interval(Some(Duration::from_secs(30)))
                    .keep_alive_timeout(Duration::from_secs(20));
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    }
                    () = conn_shutdown.wait() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
        }
        let drained = tokio::time::timeout(self.drain, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                open = connections.len(),
                "drain time over; closing remaining connections"
            );
            connections.abort_all();
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        // Every request spends from its address's bucket, whatever it asks for.
        if let Err(status) = self.limits.check_ip(peer.ip()) {
            return status_response(status);
        }
        match routes::route(req.uri().path()) {
            Route::Forward(upstream, access) => {
                match self.forward(req, peer, upstream, access).await {
                    Ok(response) => response,
                    Err(status) => status_response(status),
                }
            }
            Route::Local => match self.local.clone().oneshot(req).await {
                Ok(response) => response.map(|b| b.map_err(BoxError::from).boxed_unsync()),
                Err(never) => match never {},
            },
            Route::Internal => status_response(status(
                Code::PermissionDenied,
                reason::NOT_PUBLIC,
                "this method is internal and not reachable through the gateway",
            )),
            Route::Unknown => status_response(tonic::Status::unimplemented("unknown method")),
        }
    }

    async fn forward(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        upstream: Upstream,
        access: Access,
    ) -> Result<Response<ResponseBody>, tonic::Status> {
        let claims = match access {
            Access::Public => None,
            Access::Authenticated => {
                let claims = self.auth.check(req.headers())?;
                self.limits.check_user(&claims.user_id)?;
                Some(claims)
            }
        };

        let pool = self.pools.get(&upstream).ok_or_else(|| {
            status(
                Code::Unavailable,
                reason::UPSTREAM_UNAVAILABLE,
                "this service is not configured on the gateway",
            )
        })?;
        let (mut parts, body) = req.into_parts();
        strip_client_headers(&mut parts.headers);
        set_header(&mut parts.headers, meta::CLIENT_IP, &peer.ip().to_string());
        if let Some(claims) = &claims {
            set_header(&mut parts.headers, meta::USER_ID, &claims.user_id);
            set_header(&mut parts.headers, meta::DEVICE_ID, &claims.device_id);
            set_header(&mut parts.headers, meta::SESSION_ID, &claims.session_id);
        }
        parts.uri = upstream_uri(pool.pick(), &parts.uri)?;

        let tripped = Arc::new(AtomicBool::new(false));
        let body = FrameLimit::new(body, self.max_message_bytes, Arc::clone(&tripped));
        match pool
            .client()
            .request(Request::from_parts(parts, body))
            .await
        {
            Ok(response) => Ok(response.map(|b| b.map_err(BoxError::from).boxed_unsync())),
            Err(_) if tripped.load(Ordering::SeqCst) => Err(too_large(self.max_message_bytes)),
            Err(e) => {
                tracing::warn!(?upstream, error = %e, "upstream call failed");
                Err(status(
                    Code::Unavailable,
                    reason::UPSTREAM_UNAVAILABLE,
                    "service unavailable; retry shortly",
                ))
            }
        }
    }
}

fn too_large(limit: usize) -> tonic::Status {
    status(
        Code::ResourceExhausted,
        reason::MESSAGE_TOO_LARGE,
        format!("request message exceeds the limit of {limit} bytes"),
    )
}

/// Removes every header a client could use to claim an identity or an address.
fn strip_client_headers(headers: &mut HeaderMap) {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let name = name.as_str();
            name.starts_with(meta::PREFIX) || meta::STRIPPED_FORWARDING_HEADERS.contains(&name)
        })
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(name);
    }
    headers.remove(http::header::AUTHORIZATION);
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}

fn upstream_uri(endpoint: &Uri, original: &Uri) -> Result<Uri, tonic::Status> {
    let mut parts = endpoint.clone().into_parts();
    parts.path_and_query = original.path_and_query().cloned();
    Uri::from_parts(parts).map_err(|_| tonic::Status::internal("bad upstream address"))
}

fn status_response(status: tonic::Status) -> Response<ResponseBody> {
    status.into_http()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_and_forwarding_headers_are_stripped() {
        let mut headers = HeaderMap::new();
        for (k, v) in [
            ("x-juntos-user-id", "mallory"),
            ("x-juntos-device-id", "d"),
            ("X-Juntos-Anything", "x"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("authorization", "Bearer t"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ] {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        strip_client_headers(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "te"]);
    }

    #[test]
    fn upstream_uri_keeps_the_path() {
        let endpoint: Uri = "http://127.0.0.1:9000".parse().expect("uri");
        let original: Uri = "/juntos.otp.v1.Otp/RequestCode".parse().expect("uri");
        assert_eq!(
            upstream_uri(&endpoint, &original).expect("uri").to_string(),
            "http://127.0.0.1:9000/juntos.otp.v1.Otp/RequestCode"
        );
    }
}
