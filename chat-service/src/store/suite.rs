//! The behavioural suite every [`ChatStore`] backend must pass. Each case takes a fresh, empty
//! store; a backend's tests run every case with one [`chat_store_suite!`] line (`sqlite.rs`, and
//! `mongo/tests.rs`, which runs them on SecantusDB or `JUNTOS_TEST_MONGODB_URI`).

use std::collections::HashSet;

use super::{
    ChatStore, EnvelopeKind, Group, GroupListing, GroupMember, GroupRole, GroupWrite,
    OutgoingEnvelope, SendBatch, SendOutcome,
};
use crate::test_support::{envelope, mailbox};

/// Runs every case of this suite against the store `$fresh` makes: `$fresh` is an async
/// expression evaluating to `(guard, store)`, where `guard` (a temporary directory, a test
/// server) is kept alive for the whole case and `store` is a fresh, empty [`ChatStore`]. One
/// `#[tokio::test]` per case is defined where the macro is invoked.
///
/// With `reopen: |guard| $reopen` (`guard` a pattern binding the guard), it also checks that a
/// store opened again on the same data (`$reopen`, an async expression that may use what `guard`
/// binds) keeps the mailboxes, counters and keys.
macro_rules! chat_store_suite {
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_guard, store) = $fresh.await;
                $crate::store::suite::$case(&store).await;
            }
        )*
    };
    ($fresh:expr, reopen: |$guard:pat_param| $reopen:expr $(,)?) => {
        $crate::store::suite::chat_store_suite!($fresh);

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reopen_keeps_envelopes_and_counters() {
            let ($guard, store) = $fresh.await;
            $crate::store::suite::before_reopen(&store).await;
            drop(store);
            let store = $reopen.await;
            $crate::store::suite::after_reopen(&store).await;
        }
    };
    ($fresh:expr $(,)?) => {
        $crate::store::suite::chat_store_suite!(@cases $fresh;
            mailbox_is_ordered_and_paged,
            seqs_increase_across_acks,
            multi_recipient_send_is_atomic,
            duplicate_send_returns_first_answer,
            ack_deletes_a_range,
            concurrent_senders_get_distinct_seqs,
            mailboxes_are_separate,
            prune_forgets_old_dedupe_keys,
            groups_are_written_only_from_their_current_version,
            a_users_groups_are_listed_in_pages_with_roles_and_counts,
            a_group_send_needs_the_version_it_was_fanned_out_for,
        );
    };
}

pub(crate) use chat_store_suite;

const T0: i64 = 1_750_000_000_000;

fn batch(sender: &str, id: &str, envelopes: Vec<OutgoingEnvelope>, now_ms: i64) -> SendBatch {
    SendBatch {
        sender_user_id: sender.into(),
        sender_device_id: format!("{sender}-d1"),
        client_msg_id: id.into(),
        envelopes,
        now_ms,
        ..SendBatch::default()
    }
}

/// A send `id` of `x` from `a` to each of `devices` of user `b`, at 1 ms.
pub(crate) fn to_devices(id: &str, devices: &[&str]) -> SendBatch {
    let envelopes = devices.iter().map(|d| envelope("b", d, b"x")).collect();
    batch("a", id, envelopes, 1)
}

/// Sends one envelope from `sender` to device `bd1` of user `b` at `now_ms`.
async fn send_at(
    store: &dyn ChatStore,
    sender: &str,
    id: &str,
    body: &[u8],
    now_ms: i64,
) -> SendOutcome {
    store
        .send(batch(sender, id, vec![envelope("b", "bd1", body)], now_ms))
        .await
        .expect("send")
}

/// Sends one envelope from `sender` to device `bd1` of user `b`; returns its seq.
async fn send_one(store: &dyn ChatStore, sender: &str, id: &str, body: &[u8]) -> u64 {
    match send_at(store, sender, id, body, T0).await {
        SendOutcome::Stored { seqs, .. } => seqs[0],
        other => panic!("unexpected {other:?} for {id}"),
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
    assert!(mailbox(store, "nobody").await.is_empty());
}

pub(crate) async fn seqs_increase_across_acks(store: &dyn ChatStore) {
    let s1 = send_one(store, "a", "m1", b"1").await;
    let s2 = send_one(store, "a", "m2", b"2").await;
    assert!(s2 > s1);
    assert_eq!(store.ack("bd1", s2).await.expect("ack"), 2);
    assert!(mailbox(store, "bd1").await.is_empty());
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
    let first = send_at(store, "a", "m1", b"one", T0).await;
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
    assert_eq!(mailbox(store, "bd1").await.len(), 1);
    assert!(mailbox(store, "bd2").await.is_empty());
    assert_eq!(store.sent_at("a", "m1").await.expect("lookup"), Some(T0));
    // The key is per sender user.
    let other = send_at(store, "c", "m1", b"c", T0).await;
    assert!(matches!(other, SendOutcome::Stored { .. }));
    // Still a duplicate after the envelope is acked.
    store.ack("bd1", u64::MAX >> 1).await.expect("ack");
    let late = send_at(store, "a", "m1", b"one", T0 + 9_000).await;
    assert_eq!(late, SendOutcome::Duplicate { server_time_ms: T0 });
}

pub(crate) async fn ack_deletes_a_range(store: &dyn ChatStore) {
    let mut seqs = Vec::new();
    for i in 0..6 {
        seqs.push(send_one(store, "a", &format!("m{i}"), b"x").await);
    }
    assert_eq!(store.ack("bd1", seqs[2]).await.expect("ack"), 3);
    let left: Vec<u64> = mailbox(store, "bd1").await.iter().map(|e| e.seq).collect();
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
    assert_eq!(mailbox(store, "cd1").await.len(), 1);
    assert_eq!(store.last_seq("zz").await.expect("last"), 0);
}

pub(crate) async fn prune_forgets_old_dedupe_keys(store: &dyn ChatStore) {
    for (id, at) in [("old1", T0), ("old2", T0 + 1), ("new", T0 + 10)] {
        send_at(store, "a", id, b"x", at).await;
    }
    assert_eq!(store.prune_dedupe(T0 + 10).await.expect("prune"), 2);
    assert_eq!(store.sent_at("a", "old1").await.expect("lookup"), None);
    assert_eq!(
        store.sent_at("a", "new").await.expect("lookup"),
        Some(T0 + 10)
    );
    // Pruning keys leaves the envelopes.
    assert_eq!(mailbox(store, "bd1").await.len(), 3);
    // A pruned key can be used again.
    let again = send_at(store, "a", "old1", b"x", T0 + 20).await;
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
    let dup = send_at(store, "a", "m2", b"x", T0).await;
    assert!(matches!(dup, SendOutcome::Duplicate { .. }));
}

// === groups ===

fn member(user: &str, role: GroupRole, joined_ms: i64) -> GroupMember {
    GroupMember {
        user_id: user.into(),
        role,
        joined_ms,
    }
}

/// Group `g` at `version` with `a` as admin and the other users as members.
fn group(id: &str, version: u64, users: &[&str]) -> Group {
    let mut members: Vec<GroupMember> = users
        .iter()
        .map(|u| {
            let role = if *u == "a" {
                GroupRole::Admin
            } else {
                GroupRole::Member
            };
            member(u, role, T0)
        })
        .collect();
    members.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    Group {
        group_id: id.into(),
        name: format!("group {id}"),
        version,
        created_ms: T0,
        members,
    }
}

/// The notices of version `version` of group `id` to the listed devices of user `b`.
fn notices(id: &str, version: u64, devices: &[&str]) -> SendBatch {
    SendBatch {
        sender_user_id: "a".into(),
        sender_device_id: "a-d1".into(),
        client_msg_id: format!("notice-{id}-{version}"),
        envelopes: devices
            .iter()
            .map(|d| envelope("b", d, format!("notice {version}").as_bytes()))
            .collect(),
        now_ms: T0,
        kind: EnvelopeKind::Notice,
        group_id: id.into(),
        group_version: None,
    }
}

fn write(group: Group, base_version: Option<u64>, notices: SendBatch) -> GroupWrite {
    GroupWrite {
        group,
        base_version,
        notices,
    }
}

pub(crate) async fn groups_are_written_only_from_their_current_version(store: &dyn ChatStore) {
    assert_eq!(store.group("g1").await.expect("read"), None);
    let created = group("g1", 1, &["a", "b", "c"]);
    assert!(
        store
            .write_group(write(created.clone(), None, notices("g1", 1, &["bd1"])))
            .await
            .expect("create")
    );
    assert_eq!(
        store.group("g1").await.expect("read"),
        Some(created.clone())
    );
    // Creating it again, or changing it from a version it no longer has, writes nothing.
    assert!(
        !store
            .write_group(write(created.clone(), None, notices("g1", 9, &["bd1"])))
            .await
            .expect("again")
    );
    let mut renamed = created.clone();
    renamed.version = 2;
    renamed.name = "renamed".into();
    renamed.members.retain(|m| m.user_id != "c");
    renamed.members[1].role = GroupRole::Admin;
    assert!(
        !store
            .write_group(write(renamed.clone(), Some(5), notices("g1", 8, &["bd1"])))
            .await
            .expect("stale")
    );
    assert!(
        store
            .write_group(write(
                renamed.clone(),
                Some(1),
                notices("g1", 2, &["bd1", "bd2"])
            ))
            .await
            .expect("change")
    );
    assert_eq!(store.group("g1").await.expect("read"), Some(renamed));
    // Only the written changes' notices are in the mailboxes, in order, as notices of g1.
    let page = store.fetch("bd1", 0, 10).await.expect("fetch");
    let got: Vec<(Vec<u8>, EnvelopeKind, &str)> = page
        .envelopes
        .iter()
        .map(|e| (e.ciphertext.clone(), e.kind, e.group_id.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (b"notice 1".to_vec(), EnvelopeKind::Notice, "g1"),
            (b"notice 2".to_vec(), EnvelopeKind::Notice, "g1"),
        ]
    );
    assert_eq!(mailbox(store, "bd2").await.len(), 1);
    // No members: the group is deleted (its notices still delivered).
    let mut gone = group("g1", 3, &[]);
    gone.name = "renamed".into();
    assert!(
        store
            .write_group(write(gone, Some(2), notices("g1", 3, &["bd1"])))
            .await
            .expect("delete")
    );
    assert_eq!(store.group("g1").await.expect("read"), None);
    assert_eq!(store.groups_of("a", "", 10).await.expect("list").0, []);
    assert_eq!(mailbox(store, "bd1").await.len(), 3);
}

pub(crate) async fn a_users_groups_are_listed_in_pages_with_roles_and_counts(
    store: &dyn ChatStore,
) {
    for (id, users) in [
        ("g3", &["a", "b"][..]),
        ("g1", &["a", "b", "c"][..]),
        ("g2", &["a", "c"][..]),
    ] {
        let written = store
            .write_group(write(group(id, 1, users), None, notices(id, 1, &[])))
            .await
            .expect("create");
        assert!(written);
    }
    let (first, more) = store.groups_of("b", "", 1).await.expect("list");
    assert!(more);
    assert_eq!(
        first,
        [GroupListing {
            group_id: "g1".into(),
            name: "group g1".into(),
            version: 1,
            member_count: 3,
            role: GroupRole::Member,
        }]
    );
    let (rest, more) = store.groups_of("b", "g1", 10).await.expect("list");
    assert!(!more);
    assert_eq!(
        rest.iter().map(|g| g.group_id.as_str()).collect::<Vec<_>>(),
        ["g3"]
    );
    let (of_a, _) = store.groups_of("a", "", 10).await.expect("list");
    assert!(of_a.iter().all(|g| g.role == GroupRole::Admin));
    assert_eq!(of_a.len(), 3);
    let counts = store
        .group_counts(&["a".into(), "b".into(), "c".into(), "z".into()])
        .await
        .expect("counts");
    assert_eq!(
        counts,
        std::collections::HashMap::from([("a".into(), 3), ("b".into(), 2), ("c".into(), 2)])
    );
}

pub(crate) async fn a_group_send_needs_the_version_it_was_fanned_out_for(store: &dyn ChatStore) {
    let g = group("g1", 1, &["a", "b"]);
    assert!(
        store
            .write_group(write(g, None, notices("g1", 1, &[])))
            .await
            .expect("create")
    );
    let send = |id: &str, version: u64| SendBatch {
        kind: EnvelopeKind::Group,
        group_id: "g1".into(),
        group_version: Some(version),
        ..batch("a", id, vec![envelope("b", "bd1", id.as_bytes())], T0)
    };
    let stored = store.send(send("m1", 1)).await.expect("send");
    assert!(matches!(stored, SendOutcome::Stored { .. }), "{stored:?}");
    let stale = store.send(send("m2", 2)).await.expect("send");
    assert_eq!(stale, SendOutcome::StaleGroup);
    // Nothing of the refused send was kept: not even its dedupe key.
    assert_eq!(store.sent_at("a", "m2").await.expect("lookup"), None);
    let other = SendBatch {
        group_id: "nope".into(),
        ..send("m3", 1)
    };
    assert_eq!(
        store.send(other).await.expect("send"),
        SendOutcome::StaleGroup
    );
    let page = store.fetch("bd1", 0, 10).await.expect("fetch");
    assert_eq!(page.envelopes.len(), 1);
    assert_eq!(
        (page.envelopes[0].kind, page.envelopes[0].group_id.as_str()),
        (EnvelopeKind::Group, "g1")
    );
    // Direct messages keep their kind too.
    send_one(store, "a", "d1", b"direct").await;
    let page = store.fetch("bd1", 1, 10).await.expect("fetch");
    assert_eq!(
        (page.envelopes[0].kind, page.envelopes[0].group_id.as_str()),
        (EnvelopeKind::Direct, "")
    );
}
