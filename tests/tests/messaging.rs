//! End-to-end encrypted one-to-one messaging through the gateway of `juntos all`, driven by
//! client-core as apps drive it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use juntos_client::{Event, Message, MessageStatus};
use juntos_tests::clients::{
    Recorder, assert_flushed_without_plaintext, bulk_builder, settle, signed_in, texts,
};
use juntos_tests::{ALICE, BOB, System};

/// A system whose rate limits leave room for bulk sends.
async fn system() -> System {
    bulk_builder().start().await
}

#[tokio::test]
async fn two_users_exchange_every_message_kind_and_see_the_same_history() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let bob_id = bob.session().expect("bob").user_id;
    let alice_id = alice.session().expect("alice").user_id;

    let hello = alice
        .send_text(BOB.to_owned(), "hello bob".to_owned())
        .await
        .expect("send");
    assert_eq!(hello.status, MessageStatus::Queued);
    settle(&[&alice, &bob]).await;
    let on_bob = bob.history(alice_id.clone(), 10).await.expect("history");
    assert_eq!(texts(&on_bob), ["hello bob"]);
    assert!(!on_bob[0].outgoing);
    // Bob's device sent a delivered receipt by itself.
    let on_alice = alice.history(bob_id.clone(), 10).await.expect("history");
    assert_eq!(on_alice[0].status, MessageStatus::Delivered);

    let reply = bob
        .reply(
            alice_id.clone(),
            hello.message_id.clone(),
            "hi alice".to_owned(),
        )
        .await
        .expect("reply");
    let forward = alice
        .forward(BOB.to_owned(), hello.message_id.clone())
        .await
        .expect("forward");
    settle(&[&alice, &bob]).await;
    alice
        .edit(hello.message_id.clone(), "hello, bob!".to_owned())
        .await
        .expect("edit");
    alice
        .react(reply.message_id.clone(), "👍".to_owned())
        .await
        .expect("react");
    let doomed = bob
        .send_text(alice_id.clone(), "oops".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &bob]).await;
    bob.delete_for_everyone(doomed.message_id.clone())
        .await
        .expect("delete");
    settle(&[&alice, &bob]).await;
    assert_eq!(alice.mark_read(bob_id.clone()).await.expect("read"), 2);
    settle(&[&alice, &bob]).await;

    let on_alice = alice.history(bob_id.clone(), 10).await.expect("history");
    let on_bob = bob.history(alice_id.clone(), 10).await.expect("history");
    let view = |h: &[Message]| {
        h.iter()
            .map(|m| {
                (
                    m.message_id.clone(),
                    m.body.clone(),
                    m.quoted_message_id.clone(),
                    m.forwarded,
                    m.edited,
                    m.deleted,
                    m.reactions
                        .iter()
                        .map(|r| (r.user_id.clone(), r.emoji.clone()))
                        .collect::<Vec<_>>(),
                )
            })
            .collect::<Vec<_>>()
    };
    // Each device lists messages in the order it learned of them; the contents are the same.
    let (mut seen_by_alice, mut seen_by_bob) = (view(&on_alice), view(&on_bob));
    seen_by_alice.sort();
    seen_by_bob.sort();
    assert_eq!(
        seen_by_alice, seen_by_bob,
        "both sides see the same history"
    );
    let mut bodies = texts(&on_alice);
    bodies.sort();
    assert_eq!(bodies, ["", "hello bob", "hello, bob!", "hi alice"]);
    let by_id = |h: &[Message], id: &str| {
        h.iter()
            .find(|m| m.message_id == id)
            .cloned()
            .expect("message")
    };
    assert!(by_id(&on_alice, &hello.message_id).edited);
    assert_eq!(
        by_id(&on_bob, &reply.message_id)
            .quoted_message_id
            .as_deref(),
        Some(hello.message_id.as_str())
    );
    assert!(by_id(&on_bob, &forward.message_id).forwarded);
    assert!(by_id(&on_alice, &doomed.message_id).deleted);
    assert_eq!(by_id(&on_bob, &reply.message_id).reactions[0].emoji, "👍");
    // Alice read Bob's messages: Bob sees his reply as read.
    assert_eq!(
        by_id(&on_bob, &reply.message_id).status,
        MessageStatus::Read
    );
    assert_eq!(
        by_id(&on_alice, &forward.message_id).status,
        MessageStatus::Delivered
    );

    let alice_number = alice
        .safety_number(BOB.to_owned())
        .await
        .expect("safety number");
    let bob_number = bob
        .safety_number(alice_id.clone())
        .await
        .expect("safety number");
    assert_eq!(alice_number, bob_number);
    assert_eq!(
        alice_number.chars().filter(char::is_ascii_digit).count(),
        60
    );
}

#[tokio::test]
async fn an_offline_recipient_gets_five_thousand_messages_in_order_on_reconnect() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    const N: usize = 5_000;
    for i in 0..N {
        alice
            .send_text(BOB.to_owned(), format!("message {i:05}"))
            .await
            .expect("queued");
    }
    assert_eq!(alice.flush_outbox().await.expect("flush"), 0);

    // Bob comes online: the live connection delivers the whole backlog.
    let recorder = Arc::new(Recorder::default());
    Arc::clone(&bob)
        .start(Some(recorder.clone()))
        .await
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorder.received().len() < N {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} arrived",
            recorder.received().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bob.stop();
    let received: Vec<String> = recorder.received().into_iter().map(|m| m.body).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("message {i:05}")).collect();
    assert_eq!(received, expected, "every message exactly once, in order");
}

#[tokio::test]
async fn a_users_other_device_sees_what_it_sent_and_what_it_received() {
    let sys = system().await;
    let phone = signed_in(&sys, "alice-phone", ALICE).await;
    let laptop = signed_in(&sys, "alice-laptop", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let bob_id = bob.session().expect("bob").user_id;

    let sent = phone
        .send_text(BOB.to_owned(), "from my phone".to_owned())
        .await
        .expect("send");
    settle(&[&phone, &laptop, &bob]).await;
    let on_laptop = laptop.history(bob_id.clone(), 10).await.expect("history");
    assert_eq!(texts(&on_laptop), ["from my phone"]);
    assert!(on_laptop[0].outgoing);
    assert_eq!(on_laptop[0].message_id, sent.message_id);

    bob.send_text(ALICE.to_owned(), "to both of you".to_owned())
        .await
        .expect("send");
    settle(&[&phone, &laptop, &bob]).await;
    for device in [&phone, &laptop] {
        let history = device.history(bob_id.clone(), 10).await.expect("history");
        assert_eq!(texts(&history), ["from my phone", "to both of you"]);
    }
    // An edit from one device shows on the other and at Bob's.
    laptop
        .edit(sent.message_id.clone(), "edited on the laptop".to_owned())
        .await
        .expect("edit");
    settle(&[&phone, &laptop, &bob]).await;
    assert_eq!(
        phone.history(bob_id.clone(), 10).await.expect("history")[0].body,
        "edited on the laptop"
    );
}

#[tokio::test]
async fn a_stale_device_list_is_corrected_transparently() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let alice_id = alice.session().expect("alice").user_id;
    alice
        .send_text(BOB.to_owned(), "one".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &bob]).await;

    // Bob adds a device; Alice's client still knows only the first.
    let tablet = signed_in(&sys, "bob-tablet", BOB).await;
    // The chat service caches device lists for up to a second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    alice
        .send_text(BOB.to_owned(), "two".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &bob, &tablet]).await;
    assert_eq!(
        texts(&tablet.history(alice_id.clone(), 10).await.expect("history")),
        ["two"]
    );
    assert_eq!(
        texts(&bob.history(alice_id.clone(), 10).await.expect("history")),
        ["one", "two"]
    );

    // Bob signs the first device out; Alice's next send drops it without a fuss.
    bob.sign_out().await.expect("sign out");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    alice
        .send_text(BOB.to_owned(), "three".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &tablet]).await;
    assert_eq!(
        texts(&tablet.history(alice_id, 10).await.expect("history")),
        ["two", "three"]
    );
}

#[tokio::test]
async fn the_server_stores_no_plaintext() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let secrets = [
        "purple elephant sings",
        "meet at the old mill",
        "correct horse battery",
    ];
    for s in secrets {
        alice
            .send_text(BOB.to_owned(), s.to_owned())
            .await
            .expect("send");
    }
    // Sent but not yet fetched: the envelopes sit in Bob's mailbox on the server.
    assert_flushed_without_plaintext(&sys, &alice, &secrets).await;
    // And the recipient still reads them.
    bob.sync_now().await.expect("sync");
    let alice_id = alice.session().expect("alice").user_id;
    assert_eq!(
        texts(&bob.history(alice_id, 10).await.expect("history")),
        secrets
    );
}

#[tokio::test]
async fn acknowledged_sends_survive_sigkill_and_arrive_exactly_once_in_order() {
    let mut sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let alice_id = alice.session().expect("alice").user_id;
    const N: usize = 400;
    for i in 0..N {
        alice
            .send_text(BOB.to_owned(), format!("m{i:04}"))
            .await
            .expect("queued");
    }
    // Alice's outbox drains in the background; kill the server partway.
    let recorder = Arc::new(Recorder::default());
    Arc::clone(&alice)
        .start(Some(recorder.clone()))
        .await
        .expect("start");
    let acknowledged = || {
        recorder
            .events()
            .iter()
            .filter(|e| matches!(e, Event::MessageChanged { message } if message.status == MessageStatus::Sent))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged() < N / 4 {
        assert!(Instant::now() < deadline, "sends did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sys.kill_and_restart().await;
    let acked_before_kill: HashSet<String> = alice
        .history(BOB.to_owned(), 10_000)
        .await
        .expect("history")
        .into_iter()
        .filter(|m| m.status != MessageStatus::Queued)
        .map(|m| m.body)
        .collect();
    assert!(acked_before_kill.len() >= N / 4);

    // The client reconnects and finishes; then Bob reads everything.
    let deadline = Instant::now() + Duration::from_secs(120);
    while alice.flush_outbox().await.unwrap_or(1) != 0 {
        assert!(
            Instant::now() < deadline,
            "the outbox never drained after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    alice.stop();
    bob.sync_now().await.expect("sync");
    let got = texts(&bob.history(alice_id, 10_000).await.expect("history"));
    let expected: Vec<String> = (0..N).map(|i| format!("m{i:04}")).collect();
    assert_eq!(got, expected, "every send exactly once and in order");
    assert!(acked_before_kill.iter().all(|m| got.contains(m)));
}

#[tokio::test]
async fn both_users_starting_a_conversation_at_once_lose_nothing() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let (alice_id, bob_id) = (
        alice.session().expect("a").user_id,
        bob.session().expect("b").user_id,
    );
    // Each starts a session with the other before seeing the other's first message.
    alice
        .send_text(BOB.to_owned(), "a1".to_owned())
        .await
        .expect("send");
    bob.send_text(ALICE.to_owned(), "b1".to_owned())
        .await
        .expect("send");
    assert_eq!(alice.flush_outbox().await.expect("flush"), 0);
    assert_eq!(bob.flush_outbox().await.expect("flush"), 0);
    settle(&[&alice, &bob]).await;
    for round in 2..5 {
        alice
            .send_text(BOB.to_owned(), format!("a{round}"))
            .await
            .expect("send");
        bob.send_text(ALICE.to_owned(), format!("b{round}"))
            .await
            .expect("send");
        settle(&[&alice, &bob]).await;
    }
    let mut on_alice = texts(&alice.history(bob_id, 100).await.expect("history"));
    let mut on_bob = texts(&bob.history(alice_id, 100).await.expect("history"));
    on_alice.sort();
    on_bob.sort();
    let expected = ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "b4"];
    assert_eq!(on_alice, expected);
    assert_eq!(on_bob, expected);
}

#[tokio::test]
async fn mail_from_a_device_that_signed_out_after_sending_still_arrives() {
    let sys = system().await;
    let phone = signed_in(&sys, "alice-phone", ALICE).await;
    let laptop = signed_in(&sys, "alice-laptop", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let alice_id = phone.session().expect("alice").user_id;
    let bob_id = bob.session().expect("bob").user_id;
    phone
        .send_text(BOB.to_owned(), "hello".to_owned())
        .await
        .expect("send");
    settle(&[&phone, &laptop, &bob]).await;
    phone
        .send_text(BOB.to_owned(), "sent, then signed out".to_owned())
        .await
        .expect("send");
    assert_eq!(phone.flush_outbox().await.expect("flush"), 0);
    phone.sign_out().await.expect("sign out");
    // Bob's client learns the phone is gone (a send to Alice refreshes her device list) before
    // it reads the phone's last message: the removed device is kept to decrypt what it sent.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    bob.send_text(alice_id.clone(), "got it".to_owned())
        .await
        .expect("send");
    assert_eq!(bob.flush_outbox().await.expect("flush"), 0);
    bob.sync_now().await.expect("sync");
    let mut on_bob = texts(&bob.history(alice_id.clone(), 10).await.expect("history"));
    on_bob.sort();
    assert_eq!(on_bob, ["got it", "hello", "sent, then signed out"]);
    // And Bob's answer reached the device that remains.
    settle(&[&bob, &laptop]).await;
    let mut on_laptop = texts(&laptop.history(bob_id, 10).await.expect("history"));
    on_laptop.sort();
    assert_eq!(on_laptop, ["got it", "hello", "sent, then signed out"]);
}
