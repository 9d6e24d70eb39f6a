//! Groups end to end through the gateway of `juntos all`, driven by client-core: membership
//! rules, delivery of sender-key messages to every member device (offline ones on their next
//! sync), a new chain after a removal, and no plaintext in the server's stores.

use std::sync::Arc;
use std::time::Duration;

use juntos_client::{Client, ClientError, EventListener, GroupAction, MessageStatus};
use juntos_tests::clients::{
    Recorder, assert_flushed_without_plaintext, bulk_builder, settle, signed_in, texts,
};
use juntos_tests::{ALICE, BOB, CAROL, System};

const DAVE: &str = "+12015550104";

async fn system() -> System {
    bulk_builder().start().await
}

fn user_id(client: &Client) -> String {
    client.session().expect("signed in").user_id
}

async fn group_texts(client: &Client, group_id: &str) -> Vec<String> {
    texts(
        &client
            .groups()
            .history(group_id.to_owned(), 100)
            .await
            .expect("history"),
    )
}

/// The chain id and iteration of every group message waiting in `device_id`'s mailbox, read
/// from the server's database (the sender-key wire format: a version byte, then protobuf
/// fields 1 = chain id and 2 = iteration, ...).
fn waiting_chains(sys: &System, device_id: &str) -> Vec<(u64, u64)> {
    let db = rusqlite::Connection::open_with_flags(
        sys.data_dir().join("chat.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open chat.db");
    let mut rows = db
        .prepare("SELECT ciphertext FROM envelopes WHERE device_id = ?1 AND kind = 1 ORDER BY seq")
        .expect("query");
    let wires: Vec<Vec<u8>> = rows
        .query_map([device_id], |r| r.get(0))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("read");
    wires
        .iter()
        .map(|w| {
            assert_eq!(w[0], 1, "sender-key message version");
            let (mut chain, mut iteration, mut at) = (0, 0, 1);
            for field in 0..2 {
                let tag = w[at];
                at += 1;
                let (mut value, mut shift) = (0u64, 0);
                loop {
                    let b = w[at];
                    at += 1;
                    value |= u64::from(b & 0x7f) << shift;
                    shift += 7;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                match (field, tag) {
                    (0, 0x08) => chain = value,
                    (1, 0x10) => iteration = value,
                    // Iteration 0 is not encoded at all.
                    (1, _) => {
                        iteration = 0;
                        break;
                    }
                    _ => panic!("unexpected field tag {tag}"),
                }
            }
            (chain, iteration)
        })
        .collect()
}

#[tokio::test]
async fn group_messages_reach_every_member_device_and_a_removed_member_reads_nothing_after() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let alice2 = signed_in(&sys, "alice2", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let carol = signed_in(&sys, "carol", CAROL).await;
    let dave = signed_in(&sys, "dave", DAVE).await;
    let carol_id = user_id(&carol);
    let carol_events = Arc::new(Recorder::default());

    let group = alice
        .groups()
        .create("Sailing".to_owned(), vec![BOB.to_owned(), CAROL.to_owned()])
        .await
        .expect("create");
    assert!(group.admin);
    assert_eq!(group.members.len(), 3);
    let id = group.group_id.clone();

    // Carol listens live; Bob is offline until the end.
    Arc::clone(&carol)
        .start(Some(Arc::clone(&carol_events) as Arc<dyn EventListener>))
        .await
        .expect("start");
    alice
        .groups()
        .send_text(id.clone(), "hello crew".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &alice2, &dave]).await;
    carol
        .groups()
        .send_text(id.clone(), "aye".to_owned())
        .await
        .expect("carol sends");
    assert_eq!(carol.flush_outbox().await.expect("flush"), 0);
    settle(&[&alice, &alice2]).await;
    for _ in 0..100 {
        if group_texts(&carol, &id).await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(group_texts(&carol, &id).await, ["hello crew", "aye"]);
    assert_eq!(group_texts(&alice, &id).await, ["hello crew", "aye"]);
    let on_alice2 = alice2
        .groups()
        .history(id.clone(), 10)
        .await
        .expect("history");
    assert_eq!(on_alice2.len(), 2);
    assert!(
        on_alice2[0].outgoing,
        "alice's other device files it as hers"
    );
    assert_eq!(on_alice2[0].group_id.as_deref(), Some(id.as_str()));
    assert!(
        group_texts(&dave, &id).await.is_empty(),
        "dave is no member"
    );

    // Alice removes Carol: Carol hears of it; what follows is on a new chain Carol never got.
    let before = waiting_chains(&sys, &bob.session().expect("bob").device_id);
    assert_eq!(
        before.len(),
        2,
        "bob is offline: both messages wait for him"
    );
    alice
        .groups()
        .remove_members(id.clone(), vec![CAROL.to_owned()])
        .await
        .expect("remove");
    alice
        .groups()
        .send_text(id.clone(), "carol is gone".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &alice2]).await;
    let after = waiting_chains(&sys, &bob.session().expect("bob").device_id);
    assert_eq!(after.len(), 3);
    let alice_first_chain = before[0].0;
    assert_ne!(
        after[2].0, alice_first_chain,
        "a new chain after the removal"
    );
    assert_eq!(after[2].1, 0, "and it starts over");
    for _ in 0..100 {
        if !carol_events.group_actions().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        carol_events
            .group_actions()
            .contains(&(GroupAction::Removed, vec![carol_id.clone()])),
        "{:?}",
        carol_events.group_actions()
    );
    assert_eq!(group_texts(&carol, &id).await, ["hello crew", "aye"]);
    let refused = carol
        .groups()
        .send_text(id.clone(), "still here?".to_owned())
        .await
        .expect_err("no longer a member");
    assert!(
        matches!(refused, ClientError::InvalidInput { .. }),
        "{refused}"
    );
    carol.stop();

    // Bob comes online last and gets everything, in order.
    bob.sync_now().await.expect("bob syncs");
    assert_eq!(
        group_texts(&bob, &id).await,
        ["hello crew", "aye", "carol is gone"]
    );

    // Bob adds a second device: the next message reaches it too, and only what follows.
    let bob2 = signed_in(&sys, "bob2", BOB).await;
    // The chat service reuses a user's device list for up to a second
    // (`--chat-directory-cache-ms`); a device younger than that may miss a send.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    alice
        .groups()
        .send_text(id.clone(), "welcome, bob's phone".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &bob, &bob2]).await;
    assert_eq!(group_texts(&bob2, &id).await, ["welcome, bob's phone"]);
    assert_eq!(group_texts(&bob, &id).await.len(), 4);
    assert_eq!(
        bob2.groups()
            .get(id.clone())
            .await
            .expect("get")
            .members
            .len(),
        2
    );
}

#[tokio::test]
async fn only_admins_change_membership_and_the_last_admin_hands_over() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let carol = signed_in(&sys, "carol", CAROL).await;
    let dave = signed_in(&sys, "dave", DAVE).await;
    let alice_id = user_id(&alice);
    let group = alice
        .groups()
        .create("Book club".to_owned(), vec![BOB.to_owned()])
        .await
        .expect("create");
    let id = group.group_id.clone();
    settle(&[&alice, &bob]).await;

    // Bob is a member, not an admin: he may not change anything.
    for result in [
        bob.groups()
            .add_members(id.clone(), vec![CAROL.to_owned()])
            .await,
        bob.groups()
            .remove_members(id.clone(), vec![ALICE.to_owned()])
            .await,
        bob.groups()
            .rename(id.clone(), "Bob's club".to_owned())
            .await,
        bob.groups()
            .set_admins(id.clone(), vec![BOB.to_owned()], true)
            .await,
    ] {
        let e = result.expect_err("not an admin");
        assert!(e.to_string().contains("admins"), "{e}");
    }
    // Dave is no member: he can neither see nor send.
    let e = dave
        .groups()
        .get(id.clone())
        .await
        .expect_err("not a member");
    assert!(e.to_string().contains("not a member"), "{e}");
    dave.groups()
        .send_text(id.clone(), "let me in".to_owned())
        .await
        .expect("queued locally");
    assert_eq!(
        dave.flush_outbox().await.expect("flush"),
        0,
        "refused, dropped"
    );
    settle(&[&alice, &bob]).await;
    assert!(group_texts(&bob, &id).await.is_empty());

    // The admin adds, renames, promotes; demoting the only admin is refused.
    let e = alice
        .groups()
        .set_admins(id.clone(), vec![ALICE.to_owned()], false)
        .await
        .expect_err("last admin");
    assert!(e.to_string().contains("at least one admin"), "{e}");
    alice
        .groups()
        .add_members(id.clone(), vec![CAROL.to_owned()])
        .await
        .expect("add");
    let renamed = alice
        .groups()
        .rename(id.clone(), "Readers".to_owned())
        .await
        .expect("rename");
    assert_eq!(renamed.name, "Readers");
    let e = alice
        .groups()
        .rename(id.clone(), "\u{7}".to_owned())
        .await
        .expect_err("bad name");
    assert!(matches!(e, ClientError::InvalidInput { .. }), "{e}");

    // Alice leaves: Bob, the longest-standing member, becomes admin and may now add Dave.
    let left = alice.groups().leave(id.clone()).await.expect("leave");
    assert!(!left.active);
    let bob_events = Arc::new(Recorder::default());
    Arc::clone(&bob)
        .start(Some(Arc::clone(&bob_events) as Arc<dyn EventListener>))
        .await
        .expect("start");
    for _ in 0..100 {
        if bob_events
            .group_actions()
            .iter()
            .any(|(a, _)| *a == GroupAction::Left)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let actions: Vec<GroupAction> = bob_events
        .group_actions()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        actions,
        // The creation notice was read (with no listener) before Bob started listening.
        [GroupAction::Added, GroupAction::Renamed, GroupAction::Left]
    );
    bob.stop();
    let now = bob.groups().get(id.clone()).await.expect("get");
    assert!(now.admin, "bob took over");
    assert!(now.members.iter().all(|m| m.user_id != alice_id));
    bob.groups()
        .add_members(id.clone(), vec![DAVE.to_owned()])
        .await
        .expect("bob adds dave");
    bob.groups()
        .send_text(id.clone(), "welcome dave".to_owned())
        .await
        .expect("send");
    settle(&[&bob, &carol, &dave, &alice]).await;
    // Dave's refused attempt stays in his own history, failed; the group saw only Bob's text.
    let on_dave = dave
        .groups()
        .history(id.clone(), 10)
        .await
        .expect("history");
    assert_eq!(texts(&on_dave), ["let me in", "welcome dave"]);
    assert_eq!(on_dave[0].status, MessageStatus::Failed);
    assert_eq!(group_texts(&carol, &id).await, ["welcome dave"]);
    assert!(
        group_texts(&alice, &id).await.is_empty(),
        "alice left first"
    );
    let listed = dave.groups().list().await.expect("groups");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "Readers");
}

#[tokio::test]
async fn the_server_stores_no_group_plaintext() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let group = alice
        .groups()
        .create("Plans".to_owned(), vec![BOB.to_owned()])
        .await
        .expect("create");
    let secrets = ["the treasure is under", "rendezvous at dawn"];
    for s in secrets {
        alice
            .groups()
            .send_text(group.group_id.clone(), s.to_owned())
            .await
            .expect("send");
    }
    assert_flushed_without_plaintext(&sys, &alice, &secrets).await;
    bob.sync_now().await.expect("sync");
    assert_eq!(group_texts(&bob, &group.group_id).await, secrets);
}

#[tokio::test]
async fn a_member_that_lost_a_chain_asks_for_it_and_reads_what_follows() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let group = alice
        .groups()
        .create("Knots".to_owned(), vec![BOB.to_owned()])
        .await
        .expect("create");
    let id = group.group_id.clone();
    alice
        .groups()
        .send_text(id.clone(), "one".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &bob]).await;
    assert_eq!(group_texts(&bob, &id).await, ["one"]);

    // Bob's device loses Alice's chain (as if its hand-out had never decrypted).
    let db = rusqlite::Connection::open(sys.client_home("bob").join("client.db")).expect("open");
    db.execute("DELETE FROM sender_keys_received", [])
        .expect("forget the chain");
    drop(db);
    alice
        .groups()
        .send_text(id.clone(), "two".to_owned())
        .await
        .expect("send");
    // Bob cannot read "two"; he asks Alice's device for the chain, which it hands over with
    // its next message.
    settle(&[&alice, &bob]).await;
    alice
        .groups()
        .send_text(id.clone(), "three".to_owned())
        .await
        .expect("send");
    settle(&[&alice, &bob]).await;
    assert_eq!(group_texts(&bob, &id).await, ["one", "three"]);
}
