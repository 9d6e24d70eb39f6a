//! Mutual TLS between roles: who may call what inside the cluster.
//!
//! Every role listens with [`InternalTls::incoming`]. A TLS client that presents a certificate
//! the internal CA did not issue fails the handshake. A connection that presents none, or
//! speaks plaintext HTTP/2, is served for a few seconds, and every call on it but a health check
//! answers UNAUTHENTICATED (so Kubernetes' plaintext gRPC probes work and a scanner learns
//! why it is refused). The calling role is read once per connection
//! from its certificate's name (`<role>.juntos.internal`), and [`InternalAuthLayer`] lets it
//! call only the methods that role needs ([`allowed`]); a refused call is logged with the
//! peer's address and the method (never any user data).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use juntos_proto::error::{reason, status};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::Code;
use tonic::transport::server::Connected;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::certs::{PemPair, RoleCerts};
use super::{Role, provider};

/// How long a new connection may take to send its first byte and finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection without an internal certificate is kept: long enough to answer a
/// probe or explain a refusal, too short to hold a file descriptor for anyone who can connect.
const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; connections beyond it are closed at once.
const MAX_HANDSHAKES: usize = 256;
/// How long connecting to another role (TCP and TLS handshake) may take: a frozen pod that
/// still accepts TCP must not hold calls.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Certificates `juntos all` makes for itself live this long (it makes new ones every start).
const EPHEMERAL_DAYS: u32 = 3650;

/// One role's internal credentials: its certificate and key, and the internal CA.
pub struct InternalTls {
    role: Role,
    ca_pem: Vec<u8>,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    server: Arc<rustls::ServerConfig>,
    client: rustls::ClientConfig,
}

impl std::fmt::Debug for InternalTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalTls")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl InternalTls {
    /// Reads `tls.crt`, `tls.key` and `ca.crt` from `dir` (a cert-manager Secret mounted as a
    /// folder, or one role's folder from `juntos certs`); the certificate must be for
    /// `<role>.juntos.internal`.
    pub fn from_dir(dir: &Path, role: Role) -> Result<Arc<Self>, String> {
        let read = |name: &str| super::read(&dir.join(name));
        Self::new(role, read("ca.crt")?, read("tls.crt")?, read("tls.key")?)
    }

    /// Fresh credentials for every role from a new in-memory CA: what `juntos all` uses, so its
    /// roles authenticate each other with nothing on disk.
    pub fn ephemeral() -> Result<Vec<(Role, Arc<Self>)>, String> {
        let set = RoleCerts::generate(EPHEMERAL_DAYS, &[])?;
        let ca = set.ca.pem().cert.clone().into_bytes();
        set.roles
            .into_iter()
            .map(|(role, PemPair { cert, key })| {
                Ok((
                    role,
                    Self::new(role, ca.clone(), cert.into_bytes(), key.into_bytes())?,
                ))
            })
            .collect()
    }

    fn new(
        role: Role,
        ca_pem: Vec<u8>,
        cert_pem: Vec<u8>,
        key_pem: Vec<u8>,
    ) -> Result<Arc<Self>, String> {
        let what = format!("{} internal certificate", role.name());
        let certified = super::certified_key(&cert_pem, &key_pem, &what)?;
        if role_of(&certified.cert[0]) != Some(role) {
            return Err(format!(
                "{what}: not issued for {} (make the set with `juntos certs`)",
                role.dns_name()
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for ca in super::parse_certs(&ca_pem, "internal CA")? {
            roots
                .add(ca)
                .map_err(|e| format!("internal CA: not a usable CA certificate: {e}"))?;
        }
        let roots = Arc::new(roots);
        // A connection without a certificate is let through the handshake so that its calls
        // can be answered UNAUTHENTICATED (and logged) rather than cut off unexplained; one
        // that presents a certificate must present a valid one.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("internal CA: {e}"))?;
        let server = super::server_config(
            Arc::new(rustls::sign::SingleCertAndKey::from(Arc::clone(&certified))),
            Some(verifier),
        );
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(certified.cert.clone(), super::parse_key(&key_pem, &what)?)
            .map_err(|e| format!("{what}: {e}"))?;
        Ok(Arc::new(Self {
            role,
            ca_pem,
            cert_pem,
            key_pem,
            server,
            client,
        }))
    }

    /// The role these credentials are for.
    pub fn role(&self) -> Role {
        self.role
    }

    /// TLS settings for a tonic channel to `peer`: present this role's certificate, trust only
    /// the internal CA, and expect `peer`'s name whatever address is dialled.
    pub fn client_config(&self, peer: Role) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(Identity::from_pem(&self.cert_pem, &self.key_pem))
            .domain_name(peer.dns_name())
    }

    /// An HTTP/2-over-TLS connector to `peer` for a hyper client (the gateway's pools), with the
    /// same checks as [`InternalTls::client_config`], that gives up on a connection (TCP and
    /// TLS) after [`CONNECT_TIMEOUT`].
    pub fn connector(&self, peer: Role) -> TimedConnector {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(3)));
        http.enforce_http(false);
        let name = ServerName::try_from(peer.dns_name()).expect("role names are valid DNS names");
        TimedConnector(
            HttpsConnectorBuilder::new()
                .with_tls_config(self.client.clone())
                .https_only()
                .with_server_name_resolver(FixedServerNameResolver::new(name))
                .enable_http2()
                .wrap_connector(http),
        )
    }

    /// The connections `listener` accepts: TLS handshakes run in their own tasks (a slow
    /// client holds up no one), each connection tagged with the calling role.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpListener,
    ) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<InternalIo>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = TlsAcceptor::from(Arc::clone(&self.server));
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let (stream, addr) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = super::accept(&listener) => accepted,
                };
                let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                    throttled_warn(|suppressed| {
                        tracing::warn!(peer = %addr, suppressed, "too many internal handshakes at once; connection closed");
                    });
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let accepted =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(acceptor, stream, addr))
                            .await;
                    drop(permit);
                    match accepted {
                        Ok(Ok(io)) => {
                            // A server that stopped taking connections (draining) does not
                            // hold this one for ever.
                            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, tx.send(Ok(io))).await;
                        }
                        Ok(Err(e)) => {
                            throttled_warn(|suppressed| {
                                tracing::warn!(peer = %addr, error = %e, suppressed, "internal TLS handshake failed");
                            });
                        }
                        Err(_) => tracing::debug!(peer = %addr, "internal handshake timed out"),
                    }
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// [`HttpsConnector`] with a deadline on the whole connection set-up.
#[derive(Clone)]
pub struct TimedConnector(HttpsConnector<HttpConnector>);

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Connection = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<TcpStream>>;

impl tower::Service<http::Uri> for TimedConnector {
    type Response = Connection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Connection, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                .await
                .map_err(|_| BoxError::from("connecting to the role timed out"))?
        })
    }
}

/// Peeks at the first byte: a TLS record (0x16, handshake) is a TLS connection, anything else
/// plaintext.
async fn accept(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    addr: SocketAddr,
) -> std::io::Result<InternalIo> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 || first[0] != 0x16 {
        return Ok(InternalIo::new(
            Stream::Plain(stream),
            Peer { addr, role: None },
        ));
    }
    let tls = acceptor.accept(stream).await?;
    let role = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[CertificateDer<'_>]>::first)
        .and_then(role_of);
    Ok(InternalIo::new(
        Stream::Tls(Box::new(tls)),
        Peer { addr, role },
    ))
}

/// The role a (CA-verified) certificate names, if exactly one.
fn role_of(cert: &CertificateDer<'_>) -> Option<Role> {
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut roles = Role::ALL.into_iter().filter(|role| {
        let name = ServerName::try_from(role.dns_name()).expect("role names are valid DNS names");
        parsed.verify_is_valid_for_subject_name(&name).is_ok()
    });
    match (roles.next(), roles.next()) {
        (Some(role), None) => Some(role),
        _ => None,
    }
}

/// Who is on the other end of an internal connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The calling role, when it presented a valid internal certificate.
    pub role: Option<Role>,
}

/// An accepted internal connection.
pub struct InternalIo {
    stream: Stream,
    peer: Peer,
    /// For a connection without an internal certificate: when it is closed.
    closes: Option<Pin<Box<tokio::time::Sleep>>>,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl InternalIo {
    fn new(stream: Stream, peer: Peer) -> Self {
        let closes = peer
            .role
            .is_none()
            .then(|| Box::pin(tokio::time::sleep(UNAUTHENTICATED_LIFETIME)));
        Self {
            stream,
            peer,
            closes,
        }
    }

    /// An error once an unauthenticated connection has had its time.
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<std::io::Error> {
        let closes = self.closes.as_mut()?;
        closes.as_mut().poll(cx).is_ready().then(|| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connection without an internal certificate closed",
            )
        })
    }
}

impl Connected for InternalIo {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer
    }
}

impl AsyncRead for InternalIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for InternalIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.expired(cx) {
            return Poll::Ready(Err(e));
        }
        match &mut this.stream {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Whether `caller` may call the gRPC method at `path`. The gateway reaches the public
/// services, and login's token keys and revocations; login verifies codes with otp; chat asks
/// login for device lists and who may see whom; media asks who may see a profile photo.
/// Reflection is open to every role. (Health is open to anyone: [`open_to_all`].)
pub fn allowed(path: &str, caller: Role) -> bool {
    let service = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .map_or("", |(service, _)| service);
    match (service, caller) {
        ("grpc.reflection.v1.ServerReflection" | "grpc.reflection.v1alpha.ServerReflection", _) => {
            true
        }
        ("juntos.login.v1.LoginInternal", Role::Gateway) => matches!(
            path,
            "/juntos.login.v1.LoginInternal/GetVerificationKeys"
                | "/juntos.login.v1.LoginInternal/ListRevocations"
        ),
        ("juntos.login.v1.LoginInternal", Role::Chat) => matches!(
            path,
            "/juntos.login.v1.LoginInternal/ActiveDevices"
                | "/juntos.login.v1.LoginInternal/VisibleTo"
        ),
        ("juntos.login.v1.LoginInternal", Role::Media) => {
            path == "/juntos.login.v1.LoginInternal/VisibleTo"
        }
        ("juntos.login.v1.LoginInternal", _) => false,
        _ if path == "/juntos.otp.v1.Otp/VerifyCode" => caller == Role::Login,
        _ => caller == Role::Gateway,
    }
}

/// Methods anyone who reaches the port may call: health, which tells nothing but whether the
/// role serves, so that Kubernetes' gRPC probes (plaintext, no client certificate) work.
pub fn open_to_all(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
}

/// Refuses calls from connections without a valid internal certificate, and calls the
/// certificate's role may not make.
#[derive(Debug, Clone, Copy)]
pub struct InternalAuthLayer;

impl<S> tower::Layer<S> for InternalAuthLayer {
    type Service = InternalAuth<S>;

    fn layer(&self, inner: S) -> InternalAuth<S> {
        InternalAuth { inner }
    }
}

/// The service [`InternalAuthLayer`] makes.
#[derive(Debug, Clone)]
pub struct InternalAuth<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for InternalAuth<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Peer>().copied();
        let path = request.uri().path();
        let addr = peer.map(|p| p.addr.to_string()).unwrap_or_default();
        let refusal = match peer.and_then(|p| p.role) {
            _ if open_to_all(path) => None,
            Some(role) if allowed(path, role) => None,
            Some(role) => {
                throttled_warn(|suppressed| {
                    tracing::warn!(
                        peer = %addr,
                        caller = role.name(),
                        method = path,
                        suppressed,
                        "refused an internal call the calling role may not make"
                    );
                });
                Some(status(
                    Code::PermissionDenied,
                    reason::NOT_PUBLIC,
                    format!("the {} role may not call this method", role.name()),
                ))
            }
            None => {
                throttled_warn(|suppressed| {
                    tracing::warn!(peer = %addr, method = path, suppressed, "refused an internal call without a valid client certificate");
                });
                Some(status(
                    Code::Unauthenticated,
                    reason::INTERNAL_CALLER,
                    "internal services answer only callers with an internal certificate",
                ))
            }
        };
        match refusal {
            None => Either::Right(self.inner.call(request)),
            Some(status) => Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

/// Logs at most one warning a second (a scan must not flood the log), counting the rest.
fn throttled_warn(log: impl FnOnce(u64)) {
    static LAST_SECOND: AtomicU64 = AtomicU64::new(0);
    static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if LAST_SECOND.swap(now, Ordering::Relaxed) == now {
        SUPPRESSED.fetch_add(1, Ordering::Relaxed);
    } else {
        log(SUPPRESSED.swap(0, Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_calls_only_what_it_needs() {
        let public = "/juntos.chat.v1.Chat/Send";
        assert!(allowed(public, Role::Gateway));
        assert!(!allowed(public, Role::Login));
        assert!(allowed("/juntos.otp.v1.Otp/VerifyCode", Role::Login));
        assert!(!allowed("/juntos.otp.v1.Otp/VerifyCode", Role::Gateway));
        assert!(allowed("/juntos.otp.v1.Otp/RequestCode", Role::Gateway));
        assert!(!allowed("/juntos.otp.v1.Otp/RequestCode", Role::Chat));
        let internal = |method: &str| format!("/juntos.login.v1.LoginInternal/{method}");
        assert!(allowed(&internal("ActiveDevices"), Role::Chat));
        assert!(allowed(&internal("VisibleTo"), Role::Chat));
        assert!(allowed(&internal("VisibleTo"), Role::Media));
        assert!(!allowed(&internal("ActiveDevices"), Role::Media));
        assert!(allowed(&internal("ListRevocations"), Role::Gateway));
        assert!(!allowed(&internal("ActiveDevices"), Role::Gateway));
        assert!(!allowed(&internal("VisibleTo"), Role::Otp));
        assert!(open_to_all("/grpc.health.v1.Health/Check"));
        assert!(!open_to_all(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!open_to_all("/juntos.login.v1.Login/Me"));
    }

    #[test]
    fn a_certificate_names_its_role() {
        let set = InternalTls::ephemeral().expect("certs");
        for (role, tls) in &set {
            assert_eq!(tls.role(), *role);
            let cert = super::super::parse_certs(&tls.cert_pem, "test").expect("pem");
            assert_eq!(role_of(&cert[0]), Some(*role));
        }
        // A certificate for another name is refused for a role.
        let other = super::super::certs::Authority::generate("other", 1)
            .and_then(|ca| ca.issue(&["chat.juntos.internal".to_owned()], 1))
            .expect("cert");
        let err = InternalTls::new(
            Role::Login,
            other.cert.clone().into_bytes(),
            other.cert.into_bytes(),
            other.key.into_bytes(),
        )
        .expect_err("a chat certificate is not login's");
        assert!(err.contains("login.juntos.internal"), "{err}");
    }
}
