//! The behavioural suite every [`ChatStore`] backend must pass. Each case takes a fresh, empty
//! store; a backend's tests call every case (the `sqlite_suite!` macro in `sqlite.rs`, and
//! `mongo_suite!` in `mongo/tests.rs`, which runs them on SecantusDB or `JUNTOS_TEST_MONGODB_URI`).

use std::collections::HashSet;

use super::store::{ChatStore, OutgoingEnvelope, SendBatch, SendOutcome};

const T0: i64 = 1_750_000_000_000;

fn envelope(user: &str, device: &str, body: &[u8]) -> OutgoingEnvelope {
    OutgoingEnvelope {
        recipient_user_id: user.into(),
        recipient_device_id: device.into(),
        ciphertext: body.to_vec(),
    }
}

fn batch(sender: &str, id: &str, envelopes: Vec<OutgoingEnvelope>, now_ms: i64) -> SendBatch {
    SendBatch {
        sender_user_id: sender.into(),
        sender_device_id: format!("{sender}-d1"),
        client_msg_id: id.into(),
        envelopes,
        now_ms,
    }
}

/// Sends one envelope from `sender` to device `bd1` of user `b`; returns its seq.
async fn send_one(store: &dyn ChatStore, sender: &str, id: &str, body: &[u8]) -> u64 {
    match store
        .send(batch(sender, id, vec![envelope("b", "bd1", body)], T0))
        .await
        .expect("send")
    {
        SendOutcome::Stored { seqs, .. } => seqs[0],
        SendOutcome::Duplicate { .. } => panic!("unexpected duplicate {id}"),
    }
}

pub(crate) async fn mailbox_is_ordered_and_paged(store: &dyn ChatStore) {
    for i in 0..5u8 {
        send_one(store, "a", &format!("m{i}"), &[i]).await;
    }
    let page = store.fetch("bd1", 0, 3).await.expect("fetch");
    assert!(page.more);
    let bodies: Vec<Vec<u8>> = page
        .envelopes
        .iter()
        .map(|e| e.ciphertext.clone())
        .collect();
    assert_eq!(bodies, [vec![0], vec![1], vec![2]]);
    let first = &page.envelopes[0];
    assert_eq!(
        (
            first.sender_user_id.as_str(),
            first.sender_device_id.as_str(),
            first.client_msg_id.as_str(),
            first.server_time_ms,
        ),
        ("a", "a-d1", "m0", T0)
    );
    let last = page.envelopes.last().expect("three").seq;
    let rest = store.fetch("bd1", last, 3).await.expect("fetch");
    assert!(!rest.more);
    let bodies: Vec<Vec<u8>> = rest
        .envelopes
        .iter()
        .map(|e| e.ciphertext.clone())
        .collect();
    assert_eq!(bodies, [vec![3], vec![4]]);
    // Exactly a full page: no more.
    let exact = store.fetch("bd1", last, 2).await.expect("fetch");
    assert_eq!(exact.envelopes.len(), 2);
    assert!(!exact.more);
    let seqs: Vec<u64> = page
        .envelopes
        .iter()
        .chain(&rest.envelopes)
        .map(|e| e.seq)
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(store.last_seq("bd1").await.expect("last"), seqs[4]);
    assert!(
        store
            .fetch("nobody", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .is_empty()
    );
}

pub(crate) async fn seqs_increase_across_acks(store: &dyn ChatStore) {
    let s1 = send_one(store, "a", "m1", b"1").await;
    let s2 = send_one(store, "a", "m2", b"2").await;
    assert!(s2 > s1);
    assert_eq!(store.ack("bd1", s2).await.expect("ack"), 2);
    assert!(
        store
            .fetch("bd1", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .is_empty()
    );
    // Everything acked and deleted: the next number is still higher.
    let s3 = send_one(store, "a", "m3", b"3").await;
    assert!(s3 > s2, "{s3} after {s2}");
    assert_eq!(store.last_seq("bd1").await.expect("last"), s3);
}

pub(crate) async fn multi_recipient_send_is_atomic(store: &dyn ChatStore) {
    let outcome = store
        .send(batch(
            "a",
            "m1",
            vec![
                envelope("b", "bd1", b"for b1"),
                envelope("b", "bd2", b"for b2"),
                envelope("a", "ad2", b"for a2"),
            ],
            T0,
        ))
        .await
        .expect("send");
    let SendOutcome::Stored {
        server_time_ms,
        seqs,
    } = outcome
    else {
        panic!("stored");
    };
    assert_eq!(server_time_ms, T0);
    assert_eq!(seqs.len(), 3);
    for (device, body, seq) in [
        ("bd1", b"for b1", seqs[0]),
        ("bd2", b"for b2", seqs[1]),
        ("ad2", b"for a2", seqs[2]),
    ] {
        let page = store.fetch(device, 0, 10).await.expect("fetch");
        assert_eq!(page.envelopes.len(), 1, "{device}");
        assert_eq!(page.envelopes[0].ciphertext, body, "{device}");
        assert_eq!(page.envelopes[0].seq, seq, "{device}");
    }
}

pub(crate) async fn duplicate_send_returns_first_answer(store: &dyn ChatStore) {
    let first = store
        .send(batch("a", "m1", vec![envelope("b", "bd1", b"one")], T0))
        .await
        .expect("send");
    assert!(matches!(
        first,
        SendOutcome::Stored {
            server_time_ms: T0,
            ..
        }
    ));
    let again = store
        .send(batch(
            "a",
            "m1",
            vec![envelope("b", "bd1", b"one"), envelope("b", "bd2", b"one")],
            T0 + 5_000,
        ))
        .await
        .expect("send");
    assert_eq!(again, SendOutcome::Duplicate { server_time_ms: T0 });
    assert_eq!(
        store
            .fetch("bd1", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .len(),
        1
    );
    assert!(
        store
            .fetch("bd2", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .is_empty()
    );
    assert_eq!(store.sent_at("a", "m1").await.expect("lookup"), Some(T0));
    // The key is per sender user.
    let other = store
        .send(batch("c", "m1", vec![envelope("b", "bd1", b"c")], T0))
        .await
        .expect("send");
    assert!(matches!(other, SendOutcome::Stored { .. }));
    // Still a duplicate after the envelope is acked.
    store.ack("bd1", u64::MAX >> 1).await.expect("ack");
    let late = store
        .send(batch(
            "a",
            "m1",
            vec![envelope("b", "bd1", b"one")],
            T0 + 9_000,
        ))
        .await
        .expect("send");
    assert_eq!(late, SendOutcome::Duplicate { server_time_ms: T0 });
}

pub(crate) async fn ack_deletes_a_range(store: &dyn ChatStore) {
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(send_one(store, "a", &format!("m{i}"), b"x").await);
    }
    assert_eq!(store.ack("bd1", seqs[2]).await.expect("ack"), 3);
    let left: Vec<u64> = store
        .fetch("bd1", 0, 10)
        .await
        .expect("fetch")
        .envelopes
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left, seqs[3..]);
    // Acking again or lower deletes nothing.
    assert_eq!(store.ack("bd1", seqs[2]).await.expect("ack"), 0);
    assert_eq!(store.ack("bd1", seqs[0]).await.expect("ack"), 0);
    // Another mailbox is untouched.
    assert_eq!(store.ack("bd2", seqs[5]).await.expect("ack"), 0);
    assert_eq!(store.ack("bd1", seqs[5]).await.expect("ack"), 3);
}

pub(crate) async fn concurrent_senders_get_distinct_seqs(store: &dyn ChatStore) {
    // Not awaited one by one: all 200 are queued at once.
    let sends = (0..200).map(|i| async move {
        send_one(store, &format!("s{}", i % 7), &format!("m{i}"), b"x").await
    });
    let seqs = futures_util::future::join_all(sends).await;
    let distinct: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(distinct.len(), 200);
    let page = store.fetch("bd1", 0, 1_000).await.expect("fetch");
    assert_eq!(page.envelopes.len(), 200);
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    let stored: Vec<u64> = page.envelopes.iter().map(|e| e.seq).collect();
    assert_eq!(stored, sorted);
}

pub(crate) async fn mailboxes_are_separate(store: &dyn ChatStore) {
    let outcome = store
        .send(batch(
            "a",
            "m1",
            vec![envelope("b", "bd1", b"1"), envelope("c", "cd1", b"2")],
            T0,
        ))
        .await
        .expect("send");
    // Each mailbox numbers on its own, from 1.
    assert_eq!(
        outcome,
        SendOutcome::Stored {
            server_time_ms: T0,
            seqs: vec![1, 1]
        }
    );
    store.ack("bd1", 1).await.expect("ack");
    assert_eq!(
        store
            .fetch("cd1", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .len(),
        1
    );
    assert_eq!(store.last_seq("zz").await.expect("last"), 0);
}

pub(crate) async fn prune_forgets_old_dedupe_keys(store: &dyn ChatStore) {
    for (id, at) in [("old1", T0), ("old2", T0 + 1), ("new", T0 + 10)] {
        store
            .send(batch("a", id, vec![envelope("b", "bd1", b"x")], at))
            .await
            .expect("send");
    }
    assert_eq!(store.prune_dedupe(T0 + 10).await.expect("prune"), 2);
    assert_eq!(store.sent_at("a", "old1").await.expect("lookup"), None);
    assert_eq!(
        store.sent_at("a", "new").await.expect("lookup"),
        Some(T0 + 10)
    );
    // Pruning keys leaves the envelopes.
    assert_eq!(
        store
            .fetch("bd1", 0, 10)
            .await
            .expect("fetch")
            .envelopes
            .len(),
        3
    );
    // A pruned key can be used again.
    let again = store
        .send(batch(
            "a",
            "old1",
            vec![envelope("b", "bd1", b"x")],
            T0 + 20,
        ))
        .await
        .expect("send");
    assert!(matches!(again, SendOutcome::Stored { .. }));
}

/// First half of the reopen case: write, ack, and leave some envelopes.
pub(crate) async fn before_reopen(store: &dyn ChatStore) {
    for i in 0..4 {
        send_one(store, "a", &format!("m{i}"), &[i]).await;
    }
    store.ack("bd1", 4).await.expect("ack");
    send_one(store, "a", "m4", &[4]).await;
    store.ack("bd1", 5).await.expect("ack");
    send_one(store, "a", "m5", &[5]).await;
}

/// Second half, on the same database reopened: envelopes, counters and dedupe keys survived.
pub(crate) async fn after_reopen(store: &dyn ChatStore) {
    let page = store.fetch("bd1", 0, 10).await.expect("fetch");
    let kept: Vec<(u64, Vec<u8>)> = page
        .envelopes
        .iter()
        .map(|e| (e.seq, e.ciphertext.clone()))
        .collect();
    assert_eq!(kept, [(6, vec![5])]);
    assert_eq!(store.last_seq("bd1").await.expect("last"), 6);
    store.ack("bd1", 6).await.expect("ack");
    assert_eq!(send_one(store, "a", "m6", b"x").await, 7);
    let dup = store
        .send(batch("a", "m2", vec![envelope("b", "bd1", b"x")], T0))
        .await
        .expect("send");
    assert!(matches!(dup, SendOutcome::Duplicate { .. }));
}
