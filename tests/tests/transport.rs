//! Transport and trust: internal roles that answer only the other roles (mutual TLS), the public
//! endpoint's plaintext rule, buffered calls that cannot make the gateway hold or wait for much,
//! and streams that end with their session.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{ClientFrame, GetPresenceRequest, SyncRequest};
use juntos_proto::login::v1::directory_client::DirectoryClient;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{MeRequest, RefreshRequest, ResolvePhonesRequest, SignOutRequest};
use juntos_proto::otp::v1::RequestCodeRequest;
use juntos_proto::otp::v1::otp_client::OtpClient;
use juntos_tests::raw::{self, authed, reason};
use juntos_tests::{ALICE, BOB, System, juntos_bin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

// === internal roles ===

/// A channel to the `peer` role at `addr` over TLS trusting the internal CA in `certs`,
/// presenting `caller`'s certificate (the folder `juntos certs` made, and the role), if any.
async fn internal_channel(
    addr: &str,
    certs: &std::path::Path,
    peer: &str,
    caller: Option<(&std::path::Path, &str)>,
) -> Result<Channel, tonic::transport::Error> {
    let ca = std::fs::read(certs.join("ca.crt")).expect("internal CA");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(format!("{peer}.juntos.internal"));
    if let Some((dir, role)) = caller {
        tls = tls.identity(identity_of(dir, role));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("url")
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// [`internal_channel`] to the `peer` role at `addr`, presenting `role`'s certificate from
/// `certs`, which must be valid.
async fn channel_as(addr: &str, certs: &std::path::Path, peer: &str, role: &str) -> Channel {
    internal_channel(addr, certs, peer, Some((certs, role)))
        .await
        .unwrap_or_else(|e| panic!("{role}'s certificate is valid: {e:?}"))
}

/// `Login.Me` for `user` over `channel` (see [`me_as`]), which must be refused.
async fn me_refused(
    channel: Channel,
    user: &juntos_proto::login::v1::SignInResponse,
    why: &str,
) -> tonic::Status {
    LoginClient::new(channel)
        .me(me_as(user))
        .await
        .expect_err(why)
}

/// A status's code and `ErrorInfo.reason`, for assertions.
fn code_and_reason(status: &tonic::Status) -> (Code, String) {
    (status.code(), reason(status))
}

fn identity_of(dir: &std::path::Path, role: &str) -> Identity {
    let read = |name: &str| std::fs::read(dir.join(role).join(name)).expect("certificate file");
    Identity::from_pem(read("tls.crt"), read("tls.key"))
}

/// `Login.Me` for `user`'s device, with the identity headers the gateway would set.
fn me_as(user: &juntos_proto::login::v1::SignInResponse) -> tonic::Request<MeRequest> {
    let mut request = tonic::Request::new(MeRequest {});
    for (name, value) in [
        ("x-juntos-user-id", user.user_id.clone()),
        ("x-juntos-device-id", user.device_id.clone()),
        ("x-juntos-session-id", "forged".to_owned()),
        ("x-juntos-client-ip", "127.0.0.1".to_owned()),
    ] {
        request
            .metadata_mut()
            .insert(name, MetadataValue::try_from(value).expect("value"));
    }
    request
}

#[tokio::test]
async fn internal_roles_answer_only_the_roles_that_may_call_them() {
    let sys = System::builder().split_roles().start().await;
    let alice = raw::sign_in(&sys, &sys.channel().await, ALICE, "a").await;
    let certs = sys.internal_tls_dir();
    let login = sys.process_addr("login", 0);

    // Plaintext, with forged identity headers: refused before any service reads them.
    let plain = Endpoint::from_shared(format!("http://{login}"))
        .expect("url")
        .connect()
        .await
        .expect("a TCP connection is accepted");
    let refused = me_refused(plain, &alice, "no certificate").await;
    assert_eq!(
        code_and_reason(&refused),
        (Code::Unauthenticated, "INTERNAL_CALLER".to_owned()),
        "{refused:?}"
    );

    // TLS without a client certificate: the same.
    let anonymous = internal_channel(&login, &certs, "login", None)
        .await
        .expect("TLS without a client certificate connects");
    let refused = me_refused(anonymous.clone(), &alice, "no certificate").await;
    assert_eq!(
        code_and_reason(&refused),
        (Code::Unauthenticated, "INTERNAL_CALLER".to_owned()),
        "{refused:?}"
    );
    // Health alone is open (Kubernetes' gRPC probes carry no certificate).
    let health = tonic_health::pb::health_client::HealthClient::new(anonymous)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health answers anyone")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // A certificate from another CA does not even get through the handshake.
    let other = tempfile::tempdir().expect("dir");
    let made = Command::new(juntos_bin())
        .args(["certs", "--out"])
        .arg(other.path())
        .stdout(Stdio::null())
        .status()
        .expect("juntos certs");
    assert!(made.success());
    let stranger =
        match internal_channel(&login, &certs, "login", Some((other.path(), "gateway"))).await {
            // TLS 1.3 may finish the client's side of the handshake before the server refuses.
            Ok(channel) => LoginClient::new(channel).me(me_as(&alice)).await.err(),
            Err(e) => Some(tonic::Status::unavailable(e.to_string())),
        };
    let stranger = stranger.expect("a foreign certificate is refused");
    // Refused by the handshake, not answered by login (which would carry a reason).
    assert_eq!(reason(&stranger), "", "{stranger:?}");

    // A role's certificate reaches only what that role needs: chat may not ask otp for codes.
    let otp = sys.process_addr("otp", 0);
    let as_chat = channel_as(&otp, &certs, "otp", "chat").await;
    let refused = OtpClient::new(as_chat)
        .request_code(RequestCodeRequest {
            phone: BOB.to_owned(),
        })
        .await
        .expect_err("chat may not send codes");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    // Nor may chat speak for a user: its certificate cannot call public methods.
    let chat_to_login = channel_as(&login, &certs, "login", "chat").await;
    let refused = me_refused(chat_to_login, &alice, "chat is not the gateway").await;
    assert_eq!(
        code_and_reason(&refused),
        (Code::PermissionDenied, "NOT_PUBLIC".to_owned()),
        "{refused:?}"
    );

    // The gateway's certificate is trusted with the identity headers (login then checks the
    // session they name: this one is made up, so it answers as for a signed-out session).
    let as_gateway = channel_as(&login, &certs, "login", "gateway").await;
    let answered = me_refused(as_gateway, &alice, "a made-up session").await;
    assert_eq!(
        code_and_reason(&answered),
        (Code::Unauthenticated, "SESSION_REVOKED".to_owned()),
        "login itself answered: {answered:?}"
    );

    // And a caller checks that it reached the role it wanted: otp's certificate does not pass
    // for login (health, open to all, would answer if the name were not checked).
    let wrong_peer = match internal_channel(&otp, &certs, "login", Some((&certs, "gateway"))).await
    {
        Ok(channel) => tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .err(),
        Err(e) => Some(tonic::Status::unavailable(e.to_string())),
    };
    assert!(wrong_peer.is_some(), "otp passed for login");

    // A connection without a certificate is closed after a few seconds.
    let mut tcp = tokio::net::TcpStream::connect(&login).await.expect("tcp");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    let opened = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buf = [0u8; 1024];
        while let Ok(1..) = tcp.read(&mut buf).await {}
    })
    .await;
    assert!(closed.is_ok(), "an unauthenticated connection stays open");
    eprintln!(
        "unauthenticated connection closed after {:?}",
        opened.elapsed()
    );
}

#[test]
fn plaintext_is_served_only_on_loopback() {
    let data = tempfile::tempdir().expect("dir");
    let refused = Command::new(juntos_bin())
        .args(["all", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run juntos all");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to serve plaintext on 0.0.0.0:0")
            && stderr.contains("--tls-cert")
            && stderr.contains("--insecure-plaintext"),
        "{stderr}"
    );
    // Internal roles need their certificates.
    let refused = Command::new(juntos_bin())
        .args(["chat", "--login", "https://127.0.0.1:1", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("run juntos chat");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--internal-tls-dir is required") && stderr.contains("juntos certs"),
        "{stderr}"
    );
}

// === buffered calls ===

/// Sends request messages as they are: a client that can put anything into a call.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Streams `messages` into the retryable unary `Chat/Sync` as one call.
async fn stream_into_sync(
    channel: Channel,
    token: &str,
    messages: impl tokio_stream::Stream<Item = Bytes> + Send + 'static,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/juntos.chat.v1.Chat/Sync");
    grpc.client_streaming(authed(messages, token), path, RawCodec)
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn a_retryable_call_buffers_one_message_within_a_deadline() {
    let sys = System::builder()
        .arg("--buffered-read-timeout-secs", "2")
        .arg("--user-rate", "1000")
        .start()
        .await;
    let channel = sys.channel().await;
    let alice = raw::sign_in(&sys, &channel, ALICE, "a").await;
    let token = alice.tokens.expect("tokens").access_token;
    let pid = sys.pid();

    // 1 GiB offered as 1,024 messages of 1 MiB (each under the 20 MiB cap) into one unary call.
    let before = rss_bytes(pid);
    let megabyte = Bytes::from(vec![7u8; 1 << 20]);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let gigabyte = tokio_stream::StreamExt::map(tokio_stream::iter(0..1024), move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        megabyte.clone()
    });
    let refused = stream_into_sync(channel.clone(), &token, gigabyte).await;
    let after = rss_bytes(pid);
    assert_eq!(
        code_and_reason(&refused),
        (Code::ResourceExhausted, "TOO_MANY_MESSAGES".to_owned()),
        "{refused:?}"
    );
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < 1024,
        "the gateway stopped reading early ({sent} MiB taken)"
    );
    let grew = after.saturating_sub(before);
    eprintln!(
        "gateway RSS {} MiB before, {} MiB after ({} MiB offered, {sent} taken)",
        before >> 20,
        after >> 20,
        1024
    );
    assert!(
        grew < 64 << 20,
        "the gateway's memory grew by {} MiB",
        grew >> 20
    );

    // One valid message, then the body never ends: given up after the read deadline.
    let sync = {
        use tonic_prost::prost::Message as _;
        SyncRequest {
            after_seq: 0,
            limit: 1,
        }
        .encode_to_vec()
    };
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    tx.send(Bytes::from(sync)).await.expect("queued");
    let started = Instant::now();
    let refused = stream_into_sync(channel.clone(), &token, ReceiverStream::new(rx)).await;
    drop(tx);
    assert_eq!(
        code_and_reason(&refused),
        (Code::DeadlineExceeded, "REQUEST_TOO_SLOW".to_owned()),
        "{refused:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));

    // An ordinary call still works.
    let synced = ChatClient::new(channel)
        .sync(authed(
            SyncRequest {
                after_seq: 0,
                limit: 1,
            },
            &token,
        ))
        .await;
    assert!(synced.is_ok(), "{synced:?}");
}

// === streams end with their session ===

struct Signed {
    user_id: String,
    token: String,
    refresh: String,
}

async fn signed(sys: &System, channel: &Channel, phone: &str) -> Signed {
    let response = raw::sign_in(sys, channel, phone, "d").await;
    let tokens = response.tokens.expect("tokens");
    Signed {
        user_id: response.user_id,
        token: tokens.access_token,
        refresh: tokens.refresh_token,
    }
}

/// Opens `user`'s Connect stream; returns the sender of client frames (kept open) and the
/// server frames.
async fn connect(
    channel: &Channel,
    token: &str,
) -> (
    mpsc::Sender<ClientFrame>,
    tonic::Streaming<juntos_proto::chat::v1::ServerFrame>,
) {
    let (frames, outgoing) = mpsc::channel(16);
    let inbound = ChatClient::new(channel.clone())
        .connect(authed(ReceiverStream::new(outgoing), token))
        .await
        .expect("stream opened")
        .into_inner();
    (frames, inbound)
}

/// Reads frames until the stream ends; the status it ended with and when.
async fn until_end(
    inbound: &mut tonic::Streaming<juntos_proto::chat::v1::ServerFrame>,
    within: Duration,
) -> tonic::Status {
    tokio::time::timeout(within, async {
        loop {
            match inbound.message().await {
                Ok(Some(_)) => {}
                Ok(None) => return tonic::Status::ok("ended"),
                Err(status) => return status,
            }
        }
    })
    .await
    .expect("the stream ended in time")
}

async fn online(viewer: &Signed, channel: &Channel, of: &Signed) -> bool {
    ChatClient::new(channel.clone())
        .get_presence(authed(
            GetPresenceRequest {
                user_ids: vec![of.user_id.clone()],
            },
            &viewer.token,
        ))
        .await
        .expect("presence")
        .into_inner()
        .users
        .first()
        .expect("one user")
        .online
}

async fn wait_for_presence(viewer: &Signed, channel: &Channel, of: &Signed, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while online(viewer, channel, of).await != want {
        assert!(Instant::now() < deadline, "presence never became {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_revoked_session_ends_its_stream_and_the_device_goes_offline() {
    const HEARTBEAT: Duration = Duration::from_secs(5);
    let sys = System::builder()
        .arg("--chat-heartbeat-secs", "5")
        .start()
        .await;
    let channel = sys.channel().await;
    let alice = signed(&sys, &channel, ALICE).await;
    let bob = signed(&sys, &channel, BOB).await;
    for (user, other) in [(&alice, BOB), (&bob, ALICE)] {
        DirectoryClient::new(channel.clone())
            .resolve_phones(authed(
                ResolvePhonesRequest {
                    phones: vec![other.to_owned()],
                },
                &user.token,
            ))
            .await
            .expect("contacts");
    }
    let (_frames, mut inbound) = connect(&channel, &alice.token).await;
    wait_for_presence(&bob, &channel, &alice, true).await;

    // Signed out by a call of its own (as from another app instance): the open stream ends.
    LoginClient::new(channel.clone())
        .sign_out(authed(SignOutRequest {}, &alice.token))
        .await
        .expect("signed out");
    let started = Instant::now();
    let ended = until_end(&mut inbound, HEARTBEAT).await;
    eprintln!("stream ended {:?} after the sign-out", started.elapsed());
    assert_eq!(
        code_and_reason(&ended),
        (Code::Unauthenticated, "SESSION_REVOKED".to_owned()),
        "{ended:?}"
    );
    wait_for_presence(&bob, &channel, &alice, false).await;
}

#[tokio::test]
async fn a_stream_ends_when_its_token_expires_unless_the_session_refreshed() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let alice = signed(&sys, &channel, ALICE).await;
    let bob = signed(&sys, &channel, BOB).await;
    let (_alice_frames, mut alice_inbound) = connect(&channel, &alice.token).await;
    let (_bob_frames, mut bob_inbound) = connect(&channel, &bob.token).await;

    // Ten minutes on, Bob refreshes and uses the new token; Alice does nothing.
    sys.advance_clock(Duration::from_secs(10 * 60));
    let tokens = LoginClient::new(channel.clone())
        .refresh(RefreshRequest {
            refresh_token: bob.refresh.clone(),
        })
        .await
        .expect("refreshed")
        .into_inner()
        .tokens
        .expect("tokens");
    LoginClient::new(channel.clone())
        .me(authed(MeRequest {}, &tokens.access_token))
        .await
        .expect("the new token works");

    // Past the first tokens' 15 minutes: Alice's stream ends, Bob's goes on.
    sys.advance_clock(Duration::from_secs(6 * 60));
    let ended = until_end(&mut alice_inbound, Duration::from_secs(10)).await;
    assert_eq!(
        code_and_reason(&ended),
        (Code::Unauthenticated, "TOKEN_EXPIRED".to_owned()),
        "{ended:?}"
    );
    let still_open = tokio::time::timeout(Duration::from_secs(7), async {
        while let Ok(Some(_)) = bob_inbound.message().await {}
    })
    .await;
    assert!(
        still_open.is_err(),
        "a refreshed session's stream stays open"
    );
}

#[tokio::test]
async fn a_connected_device_keeps_its_stream_across_token_expiry() {
    let sys = System::start().await;
    let client = sys.client_on_test_clock("alice");
    client.request_code(ALICE.to_owned()).await.expect("code");
    client
        .sign_in(ALICE.to_owned(), sys.last_code(ALICE), "a".to_owned())
        .await
        .expect("signed in");
    let events = Arc::new(juntos_tests::clients::Recorder::default());
    let listener: Arc<dyn juntos_client::EventListener> = events.clone();
    Arc::clone(&client)
        .start(Some(listener))
        .await
        .expect("started");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Within a minute of the 15-minute token's expiry the client refreshes and shows the
    // gateway its new token; then past the first token's expiry the stream is still the same.
    sys.advance_clock(Duration::from_secs(14 * 60 + 30));
    tokio::time::sleep(Duration::from_secs(12)).await;
    sys.advance_clock(Duration::from_secs(2 * 60));
    tokio::time::sleep(Duration::from_secs(12)).await;
    let connections: Vec<String> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            juntos_client::Event::Connected => Some("connected".to_owned()),
            juntos_client::Event::Disconnected { reason } => Some(format!("lost: {reason}")),
            _ => None,
        })
        .collect();
    client.stop();
    assert_eq!(connections, ["connected"], "the stream was never cut");
}
