//! TLS to the gateway: which server URLs may go without it, and what the client trusts.
//!
//! `https://` servers are checked against the web PKI roots (`webpki-roots`, the Mozilla set
//! compiled in, so every platform trusts the same CAs), plus any extra CA or pinned
//! self-signed certificate the app configures for a self-hosted server. Plain `http://` is only
//! for a server on this machine, where nothing crosses a network. How a refused certificate is
//! reported lives with the other error mappings, in `error.rs`.

use std::net::IpAddr;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor};
use tonic::transport::ClientTlsConfig;

use crate::error::{ClientError, Result};

/// Whether `host` (a URI host, so an IPv6 address is in brackets) is this machine: `localhost`,
/// 127.0.0.0/8 or `::1` (IPv4-mapped loopback included).
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The TLS settings for an `https://` server: the web PKI roots, plus the certificates in
/// `extra_ca_pem` (added to the web roots, not instead of them); a handshake gives up after
/// `handshake_timeout`.
pub(crate) fn client_config(
    extra_ca_pem: Option<&str>,
    handshake_timeout: Duration,
) -> Result<ClientTlsConfig> {
    let config = ClientTlsConfig::new()
        .with_webpki_roots()
        // The TCP connect timeout stops at the TCP handshake; a server that accepts and then
        // says nothing must not stall the TLS handshake for ever either.
        .timeout(handshake_timeout);
    Ok(match extra_ca_pem {
        Some(pem) => config.trust_anchors(extra_trust_anchors(pem)?),
        None => config,
    })
}

/// The trust anchors in `pem`: one or more `CERTIFICATE` blocks, each a CA certificate or the
/// server's own self-signed certificate (pinning it). Other blocks (a private key pasted along)
/// are ignored; no certificate at all, or one that does not parse, is an error, so a broken
/// configuration fails here rather than as an "unknown issuer" on every connection.
pub(crate) fn extra_trust_anchors(pem: &str) -> Result<Vec<TrustAnchor<'static>>> {
    let invalid = |why: String| ClientError::InvalidInput {
        message: format!("extra CA PEM {why}"),
    };
    let mut roots = RootCertStore::empty();
    for (index, cert) in CertificateDer::pem_slice_iter(pem.as_bytes()).enumerate() {
        let number = index + 1;
        let cert = cert.map_err(|e| invalid(format!("is not valid PEM ({e})")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("certificate {number} does not parse ({e})")))?;
    }
    if roots.is_empty() {
        return Err(invalid(
            "holds no certificate (expected PEM with -----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(roots.roots)
}

#[cfg(test)]
mod tests;
