//! TLS for every role, on rustls with the `ring` provider.
//!
//! * The public endpoint (the gateway) serves the certificate given by `--tls-cert`/`--tls-key`,
//!   re-read whenever the files change ([`ReloadingCert`]), so a certificate rotated by
//!   cert-manager is picked up by new connections while open streams go on.
//! * Between roles, mutual TLS ([`internal`]): one internal CA, and one certificate per role for
//!   the DNS name `<role>.juntos.internal`. Every role accepts only connections whose client
//!   certificate that CA issued, learns the calling role from it, and lets each role call only
//!   what it needs ([`internal::allowed`]). `juntos certs` makes the set ([`certs`]).

pub mod certs;
pub mod internal;
mod reload;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

pub use self::reload::ReloadingCert;

/// The one crypto provider: ring (aws-lc is never linked).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A Juntos role, as named in its internal certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Gateway,
    Otp,
    Login,
    Chat,
    Media,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 5] = [
        Role::Gateway,
        Role::Otp,
        Role::Login,
        Role::Chat,
        Role::Media,
    ];

    /// `gateway`, `otp`, ...
    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Otp => "otp",
            Role::Login => "login",
            Role::Chat => "chat",
            Role::Media => "media",
        }
    }

    /// The DNS name the role's internal certificate is for: `<role>.juntos.internal`. Peers
    /// check this name whatever address they dialled (a pod IP from a headless Service).
    pub fn dns_name(self) -> String {
        format!("{}.juntos.internal", self.name())
    }
}

/// Every certificate in a PEM buffer; at least one.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no certificate found"));
    }
    Ok(certs)
}

/// The private key in a PEM buffer (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("{what}: no usable private key: {e}"))
}

/// Reads a file whole, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A certificate chain and its key checked to belong together, ready to serve.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    what: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    let certs = parse_certs(cert_pem, what)?;
    let key = parse_key(key_pem, what)?;
    let certified = rustls::sign::CertifiedKey::from_der(certs, key, &provider())
        .map_err(|e| format!("{what}: the key does not fit the certificate: {e}"))?;
    Ok(Arc::new(certified))
}

/// A server configuration for HTTP/2 (ALPN `h2`) serving whatever `certs` resolves, with
/// client certificates checked by `clients` when given.
pub fn server_config(
    certs: Arc<dyn rustls::server::ResolvesServerCert>,
    clients: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Arc<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let builder = match clients {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec()];
    Arc::new(config)
}

/// The next connection on `listener`. A failed accept (out of file descriptors, say) is logged
/// and tried again after a short pause.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
