//! The chat role behind the gateway, in one process: sign in two users with real codes, then
//! send, push over a long-lived `Connect` stream (across several heartbeats), ack and sync, all
//! through the gateway; and check the gateway's message cap against the largest valid send.

use std::time::Duration;

use clap::Parser as _;
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{
    AckRequest, ClientFrame, Heartbeat, OutgoingEnvelope, SendRequest, ServerFrame, SyncRequest,
    client_frame, server_frame,
};
use juntos_proto::error::{reason, reason_of};
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{DeviceInfo, Platform, SignInRequest};
use juntos_proto::otp::v1::RequestCodeRequest;
use juntos_proto::otp::v1::otp_client::OtpClient;
use juntos_server::cli::{Cli, Role};
use juntos_server::roles::{self, RoleContext};
use juntos_server::shutdown;
use juntos_server::tls::Role as TlsRole;
use juntos_server::tls::internal::InternalTls;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A client frame with a large field `ClientFrame` does not have.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedFrame {
    #[prost(bytes = "vec", tag = "15")]
    padding: Vec<u8>,
}

struct User {
    user_id: String,
    device_id: String,
    token: String,
}

fn authed<T>(user: &User, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", user.token).parse().expect("header"),
    );
    request
}

async fn sign_in(channel: &Channel, data_dir: &std::path::Path, phone: &str, seed: u8) -> User {
    OtpClient::new(channel.clone())
        .request_code(RequestCodeRequest {
            phone: phone.into(),
        })
        .await
        .expect("request code");
    let outbox = std::fs::read_to_string(data_dir.join("sms-outbox.jsonl")).expect("outbox");
    let line = outbox.lines().rfind(|l| l.contains(phone)).expect("sms");
    let after = &line[line.find("code is ").expect("code text") + "code is ".len()..];
    let code: String = after.chars().take_while(char::is_ascii_digit).collect();
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let response = LoginClient::new(channel.clone())
        .sign_in(SignInRequest {
            phone: phone.into(),
            code,
            device: Some(DeviceInfo {
                name: "test".into(),
                platform: Platform::Linux as i32,
                identity_signing_key: signing.verifying_key().to_bytes().to_vec(),
                identity_dh_key: vec![seed; 32],
            }),
        })
        .await
        .expect("sign in")
        .into_inner();
    User {
        user_id: response.user_id,
        device_id: response.device_id,
        token: response.tokens.expect("tokens").access_token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_through_the_gateway() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8").to_owned();
    let Role::All(args) = Cli::parse_from([
        "juntos",
        "all",
        "--data-dir",
        &data_dir,
        "--chat-heartbeat-secs",
        "1",
        "--chat-idle-timeout-secs",
        "3",
    ])
    .role
    else {
        unreachable!("parsed `all`");
    };
    let (trigger, down) = shutdown::channel();
    let clock = roles::clock(&args.common);
    let drain = Duration::from_secs(1);
    let listen = || TcpListener::bind("127.0.0.1:0");
    let (otp, login, chat, gateway) = (
        listen().await.expect("bind"),
        listen().await.expect("bind"),
        listen().await.expect("bind"),
        listen().await.expect("bind"),
    );
    let url = |l: &TcpListener| format!("http://{}", l.local_addr().expect("addr"));
    // Roles reach each other over mutual TLS.
    let internal = |l: &TcpListener| format!("https://{}", l.local_addr().expect("addr"));
    let (otp_url, login_url, chat_url, gateway_url) = (
        internal(&otp),
        internal(&login),
        internal(&chat),
        url(&gateway),
    );
    let credentials = InternalTls::ephemeral().expect("internal certificates");
    let tls = |role: TlsRole| {
        credentials
            .iter()
            .find(|(r, _)| *r == role)
            .expect("a certificate per role")
            .1
            .clone()
    };
    let context = |listener: TcpListener, role: TlsRole| RoleContext {
        listener,
        tls: tls(role),
        clock: clock.clone(),
        shutdown: down.clone(),
        drain,
    };
    let mut tasks = vec![
        roles::start_otp(context(otp, TlsRole::Otp), &args.otp, dir.path())
            .await
            .expect("otp"),
    ];
    tasks.push(
        roles::start_login(
            context(login, TlsRole::Login),
            &args.login,
            &otp_url,
            dir.path(),
        )
        .await
        .expect("login"),
    );
    tasks.push(
        roles::start_chat(
            context(chat, TlsRole::Chat),
            &args.chat,
            &login_url,
            None,
            None,
            dir.path(),
        )
        .await
        .expect("chat"),
    );
    tasks.push(
        roles::start_gateway(
            context(gateway, TlsRole::Gateway),
            &args.gateway,
            &otp_url,
            &login_url,
            Some(&chat_url),
        )
        .await
        .expect("gateway"),
    );

    let channel = Channel::from_shared(gateway_url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let alice = sign_in(&channel, dir.path(), "+12015550101", 1).await;
    let bob = sign_in(&channel, dir.path(), "+12015550102", 2).await;
    let mut chat = ChatClient::new(channel.clone()).max_decoding_message_size(32 << 20);

    // Without a token, chat is refused at the gateway.
    let anonymous = chat
        .sync(Request::new(SyncRequest::default()))
        .await
        .expect_err("needs a token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    // Bob connects; the stream lives across several heartbeats and idle timeouts' worth of
    // time, as long as he sends heartbeats.
    let (frames, inbound) = mpsc::channel(16);
    let mut stream = chat
        .connect(authed(&bob, ReceiverStream::new(inbound)))
        .await
        .expect("connect")
        .into_inner();
    let beat = ClientFrame {
        frame: Some(client_frame::Frame::Heartbeat(Heartbeat { time_ms: 0 })),
    };
    let mut heartbeats = 0;
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_millis(4_500) {
        frames.send(beat.clone()).await.expect("open");
        let next = tokio::time::timeout(Duration::from_millis(700), stream.next()).await;
        match next {
            Err(_) => {}
            Ok(Some(Ok(ServerFrame {
                frame: Some(server_frame::Frame::Heartbeat(_)),
            }))) => heartbeats += 1,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(heartbeats >= 3, "{heartbeats} heartbeats");

    let envelope = |user: &User, body: &[u8]| OutgoingEnvelope {
        recipient_user_id: user.user_id.clone(),
        recipient_device_id: user.device_id.clone(),
        ciphertext: body.to_vec(),
    };
    let sent = chat
        .send(authed(
            &alice,
            SendRequest {
                client_msg_id: "m1".into(),
                envelopes: vec![envelope(&bob, b"sealed")],
            },
        ))
        .await
        .expect("send")
        .into_inner();
    let pushed = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("pushed in time")
            .expect("open")
            .expect("frame");
        match frame.frame {
            Some(server_frame::Frame::Envelope(e)) => break e,
            Some(server_frame::Frame::Heartbeat(_)) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(pushed.ciphertext, b"sealed");
    assert_eq!(pushed.sender_user_id, alice.user_id);
    assert_eq!(pushed.sender_device_id, alice.device_id);
    assert_eq!(pushed.server_time_ms, sent.server_time_ms);
    frames
        .send(ClientFrame {
            frame: Some(client_frame::Frame::AckUpTo(pushed.seq)),
        })
        .await
        .expect("open");

    // Polling clients see the same mailbox; after the ack it is empty.
    let mut empty = false;
    for _ in 0..50 {
        let page = chat
            .sync(authed(&bob, SyncRequest::default()))
            .await
            .expect("sync")
            .into_inner();
        if page.envelopes.is_empty() {
            empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(empty, "the ack deleted the envelope");
    chat.ack(authed(&bob, AckRequest { up_to_seq: 1 }))
        .await
        .expect("ack");

    // The largest valid send (256 envelopes of 64 KiB) passes the gateway and is judged by
    // chat (here: a stale list); anything over the gateway's cap stops at the gateway.
    let big: Vec<OutgoingEnvelope> = (0..256)
        .map(|i| OutgoingEnvelope {
            recipient_user_id: bob.user_id.clone(),
            recipient_device_id: format!("device-{i}"),
            ciphertext: vec![7; 64 * 1024],
        })
        .collect();
    let refused = chat
        .send(authed(
            &alice,
            SendRequest {
                client_msg_id: "big".into(),
                envelopes: big.clone(),
            },
        ))
        .await
        .expect_err("stale");
    assert_eq!(
        reason_of(&refused).as_deref(),
        Some(reason::STALE_DEVICES),
        "{refused:?}"
    );
    let mut too_big = big;
    too_big.extend(too_big.clone().into_iter().take(80));
    let refused = chat
        .send(authed(
            &alice,
            SendRequest {
                client_msg_id: "huge".into(),
                envelopes: too_big,
            },
        ))
        .await
        .expect_err("over the cap");
    assert_eq!(
        reason_of(&refused).as_deref(),
        Some(reason::MESSAGE_TOO_LARGE),
        "{refused:?}"
    );

    // The gateway's per-message cap applies to each frame of a stream too: a second gateway
    // with a 1 MiB cap cuts a Connect stream whose client sends a 2 MiB frame (well under
    // chat's own 20 MiB limit), after passing a small one.
    let small_gateway = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let small_url = url(&small_gateway);
    let Role::All(small) =
        Cli::parse_from(["juntos", "all", "--max-message-bytes", "1048576"]).role
    else {
        unreachable!("parsed `all`");
    };
    let small_context = RoleContext {
        clock: roles::clock(&small.common),
        ..context(small_gateway, TlsRole::Gateway)
    };
    let small_task = roles::start_gateway(
        small_context,
        &small.gateway,
        &otp_url,
        &login_url,
        Some(&chat_url),
    )
    .await
    .expect("gateway");
    let small_channel = Channel::from_shared(small_url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(small_channel);
    // The new gateway loads token keys from login first.
    let (padded, mut capped) = {
        let mut attempts = 0;
        loop {
            grpc.ready().await.expect("ready");
            let (padded, inbound) = mpsc::channel(4);
            let started = grpc
                .streaming(
                    // Alice's device, so Bob's stream above stays.
                    authed(&alice, ReceiverStream::new(inbound)),
                    http::uri::PathAndQuery::from_static("/juntos.chat.v1.Chat/Connect"),
                    tonic_prost::ProstCodec::<PaddedFrame, ServerFrame>::default(),
                )
                .await;
            match started {
                Ok(response) => break (padded, response.into_inner()),
                Err(s) if s.code() == Code::Unavailable && attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("connect: {s:?}"),
            }
        }
    };
    // An unknown field is skipped by the server: a small padded frame is a valid (empty) frame.
    padded
        .send(PaddedFrame {
            padding: vec![0; 1024],
        })
        .await
        .expect("open");
    let quiet = tokio::time::timeout(Duration::from_millis(300), capped.next()).await;
    assert!(
        matches!(quiet, Err(_) | Ok(Some(Ok(_)))),
        "a small frame passes: {quiet:?}"
    );
    padded
        .send(PaddedFrame {
            padding: vec![0; 2 << 20],
        })
        .await
        .expect("open");
    let cut = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match capped.next().await {
                Some(Ok(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the stream is cut in time");
    assert!(matches!(cut, Some(Err(_))), "{cut:?}");
    tasks.push(small_task);

    // Shutdown ends the stream instead of waiting out the drain.
    // (A heartbeat first, so the 3 s idle timeout cannot be what ends it.)
    frames.send(beat).await.expect("open");
    trigger.fire();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match stream.next().await {
                Some(Ok(ServerFrame {
                    frame: Some(server_frame::Frame::Heartbeat(_)),
                })) => continue,
                other => return other,
            }
        }
    })
    .await;
    assert!(
        matches!(ended, Ok(None)),
        "the stream ended cleanly on shutdown: {ended:?}"
    );
    for task in tasks {
        let _ = task.await;
    }
}
