//! TLS against a real tonic TLS server on loopback, with certificates made here by a private CA.
//!
//! The server is a fake `Otp` service, so a call that gets through the handshake answers;
//! a refused certificate never reaches it.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use juntos_proto::otp::v1 as otp;
use juntos_proto::otp::v1::otp_server::{Otp, OtpServer};
use rcgen::{CertificateParams, KeyPair, date_time_ymd};
use rustls::CertificateError;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use juntos_testkit::tls::Ca;

use super::*;
use crate::api::{Api, CONNECT_TIMEOUT};
use crate::error::tls_error_of;
use crate::{Client, ClientConfig};

/// How long a refused handshake may take on a loaded 2-core CI machine; it takes milliseconds.
const PROMPT: Duration = Duration::from_secs(10);

/// Answers every code request.
struct FakeOtp;

#[tonic::async_trait]
impl Otp for FakeOtp {
    async fn request_code(
        &self,
        _: Request<otp::RequestCodeRequest>,
    ) -> Result<Response<otp::RequestCodeResponse>, Status> {
        Ok(Response::new(otp::RequestCodeResponse {
            code_length: 6,
            expires_in_seconds: 300,
            resend_after_seconds: 30,
        }))
    }

    async fn verify_code(
        &self,
        _: Request<otp::VerifyCodeRequest>,
    ) -> Result<Response<otp::VerifyCodeResponse>, Status> {
        Err(Status::unimplemented("internal"))
    }
}

/// A TLS gRPC server on a free loopback port presenting `cert_pem`; its port.
async fn serve_tls(cert_pem: &str, key_pem: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    let server = Server::builder()
        .tls_config(tls)
        .expect("server TLS config")
        .add_service(OtpServer::new(FakeOtp))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    port
}

/// A client for `url` trusting `extra_ca_pem`, in a fresh home (kept alive by the returned dir).
fn client(url: &str, extra_ca_pem: Option<&str>) -> (Arc<Client>, tempfile::TempDir) {
    let home = tempfile::tempdir().expect("tempdir");
    let client = Client::with_config(ClientConfig {
        server_url: url.to_owned(),
        home_dir: home.path().join("home").display().to_string(),
        extra_ca_pem: extra_ca_pem.map(str::to_owned),
    })
    .expect("client");
    (client, home)
}

/// `request_code` through a client for `url` trusting `extra_ca_pem`, timed.
async fn request_code(
    url: &str,
    extra_ca_pem: Option<&str>,
) -> (Result<u32, ClientError>, Duration) {
    let (client, _home) = client(url, extra_ca_pem);
    let started = Instant::now();
    let answer = client
        .request_code("+12015550123".to_owned())
        .await
        .map(|sent| sent.code_length);
    (answer, started.elapsed())
}

/// The certificate error `url` answers with, checked to come promptly.
async fn certificate_error(url: &str, extra_ca_pem: Option<&str>) -> String {
    let (answer, elapsed) = request_code(url, extra_ca_pem).await;
    eprintln!("{url}: {answer:?} after {elapsed:?}");
    assert!(elapsed < PROMPT, "a refused handshake took {elapsed:?}");
    match answer {
        Err(ClientError::Certificate { message }) => {
            assert!(!message.contains('\n'), "{message}");
            message
        }
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn private_ca_given_as_extra_ca_is_trusted() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let port = serve_tls(&cert, &key).await;
    for url in [
        format!("https://localhost:{port}"),
        format!("https://127.0.0.1:{port}"),
    ] {
        let (answer, elapsed) = request_code(&url, Some(&ca.pem)).await;
        eprintln!("{url}: {answer:?} after {elapsed:?}");
        assert_eq!(answer.expect("the call reaches the server"), 6, "{url}");
    }
}

#[tokio::test]
async fn pinned_self_signed_certificate_is_trusted() {
    // What `juntos all --tls-self-signed` hands out: no CA, the server's own certificate.
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate")
        .pem();
    let port = serve_tls(&cert, &key.serialize_pem()).await;
    let url = format!("https://localhost:{port}");
    let (answer, _) = request_code(&url, Some(&cert)).await;
    assert_eq!(answer.expect("the pinned certificate is trusted"), 6);
    // Without the pin it is just another unknown issuer.
    let message = certificate_error(&url, None).await;
    assert!(message.contains("unknown issuer"), "{message}");
}

#[tokio::test]
async fn unknown_issuer_is_a_certificate_error() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    let port = serve_tls(&cert, &key).await;
    let url = format!("https://localhost:{port}");
    let message = certificate_error(&url, None).await;
    assert_eq!(
        message,
        "the server's certificate is not trusted (unknown issuer): if the server uses a private \
         CA or a self-signed certificate, add it as an extra CA"
    );
    // Another CA does not vouch for this one.
    let message = certificate_error(&url, Some(&Ca::new("Another CA").pem)).await;
    assert!(message.contains("unknown issuer"), "{message}");
    // Nor does an impostor of the same name: the signature gives it away.
    let message = certificate_error(&url, Some(&Ca::new("Juntos test CA").pem)).await;
    assert_eq!(message, "the server's certificate has a bad signature");
}

#[tokio::test]
async fn a_refused_certificate_keeps_queued_sends_waiting() {
    use crate::model::session::{Session, Tokens};
    use crate::store::messaging::outbox_head;

    // A captive portal, a TLS proxy, or a server certificate that expired before its renewal:
    // the outbox waits as it does for the network, and never gives a send up.
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let port = serve_tls(&cert, &key).await;
    let (client, _home) = client(&format!("https://localhost:{port}"), None);
    client
        .shared
        .store
        .save_session(&Session {
            user_id: "u-me".to_owned(),
            device_id: "d-me".to_owned(),
            phone: "+12015550123".to_owned(),
            tokens: Tokens {
                access_token: "access".to_owned(),
                access_expires_at_ms: i64::MAX,
                refresh_token: "refresh".to_owned(),
                refresh_expires_at_ms: i64::MAX,
            },
        })
        .expect("session");
    client
        .shared
        .store
        .write(|tx| tx.enqueue("m-1", "u-peer", b"content", 0))
        .expect("queued");
    // More drains than the tries a send failing for any other reason gets.
    for _ in 0..25 {
        let answer = client.shared.drain_outbox().await;
        assert!(
            matches!(&answer, Err(ClientError::Certificate { .. })),
            "{answer:?}"
        );
    }
    let head = client
        .shared
        .store
        .read(outbox_head)
        .expect("outbox")
        .expect("the send is still queued");
    assert_eq!((head.client_msg_id.as_str(), head.attempts), ("m-1", 0));
}

#[tokio::test]
async fn host_name_not_in_the_certificate_is_a_certificate_error() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf(&["other.example"]);
    let port = serve_tls(&cert, &key).await;
    let message = certificate_error(&format!("https://localhost:{port}"), Some(&ca.pem)).await;
    assert_eq!(
        message,
        "the server's certificate is not valid for localhost (it is for other.example)"
    );

    // An IP address is checked against the certificate's IP names, not its DNS names.
    let (cert, key) = ca.leaf(&["localhost"]);
    let port = serve_tls(&cert, &key).await;
    let message = certificate_error(&format!("https://127.0.0.1:{port}"), Some(&ca.pem)).await;
    assert!(
        message.contains("not valid for 127.0.0.1") && message.contains("localhost"),
        "{message}"
    );
}

#[tokio::test]
async fn expired_certificate_is_a_certificate_error() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf_with(&["localhost"], |params| {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    });
    let port = serve_tls(&cert, &key).await;
    let message = certificate_error(&format!("https://localhost:{port}"), Some(&ca.pem)).await;
    assert!(message.contains("has expired"), "{message}");
}

#[tokio::test]
async fn not_yet_valid_certificate_is_a_certificate_error() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf_with(&["localhost"], |params| {
        params.not_before = date_time_ymd(2400, 1, 1);
    });
    let port = serve_tls(&cert, &key).await;
    let message = certificate_error(&format!("https://localhost:{port}"), Some(&ca.pem)).await;
    assert!(message.contains("not valid yet"), "{message}");
}

/// Pins what the mapping relies on: tonic's status for a failed handshake is UNAVAILABLE without
/// an ErrorInfo reason, and its source chain leads (through an `io::Error`) to the
/// `rustls::Error`. A tonic or rustls upgrade that changes this fails here, not in an app.
#[tokio::test]
async fn handshake_failure_status_carries_the_rustls_error() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let port = serve_tls(&cert, &key).await;
    let api = Api::new(&format!("https://localhost:{port}"), None).expect("api");
    let status = api
        .request_code("+12015550123".to_owned())
        .await
        .expect_err("untrusted");
    let mut chain = Vec::new();
    let mut next = status.source();
    while let Some(error) = next {
        let kind = if error.is::<std::io::Error>() {
            "io::Error"
        } else if error.is::<rustls::Error>() {
            "rustls::Error"
        } else {
            "other"
        };
        chain.push(format!("{kind}: {error:?}"));
        next = error.source();
    }
    eprintln!("{status:?}\nsource chain:\n  {}", chain.join("\n  "));
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(juntos_proto::error::reason_of(&status), None);
    assert!(
        matches!(
            tls_error_of(&status),
            Some(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))
        ),
        "{:?}",
        tls_error_of(&status)
    );
}

#[tokio::test]
async fn https_to_a_plaintext_server_fails_promptly() {
    // A plain HTTP/2 server where TLS is expected (e.g. a wrong port): not a certificate
    // problem, but no hang either.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(
        Server::builder()
            .add_service(OtpServer::new(FakeOtp))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let (answer, elapsed) = request_code(&format!("https://localhost:{port}"), None).await;
    eprintln!("https to plaintext: {answer:?} after {elapsed:?}");
    assert!(elapsed < PROMPT, "took {elapsed:?}");
    assert!(
        matches!(&answer, Err(ClientError::Network { message }) if message.contains("does not speak TLS")),
        "{answer:?}"
    );
}

#[tokio::test]
async fn plain_http_to_a_tls_server_fails_promptly() {
    let ca = Ca::new("Juntos test CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let port = serve_tls(&cert, &key).await;
    let (answer, elapsed) = request_code(&format!("http://localhost:{port}"), None).await;
    eprintln!("http to TLS: {answer:?} after {elapsed:?}");
    assert!(elapsed < PROMPT, "took {elapsed:?}");
    // Tonic sees the connection drop mid-HTTP/2 ("transport error"): no certificate was looked at.
    assert!(
        matches!(answer, Err(ref e) if !matches!(e, ClientError::Certificate { .. })),
        "{answer:?}"
    );
}

#[tokio::test]
async fn silent_server_times_out_in_the_handshake() {
    // Accepts TCP, then never says a word: the TLS handshake gives up after the connect
    // timeout, well before the 30 s request timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (answer, elapsed) = request_code(&format!("https://localhost:{port}"), None).await;
    eprintln!("silent server: {answer:?} after {elapsed:?}");
    silent.abort();
    assert!(
        matches!(&answer, Err(ClientError::Network { .. })),
        "{answer:?}"
    );
    assert!(
        elapsed >= CONNECT_TIMEOUT && elapsed < CONNECT_TIMEOUT + PROMPT,
        "took {elapsed:?}"
    );
}

#[test]
fn extra_ca_pem_must_hold_certificates() {
    let ca = Ca::new("Juntos test CA");
    assert_eq!(extra_trust_anchors(&ca.pem).expect("one CA").len(), 1);
    let two = format!("{}\n{}", ca.pem, Ca::new("Another CA").pem);
    assert_eq!(extra_trust_anchors(&two).expect("two CAs").len(), 2);
    let key = KeyPair::generate().expect("key").serialize_pem();
    let with_key = format!("{key}{}", ca.pem);
    assert_eq!(
        extra_trust_anchors(&with_key).expect("key ignored").len(),
        1
    );
    for bad in [
        String::new(),
        "not a certificate".to_owned(),
        key,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_owned(),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_owned(),
    ] {
        let err = extra_trust_anchors(&bad).expect_err(&bad);
        assert!(
            matches!(&err, ClientError::InvalidInput { message } if message.starts_with("extra CA PEM ")),
            "{bad}: {err}"
        );
    }
}

#[test]
fn client_with_config_checks_its_settings() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = |url: &str, pem: Option<&str>| ClientConfig {
        server_url: url.to_owned(),
        home_dir: home.path().join("home").display().to_string(),
        extra_ca_pem: pem.map(str::to_owned),
    };
    for url in [
        "http://127.0.0.1:1",
        "http://[::1]:1",
        "http://localhost:1",
        "https://juntos.example.org",
    ] {
        Client::with_config(config(url, None)).unwrap_or_else(|e| panic!("{url}: {e}"));
        Client::new(
            url.to_owned(),
            home.path().join("new").display().to_string(),
        )
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    let refused = Client::with_config(config("http://example.com", None)).expect_err("plain http");
    assert!(
        matches!(&refused, ClientError::InvalidInput { message } if message.contains("use https://")),
        "{refused}"
    );
    assert!(matches!(
        Client::new(
            "http://example.com".to_owned(),
            home.path().join("new").display().to_string()
        ),
        Err(ClientError::InvalidInput { .. })
    ));
    let bad_pem = Client::with_config(config("https://juntos.example.org", Some("junk")))
        .expect_err("bad PEM");
    assert!(
        matches!(&bad_pem, ClientError::InvalidInput { message } if message.contains("extra CA PEM")),
        "{bad_pem}"
    );
    Client::with_config(config(
        "https://juntos.example.org",
        Some(&Ca::new("Juntos test CA").pem),
    ))
    .expect("a CA");
}

#[test]
fn loopback_hosts() {
    for host in [
        "localhost",
        "LocalHost",
        "localhost.",
        "127.0.0.1",
        "127.255.0.9",
        "[::1]",
        "[::ffff:127.0.0.1]",
    ] {
        assert!(is_loopback(host), "{host}");
    }
    for host in [
        "example.com",
        "localhost.example.com",
        "mylocalhost",
        "0.0.0.0",
        "10.0.0.1",
        "[::]",
        "[2001:db8::1]",
        "",
    ] {
        assert!(!is_loopback(host), "{host}");
    }
}
