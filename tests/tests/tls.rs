//! TLS on the public endpoint, end to end: `juntos all --tls-cert/--tls-key` with a certificate
//! from a private CA made here, and client-core (and juntos-cli) connecting over `https://` as
//! an app would: trusting the CA it signs in; without the CA, or under a name the certificate
//! does not hold, it gets a certificate error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use juntos_client::{Client, ClientConfig, ClientError};
use juntos_proto::error::{reason, reason_of};
use juntos_proto::login::v1::{MeRequest, login_client::LoginClient};
use juntos_testkit::tls::Ca;
use juntos_tests::{ALICE, BOB, Process, extract_code, juntos_cli_bin};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// How long a refused handshake may take on a loaded CI machine (it takes milliseconds).
const PROMPT: Duration = Duration::from_secs(10);

/// `juntos all` serving the gateway over TLS on a free loopback port; killed on drop.
struct TlsGateway {
    _process: Process,
    port: u16,
    data_dir: PathBuf,
    dir: tempfile::TempDir,
}

impl TlsGateway {
    /// Starts `juntos all --tls-cert --tls-key` presenting `cert_pem` and waits until it
    /// listens and has its token keys.
    async fn start(ca: &Ca, cert_pem: &str, key_pem: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().join("data");
        let cert = dir.path().join("gateway.crt");
        let key = dir.path().join("gateway.key");
        std::fs::write(&cert, cert_pem).expect("write certificate");
        std::fs::write(&key, key_pem).expect("write key");
        let args = [
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--data-dir".to_owned(),
            path_arg(&data_dir),
            "--tls-cert".to_owned(),
            path_arg(&cert),
            "--tls-key".to_owned(),
            path_arg(&key),
        ];
        let process = Process::start("all", &args, "gateway");
        let port = process
            .addr
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse().ok())
            .expect("host:port");
        let gateway = Self {
            _process: process,
            port,
            data_dir,
            dir,
        };
        gateway.wait_until_ready(&ca.pem).await;
        gateway
    }

    /// `https://localhost:PORT`.
    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Waits until the gateway has its token keys (a call with a bogus token is refused as
    /// UNAUTHENTICATED INVALID_TOKEN, not UNAVAILABLE), over TLS trusting `ca_pem`. A call
    /// without a token would not do: MISSING_TOKEN is answered before the keys are looked at.
    async fn wait_until_ready(&self, ca_pem: &str) {
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
        let channel = Endpoint::from_shared(self.url())
            .expect("gateway url")
            .tls_config(tls)
            .expect("client TLS config")
            .connect()
            .await
            .expect("TLS connection to the gateway");
        let mut login = LoginClient::new(channel);
        // As long as the listening line may take: on a loaded machine the keys come later.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let mut request = tonic::Request::new(MeRequest {});
            request
                .metadata_mut()
                .insert("authorization", "Bearer x".parse().expect("header value"));
            match login.me(request).await {
                Err(s) if s.code() == tonic::Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                Err(s) if reason_of(&s).as_deref() == Some(reason::INVALID_TOKEN) => return,
                other => panic!("a bogus token answered {other:?}"),
            }
        }
        panic!("the gateway never loaded its token keys");
    }

    /// A client for `url` trusting `extra_ca_pem`, with a fresh home.
    fn client(&self, name: &str, url: &str, extra_ca_pem: Option<&str>) -> Arc<Client> {
        let home = self.dir.path().join("clients").join(name);
        Client::with_config(ClientConfig {
            server_url: url.to_owned(),
            home_dir: path_arg(&home),
            extra_ca_pem: extra_ca_pem.map(str::to_owned),
        })
        .expect("client")
    }

    /// The newest code texted to `phone` (the console sender's outbox).
    fn last_code(&self, phone: &str) -> String {
        let outbox =
            std::fs::read_to_string(self.data_dir.join("sms-outbox.jsonl")).expect("an SMS outbox");
        let body = outbox
            .lines()
            .rev()
            .find_map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).expect("outbox line is JSON");
                (v["to"] == phone).then(|| v["body"].as_str().expect("body").to_owned())
            })
            .expect("an SMS to the test number");
        extract_code(&body).expect("the SMS holds a 6-digit code")
    }
}

fn path_arg(path: &Path) -> String {
    path.to_str().expect("utf-8 temp path").to_owned()
}

/// The certificate error a code request to `url` answers, checked to come promptly.
async fn certificate_error(client: &Client) -> String {
    let started = Instant::now();
    let answer = client.request_code(BOB.to_owned()).await;
    let elapsed = started.elapsed();
    eprintln!("{answer:?} after {elapsed:?}");
    assert!(elapsed < PROMPT, "a refused handshake took {elapsed:?}");
    match answer {
        Err(ClientError::Certificate { message }) => message,
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test]
async fn client_trusting_the_private_ca_signs_in_over_https() {
    let ca = Ca::new("Juntos e2e CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let gateway = TlsGateway::start(&ca, &cert, &key).await;
    let phone = gateway.client("phone", &gateway.url(), Some(&ca.pem));
    let sent = phone
        .request_code(ALICE.to_owned())
        .await
        .expect("code requested over https");
    assert_eq!(sent.code_length, 6);
    let account = phone
        .sign_in(
            ALICE.to_owned(),
            gateway.last_code(ALICE),
            "phone".to_owned(),
        )
        .await
        .expect("signed in over https");
    let me = phone.me().await.expect("me over https");
    assert_eq!(me.user_id, account.user_id);
    assert_eq!(me.phone, ALICE);
}

#[tokio::test]
async fn untrusted_or_misnamed_certificates_are_refused() {
    let ca = Ca::new("Juntos e2e CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let gateway = TlsGateway::start(&ca, &cert, &key).await;

    // The web PKI roots alone do not know a private CA.
    let stranger = gateway.client("stranger", &gateway.url(), None);
    let message = certificate_error(&stranger).await;
    assert!(message.contains("unknown issuer"), "{message}");

    // The certificate is for localhost, not for the address.
    let by_address = format!("https://127.0.0.1:{}", gateway.port);
    let misnamed = gateway.client("misnamed", &by_address, Some(&ca.pem));
    let message = certificate_error(&misnamed).await;
    assert!(
        message.contains("not valid for 127.0.0.1") && message.contains("localhost"),
        "{message}"
    );

    // Neither reached the server: no code was sent.
    let outbox =
        std::fs::read_to_string(gateway.data_dir.join("sms-outbox.jsonl")).unwrap_or_default();
    assert!(
        !outbox.contains(BOB),
        "a refused client's request got through"
    );
}

#[tokio::test]
async fn juntos_cli_takes_a_ca_file() {
    let ca = Ca::new("Juntos e2e CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let gateway = TlsGateway::start(&ca, &cert, &key).await;
    let ca_file = gateway.dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let cli = |home: &str, ca_file: Option<&Path>| {
        let mut command = Command::new(juntos_cli_bin());
        command
            .args(["--server", &gateway.url(), "--home"])
            .arg(gateway.dir.path().join(home))
            .env_remove("JUNTOS_CA_FILE")
            // Log lines on stderr would come before the one `error:` line checked below.
            .env_remove("RUST_LOG");
        if let Some(path) = ca_file {
            command.arg("--ca-file").arg(path);
        }
        command
            .args(["request-code", ALICE])
            .output()
            .expect("run juntos-cli")
    };

    let trusted = cli("cli-trusted", Some(&ca_file));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(String::from_utf8_lossy(&trusted.stdout).starts_with("code sent"));

    let refused = cli("cli-refused", None);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error: certificate error: ") && stderr.contains("unknown issuer"),
        "{stderr}"
    );
}

/// A TLS channel to `url` that trusts only `ca_pem`.
async fn channel_trusting(url: &str, ca_pem: &str) -> Result<tonic::transport::Channel, String> {
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    let channel = Endpoint::from_shared(url.to_owned())
        .expect("gateway url")
        .tls_config(tls)
        .expect("client TLS config")
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    // TLS 1.3 can complete on the client before the server has checked anything: a call proves
    // the handshake.
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(channel)
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_dropping_open_streams() {
    let (old_ca, new_ca) = (Ca::new("old CA"), Ca::new("new CA"));
    let (cert, key) = old_ca.leaf(&["localhost"]);
    let gateway = TlsGateway::start(&old_ca, &cert, &key).await;
    let url = gateway.url();

    // A long-lived stream on the old certificate.
    let old = channel_trusting(&url, &old_ca.pem)
        .await
        .expect("the first certificate is served");
    let mut watch = tonic_health::pb::health_client::HealthClient::new(old)
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("first status").expect("one");

    // cert-manager writes the new pair in place; the gateway picks it up within its interval.
    let (cert, key) = new_ca.leaf(&["localhost"]);
    std::fs::write(gateway.dir.path().join("gateway.key"), key).expect("write key");
    std::fs::write(gateway.dir.path().join("gateway.crt"), cert).expect("write certificate");
    let started = Instant::now();
    loop {
        match channel_trusting(&url, &new_ca.pem).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "the new certificate was never served: {e}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    eprintln!("new certificate served after {:?}", started.elapsed());
    assert!(
        channel_trusting(&url, &old_ca.pem).await.is_err(),
        "new connections no longer get the old certificate"
    );

    // The stream opened before the rotation is still open.
    let still_open = tokio::time::timeout(Duration::from_millis(500), watch.message()).await;
    assert!(
        still_open.is_err(),
        "the open stream was not touched: {still_open:?}"
    );
}
