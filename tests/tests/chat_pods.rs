//! Several chat pods on one Redis: a device's stream lives on one pod, a send lands on another,
//! and the doorbell published through Redis brings the message at once. With Redis gone, sends
//! still succeed and arrive by the next heartbeat; when it returns, doorbells resume.
//!
//! Each chat pod has a gateway of its own (`gateway_per_chat_pod`), so the test decides which
//! pod serves which call. Both pods share one SQLite data directory here; `mongo_chat_pods.rs`
//! runs three pods on the shared MongoDB store.

use std::time::{Duration, Instant};

use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::chat::v1::{ClientFrame, Envelope, ServerFrame, server_frame};
use juntos_tests::raw::{self, authed};
use juntos_tests::{ALICE, BOB, System};

/// A signed-in device and the gateway (hence chat pod) it talks to.
type Device = raw::SignedInDevice;

async fn sign_in(sys: &System, pod: usize, phone: &str, name: &str) -> Device {
    let channel = System::channel_to(sys.chat_pod_gateway_url(pod)).await;
    raw::signed_in_device(sys, channel, phone, name).await
}

/// Two chat pods on one Redis, each with its own gateway, heartbeats every `heartbeat` seconds.
async fn system(heartbeat: &str) -> System {
    System::builder()
        .chat_pods(2)
        .gateway_per_chat_pod()
        .with_redis()
        .arg("--chat-heartbeat-secs", heartbeat)
        .start()
        .await
}

/// Opens `device`'s Connect stream (sending nothing) and waits until it is served.
async fn connect(device: &Device) -> tonic::Streaming<ServerFrame> {
    let mut stream = ChatClient::new(device.channel.clone())
        .connect(authed(
            tokio_stream::pending::<ClientFrame>(),
            &device.token,
        ))
        .await
        .expect("stream opened")
        .into_inner();
    // Nothing is waiting, so the stream stays quiet (and its route is in place meanwhile).
    let quiet = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(
        quiet.is_err(),
        "a new stream with an empty mailbox is quiet"
    );
    stream
}

/// The next envelope on `stream` (heartbeats skipped) and how long it took, within `within`.
async fn next_envelope(
    stream: &mut tonic::Streaming<ServerFrame>,
    within: Duration,
) -> (Envelope, Duration) {
    let started = Instant::now();
    loop {
        let left = within.saturating_sub(started.elapsed());
        let frame = tokio::time::timeout(left, stream.message())
            .await
            .unwrap_or_else(|_| panic!("no envelope within {within:?}"))
            .expect("stream healthy")
            .expect("stream open");
        match frame.frame {
            Some(server_frame::Frame::Envelope(e)) => return (e, started.elapsed()),
            Some(server_frame::Frame::Heartbeat(_)) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test]
async fn users_on_different_pods_get_each_others_messages_at_once() {
    // 30 s heartbeats: only the cross-pod doorbell can explain a delivery within 2 s.
    let sys = system("30").await;
    let bob = sign_in(&sys, 0, BOB, "bob").await;
    let alice = sign_in(&sys, 1, ALICE, "alice").await;
    let mut bob_stream = connect(&bob).await;
    let mut alice_stream = connect(&alice).await;

    for i in 0..3 {
        let body = format!("hello bob {i}");
        alice.send(&bob, &format!("a{i}"), body.as_bytes()).await;
        let (envelope, _) = next_envelope(&mut bob_stream, Duration::from_secs(2)).await;
        assert_eq!(envelope.ciphertext, body.as_bytes());
        assert_eq!(envelope.sender_user_id, alice.user_id);
        assert_eq!(envelope.sender_device_id, alice.device_id);
    }

    bob.send(&alice, "b0", b"hi alice").await;
    let (envelope, _) = next_envelope(&mut alice_stream, Duration::from_secs(2)).await;
    assert_eq!(envelope.ciphertext, b"hi alice");
    assert_eq!(envelope.sender_user_id, bob.user_id);
}

#[tokio::test]
async fn with_redis_down_sends_succeed_and_arrive_by_heartbeat_then_doorbells_resume() {
    let mut sys = system("2").await;
    let bob = sign_in(&sys, 0, BOB, "bob").await;
    let alice = sign_in(&sys, 1, ALICE, "alice").await;
    let mut bob_stream = connect(&bob).await;
    alice.send(&bob, "before", b"before").await;
    let (envelope, _) = next_envelope(&mut bob_stream, Duration::from_secs(2)).await;
    assert_eq!(envelope.ciphertext, b"before");

    sys.redis.as_mut().expect("redis").kill();
    let started = Instant::now();
    alice.send(&bob, "during", b"during").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a send does not wait for Redis"
    );
    // No doorbell can reach pod 0 now; its next heartbeat tick reads the mailbox.
    let (envelope, _) = next_envelope(&mut bob_stream, Duration::from_secs(5)).await;
    assert_eq!(envelope.ciphertext, b"during");

    sys.redis.as_mut().expect("redis").restart();
    // Routes come back with the next refresh and pod 0 subscribes again; then every message
    // arrives far sooner than a 2 s heartbeat tick could bring it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fast_in_a_row = 0;
    let mut i = 0;
    while fast_in_a_row < 3 {
        assert!(
            Instant::now() < deadline,
            "doorbells did not resume after Redis came back"
        );
        let body = format!("after {i}");
        alice
            .send(&bob, &format!("after{i}"), body.as_bytes())
            .await;
        let (envelope, took) = next_envelope(&mut bob_stream, Duration::from_secs(5)).await;
        assert_eq!(envelope.ciphertext, body.as_bytes());
        fast_in_a_row = if took < Duration::from_millis(300) {
            fast_in_a_row + 1
        } else {
            0
        };
        i += 1;
    }
}
