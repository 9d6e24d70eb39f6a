//! Production shape: otp, login, a gateway and three chat pods on one Redis and one MongoDB
//! (SecantusDB here, or the server at `JUNTOS_TEST_MONGODB_URI`), driven with client-core. Users
//! on different pods exchange messages; SIGKILL of the pod holding the recipient's stream in the
//! middle of a burst loses nothing: the client reconnects through the gateway to another pod and
//! receives every message exactly once, in order (the mailboxes live in MongoDB, not in the pod).

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use juntos_client::{Event, EventListener, MessageStatus};
use juntos_tests::clients::{bulk_builder, signed_in_on};
use juntos_tests::{ALICE, BOB, System};

/// Records every event.
#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl EventListener for Recorder {
    fn on_event(&self, event: Event) {
        self.0.lock().expect("events").push(event);
    }
}

impl Recorder {
    /// The bodies of the received messages, in arrival order.
    fn received(&self) -> Vec<String> {
        self.0
            .lock()
            .expect("events")
            .iter()
            .filter_map(|e| match e {
                Event::MessageReceived { message } => Some(message.body.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The pod id each chat process printed at start-up, in start order.
async fn pod_ids(sys: &mut System) -> Vec<String> {
    let mut ids: Vec<Option<String>> = vec![None; 3];
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.iter().any(Option::is_none) {
        assert!(
            Instant::now() < deadline,
            "chat pods never printed their ids"
        );
        let chats = sys.processes().iter().filter(|p| p.role() == "chat");
        for (slot, process) in ids.iter_mut().zip(chats) {
            for line in process.stdout_lines() {
                if let Some(id) = line.strip_prefix("juntos: chat pod id ") {
                    *slot = Some(id.trim().to_owned());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ids.into_iter().flatten().collect()
}

/// The pod id `device_id`'s stream is routed to in Redis, once there is one.
async fn route_of(sys: &System, device_id: &str) -> String {
    let url = sys.redis.as_ref().expect("redis").url();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("redis-cli")
            .args(["-u", &url, "GET", &format!("juntos:route:{device_id}")])
            .output()
            .expect("run redis-cli");
        let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !value.is_empty() {
            return value;
        }
        assert!(Instant::now() < deadline, "{device_id} never got a route");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn three_pods_on_mongodb_lose_nothing_when_the_recipients_pod_is_killed() {
    let mut sys = bulk_builder()
        .chat_pods(3)
        .gateway_per_chat_pod()
        .with_redis()
        .with_mongodb()
        .arg("--chat-heartbeat-secs", "2")
        .start()
        .await;
    let pods = pod_ids(&mut sys).await;

    // Bob through the gateway in front of all three pods; find the pod holding his stream.
    let bob = signed_in_on(&sys, sys.client("bob"), "bob", BOB).await;
    let bob_events = Arc::new(Recorder::default());
    Arc::clone(&bob)
        .start(Some(bob_events.clone()))
        .await
        .expect("bob starts");
    let bob_device = bob.session().expect("bob").device_id;
    let bob_pod = route_of(&sys, &bob_device).await;
    let killed = pods
        .iter()
        .position(|p| *p == bob_pod)
        .expect("bob's route names a chat pod");

    // Alice on another pod, through a gateway that routes her chat calls to it alone.
    let alice_pod = (killed + 1) % 3;
    let alice = signed_in_on(
        &sys,
        sys.client_at("alice", sys.chat_pod_gateway_url(alice_pod)),
        "alice",
        ALICE,
    )
    .await;
    let alice_events = Arc::new(Recorder::default());
    Arc::clone(&alice)
        .start(Some(alice_events.clone()))
        .await
        .expect("alice starts");
    let alice_device = alice.session().expect("alice").device_id;
    assert_eq!(route_of(&sys, &alice_device).await, pods[alice_pod]);
    assert_ne!(
        pods[alice_pod], bob_pod,
        "alice and bob are on different pods"
    );

    // Across pods, both ways.
    alice
        .send_text(BOB.to_owned(), "hello bob".to_owned())
        .await
        .expect("queued");
    wait_for("bob gets alice's message", Duration::from_secs(20), || {
        bob_events.received() == ["hello bob"]
    })
    .await;
    bob.send_text(ALICE.to_owned(), "hello alice".to_owned())
        .await
        .expect("queued");
    wait_for("alice gets bob's message", Duration::from_secs(20), || {
        alice_events.received() == ["hello alice"]
    })
    .await;

    // A burst; kill Bob's pod while it streams to him.
    const N: usize = 200;
    for i in 0..N {
        alice
            .send_text(BOB.to_owned(), format!("m{i:04}"))
            .await
            .expect("queued");
    }
    wait_for(
        "bob receives part of the burst",
        Duration::from_secs(60),
        || bob_events.received().len() > N / 4,
    )
    .await;
    sys.signal("chat", killed, "KILL");
    let received_before_kill = bob_events.received().len();
    assert!(
        received_before_kill <= N,
        "the kill came mid-stream ({received_before_kill} received)"
    );

    // Alice's pod is untouched; her outbox drains.
    let deadline = Instant::now() + Duration::from_secs(120);
    while alice.flush_outbox().await.unwrap_or(1) != 0 {
        assert!(Instant::now() < deadline, "alice's outbox never drained");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let alice_id = alice.session().expect("alice").user_id;
    let sent = alice
        .history(BOB.to_owned(), 10_000)
        .await
        .expect("history")
        .into_iter()
        .filter(|m| m.body != "hello alice" && m.status != MessageStatus::Queued)
        .count();
    assert_eq!(sent, N + 1, "every send acknowledged");

    // Bob's stream ended with his pod; his client reconnects through the gateway, which now
    // routes him to a live pod, and the rest of the burst arrives from MongoDB.
    let mut expected = vec!["hello bob".to_owned()];
    expected.extend((0..N).map(|i| format!("m{i:04}")));
    wait_for(
        "bob receives the whole burst",
        Duration::from_secs(120),
        || bob_events.received().len() > N,
    )
    .await;
    let new_pod = route_of(&sys, &bob_device).await;
    assert_ne!(new_pod, bob_pod, "bob reconnected to another pod");
    assert!(pods.contains(&new_pod));
    // Exactly once, in order: as events and in the history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bob_events.received(), expected);
    bob.stop();
    alice.stop();
    let history: Vec<String> = bob
        .history(alice_id, 10_000)
        .await
        .expect("history")
        .into_iter()
        .filter(|m| m.body != "hello alice")
        .map(|m| m.body)
        .collect();
    assert_eq!(history, expected);
}
