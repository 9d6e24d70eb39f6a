//! The gateway: the one public endpoint.
//!
//! Every request passes, in order: the route table (only allow-listed public methods leave the
//! gateway), the per-address rate limit, the access-token check and per-user rate limit (for
//! methods that need a token), header hygiene (client-sent identity and forwarding headers are
//! dropped, the verified identity and client address are set), and the per-message size cap
//! while the body streams to the upstream pool. Responses, trailers included, stream back as
//! they come, so long-lived bidirectional streams pass through unchanged.
//!
//! Each upstream role is a pool ([`pool`]) of health-checked endpoints reached over mutual TLS;
//! idempotent unary calls are buffered (one message, within a read deadline) and retried once
//! on another endpoint; a stream whose endpoint goes unhealthy or breaks ends with UNAVAILABLE,
//! and one whose session is revoked or whose token runs out ends with UNAUTHENTICATED
//! ([`stream_guard`]), so the client reconnects (or signs in again). Upstream answers, statuses
//! and trailers included, reach the client exactly as the service sent them.

mod auth;
mod body;
mod endpoints;
mod health;
mod limits;
mod pool;
mod reflection;
mod routes;
mod stream_guard;

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
use juntos_clock::SharedClock;
use juntos_proto::error::{reason, status};
use juntos_proto::meta;
use juntos_store::Tasks;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::Code;
use tower::ServiceExt;

pub use self::auth::Auth;
use self::body::{FrameLimit, OneMessage};
pub use self::endpoints::{Source, parse_endpoints};
use self::limits::Limits;
pub use self::limits::Rate;
pub use self::pool::PoolSettings;
use self::pool::{ForwardBody, Member, Pool};
use self::routes::{Access, Retry, Route, Upstream};
use self::stream_guard::{Cut, StreamGuard};
use crate::shutdown::Shutdown;
use crate::tls::Role;
use crate::tls::accept;
use crate::tls::internal::InternalTls;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// otp-service endpoints.
    pub otp: Vec<Source>,
    /// login-service endpoints.
    pub login: Vec<Source>,
    /// chat endpoints; when empty, chat calls answer UNAVAILABLE.
    pub chat: Vec<Source>,
    /// media endpoints; when empty, status calls answer UNAVAILABLE.
    pub media: Vec<Source>,
    /// The gateway's internal certificate, for mutual TLS with every upstream.
    pub internal_tls: Arc<InternalTls>,
    /// Health checking and discovery of every pool.
    pub pools: PoolSettings,
    /// Rate per client address.
    pub per_ip: Rate,
    /// Rate per signed-in user.
    pub per_user: Rate,
    /// Largest single gRPC request message accepted, in bytes.
    pub max_message_bytes: usize,
    /// How long a buffered (retryable) request may take to arrive.
    pub buffered_read_timeout: Duration,
    /// Bytes all buffered requests together may hold (at least one largest message).
    pub max_buffered_bytes: usize,
    /// How long SIGTERM waits for open connections to finish.
    pub drain: Duration,
}

/// The routing proxy.
pub struct Gateway {
    pools: HashMap<Upstream, Arc<Pool>>,
    auth: Arc<Auth>,
    limits: Limits,
    local: tonic::service::Routes,
    max_message_bytes: usize,
    buffered_read_timeout: Duration,
    /// Bytes every buffered request together may hold.
    buffer_budget: Arc<tokio::sync::Semaphore>,
    clock: SharedClock,
    drain: Duration,
}

impl Gateway {
    /// Builds the gateway and starts its background work (key refresh, revocation polling,
    /// limiter cleanup, endpoint discovery), which stops when the returned [`Tasks`] are
    /// dropped. DNS names are resolved once before this returns.
    pub async fn new(
        config: GatewayConfig,
        clock: SharedClock,
    ) -> Result<(Arc<Self>, Tasks), String> {
        let tls = &config.internal_tls;
        let login_endpoints = config
            .login
            .iter()
            .map(|source| {
                // A stuck login pod must not stall key refresh or revocation polling.
                tonic::transport::Endpoint::from(source.uri())
                    .tls_config(tls.client_config(Role::Login))
                    .map(|endpoint| {
                        endpoint
                            .connect_timeout(Duration::from_secs(3))
                            .timeout(Duration::from_secs(2))
                            .http2_keep_alive_interval(Duration::from_secs(10))
                            .keep_alive_timeout(Duration::from_secs(5))
                    })
                    .map_err(|e| format!("login: TLS: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let login_channel = tonic::transport::Channel::balance_list(login_endpoints.into_iter());
        let auth = Auth::new(login_channel, Arc::clone(&clock));
        let mut tasks = auth.start();
        let mut pools = HashMap::from([
            (
                Upstream::Otp,
                Pool::new(Role::Otp, config.otp, config.pools, tls),
            ),
            (
                Upstream::Login,
                Pool::new(Role::Login, config.login, config.pools, tls),
            ),
        ]);
        if !config.chat.is_empty() {
            pools.insert(
                Upstream::Chat,
                Pool::new(Role::Chat, config.chat, config.pools, tls),
            );
        }
        if !config.media.is_empty() {
            pools.insert(
                Upstream::Media,
                Pool::new(Role::Media, config.media, config.pools, tls),
            );
        }
        for pool in pools.values() {
            tasks.extend(pool.start_discovery().await);
        }
        let gateway = Arc::new(Self {
            pools,
            auth,
            limits: Limits::new(config.per_ip, config.per_user),
            local: reflection::public_routes().await?,
            max_message_bytes: config.max_message_bytes,
            buffered_read_timeout: config.buffered_read_timeout,
            buffer_budget: Arc::new(tokio::sync::Semaphore::new(config.max_buffered_bytes)),
            clock,
            drain: config.drain,
        });
        let this = Arc::clone(&gateway);
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                this.limits.forget_idle();
                this.auth.forget_expired_sessions();
            }
        });
        Ok((gateway, tasks))
    }

    /// Accepts HTTP/2 connections on `listener` (over TLS with `tls`, else plaintext) until
    /// `shutdown`, then lets open ones finish for at most the configured drain time.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        mut shutdown: Shutdown,
    ) {
        let mut connections = JoinSet::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = accept(&listener) => accepted,
                () = shutdown.wait() => break,
            };
            let _ = stream.set_nodelay(true);
            let gateway = Arc::clone(&self);
            let conn_shutdown = shutdown.clone();
            let tls = tls.clone();
            connections.spawn(async move {
                match tls {
                    None => gateway.serve_connection(stream, peer, conn_shutdown).await,
                    Some(acceptor) => {
                        // A client that stalls its handshake holds nothing for long.
                        let handshake =
                            tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                        match handshake {
                            Ok(Ok(stream)) => {
                                gateway.serve_connection(stream, peer, conn_shutdown).await;
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
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

    /// Serves HTTP/2 on one accepted connection until it ends or `shutdown` (then gracefully).
    async fn serve_connection<I>(self: Arc<Self>, io: I, peer: SocketAddr, mut shutdown: Shutdown)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = hyper::service::service_fn(move |req| {
            let gateway = Arc::clone(&self);
            async move { Ok::<_, Infallible>(gateway.handle(req, peer).await) }
        });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = builder.serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            () = shutdown.wait() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        // Every request spends from its address's bucket, whatever it asks for.
        if let Err(status) = self.limits.check_ip(peer.ip()) {
            return status_response(status);
        }
        match routes::route(req.uri().path()) {
            Route::Forward(upstream, access, retry) => {
                match self.forward(req, peer, upstream, access, retry).await {
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
        retry: Retry,
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

        let tripped = Arc::new(AtomicBool::new(false));
        let body = FrameLimit::new(body, self.max_message_bytes, Arc::clone(&tripped));
        // A call that may run long ends when its session does: revoked, or (a live stream) its
        // token expired unrefreshed.
        let session = match (&claims, retry) {
            (Some(claims), Retry::Never) => Some(self.auth.session_end(
                claims.session_id.clone(),
                routes::is_live_stream(parts.uri.path()).then_some(claims.expires_at_ms),
                Arc::clone(&self.clock),
            )),
            _ => None,
        };
        // Only a call that can outlive its session needs a way to cut its request short.
        let session = session.map(|stop| (stop, Cut::new()));
        // A retry sends the request again, so an idempotent call's body is kept: one message of
        // at most the size cap, read within the deadline and counted against the budget all
        // buffered requests share, so no caller can make the gateway hold much or wait long.
        // `_held` keeps the buffered bytes' share of the budget until the call is answered.
        let (body, replay, _held) = match retry {
            Retry::Never => match &session {
                Some((_, cut)) => (cut.wrap(body.boxed_unsync()), None, None),
                None => (body.boxed_unsync(), None, None),
            },
            Retry::Idempotent => {
                let read = OneMessage::new(body).read(&self.buffer_budget);
                match tokio::time::timeout(self.buffered_read_timeout, read).await {
                    Ok(Ok(buffered)) => {
                        let bytes = buffered.bytes.clone();
                        (full(bytes.clone()), Some(bytes), Some(buffered))
                    }
                    Ok(Err(body::ReadError::Busy)) => {
                        return Err(juntos_proto::error::resource_exhausted(
                            reason::GATEWAY_BUSY,
                            "the gateway is holding too many requests; retry shortly",
                            Duration::from_secs(1),
                        ));
                    }
                    Ok(Err(body::ReadError::TooMany)) => {
                        return Err(status(
                            Code::ResourceExhausted,
                            reason::TOO_MANY_MESSAGES,
                            "this call takes one request message",
                        ));
                    }
                    Ok(Err(_)) if tripped.load(Ordering::SeqCst) => {
                        return Err(too_large(self.max_message_bytes));
                    }
                    Ok(Err(body::ReadError::Body(e))) => {
                        tracing::debug!(error = %e, "request body broke off");
                        return Err(tonic::Status::cancelled("request body not received"));
                    }
                    Err(_) => {
                        return Err(status(
                            Code::DeadlineExceeded,
                            reason::REQUEST_TOO_SLOW,
                            format!(
                                "the request did not arrive within {} s",
                                self.buffered_read_timeout.as_secs()
                            ),
                        ));
                    }
                }
            }
        };

        let unavailable = || {
            status(
                Code::Unavailable,
                reason::UPSTREAM_UNAVAILABLE,
                "service unavailable; retry shortly",
            )
        };
        let call = Call {
            pool,
            parts: &parts,
            upstream,
            tripped: &tripped,
        };
        if let Some(session) = session {
            // Not retryable: exactly one attempt, whose response ends with the session.
            let member = pool.pick(None).ok_or_else(unavailable)?;
            return match self
                .attempt(&call, &member, body, false, Some(session))
                .await?
            {
                Attempt::Answered(response) => Ok(response),
                Attempt::Failed(failure) => failure.map_or_else(|| Err(unavailable()), Ok),
            };
        }
        let first = pool.pick(None).ok_or_else(unavailable)?;
        let failure = match self
            .attempt(&call, &first, body, replay.is_some(), None)
            .await?
        {
            Attempt::Answered(response) => return Ok(response),
            Attempt::Failed(failure) => failure,
        };
        let (Some(bytes), Some(second)) = (replay, pool.pick(Some(first.uri()))) else {
            return failure.map_or_else(|| Err(unavailable()), Ok);
        };
        tracing::debug!(?upstream, from = %first.uri(), to = %second.uri(), "retrying");
        match self
            .attempt(&call, &second, full(bytes), false, None)
            .await?
        {
            Attempt::Answered(response) => Ok(response),
            Attempt::Failed(failure) => failure.map_or_else(|| Err(unavailable()), Ok),
        }
    }

    /// Sends the request to one endpoint. With `retryable`, a trailers-only UNAVAILABLE
    /// answer counts as a failure (kept, in case no retry is possible) rather than an answer.
    /// With `session`, the response also ends when that future does (with its status), and
    /// the request body is cut then too, so the upstream call ends.
    async fn attempt(
        &self,
        call: &Call<'_>,
        member: &Member,
        body: ForwardBody,
        retryable: bool,
        session: Option<(stream_guard::Stop, Cut)>,
    ) -> Result<Attempt, tonic::Status> {
        let Call {
            pool,
            parts,
            upstream,
            tripped,
        } = *call;
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        *request.uri_mut() = upstream_uri(member.uri(), &parts.uri)?;
        // Subscribed before the call, so a pod that fails meanwhile still ends the stream.
        let health = member.health();
        match pool.client().request(request).await {
            Ok(response) => {
                let response = response.map(|b| {
                    StreamGuard::new(b.map_err(BoxError::from).boxed_unsync(), health, session)
                        .boxed_unsync()
                });
                let unavailable = response
                    .headers()
                    .get("grpc-status")
                    .is_some_and(|s| s.as_bytes() == b"14");
                if retryable && unavailable {
                    Ok(Attempt::Failed(Some(response)))
                } else {
                    Ok(Attempt::Answered(response))
                }
            }
            Err(_) if tripped.load(Ordering::SeqCst) => Err(too_large(self.max_message_bytes)),
            Err(e) => {
                tracing::warn!(?upstream, endpoint = %member.uri(), error = %e, "upstream call failed");
                Ok(Attempt::Failed(None))
            }
        }
    }
}

/// One forwarded call, shared by its attempts.
#[derive(Clone, Copy)]
struct Call<'a> {
    pool: &'a Pool,
    parts: &'a http::request::Parts,
    upstream: Upstream,
    /// Set when the request body hit the size cap.
    tripped: &'a AtomicBool,
}

/// The outcome of sending a request to one endpoint.
enum Attempt {
    /// An answer to pass to the client.
    Answered(Response<ResponseBody>),
    /// No usable answer: a retry may follow; else the client gets the kept response, if any,
    /// or UNAVAILABLE.
    Failed(Option<Response<ResponseBody>>),
}

fn full(bytes: Bytes) -> ForwardBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
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
