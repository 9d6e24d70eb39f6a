//! The group rules and the group service, on a real SQLite store with a fake directory.

use std::sync::Arc;

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use juntos_proto::chat::v1::{GroupNotice, NoticeAction, SignedGroupNotice};
use juntos_proto::error::{metadata_of, reason, reason_of};
use prost::Message as _;
use tonic::Code;

use super::*;
use crate::store::{ChatStore as _, StoredEnvelope};
use crate::test_support::{Fixture, T0, caller};

/// Alice (a1, a2), Bob (b1, b2), Carol (c1) and Dave (d1).
fn fixture() -> Fixture {
    let f = Fixture::new();
    f.directory.set("carol", &["c1"]);
    f.directory.set("dave", &["d1"]);
    f
}

fn users(list: &[&str]) -> Vec<String> {
    list.iter().map(|u| (*u).to_owned()).collect()
}

/// The [`fixture`], Alice's `a1`, and group `g` she created with `members`.
async fn alices_group(members: &[&str]) -> (Fixture, Caller, GroupView) {
    let f = fixture();
    let alice = caller("alice", "a1");
    let view = f
        .service
        .create_group(&alice, "g", users(members))
        .await
        .expect("create");
    (f, alice, view)
}

/// Group `big`, created by `alice` with `others`, each of whom gets one device (`<user>-d`).
async fn big_group(f: &Fixture, alice: &Caller, others: Vec<String>) -> GroupView {
    for user in &others {
        f.directory.set(user, &[&format!("{user}-d")]);
    }
    f.service
        .create_group(alice, "big", others)
        .await
        .expect("create")
}

fn set_admins(list: &[&str], admin: bool) -> Change {
    Change::SetAdmins {
        user_ids: users(list),
        admin,
    }
}

fn refused<T: std::fmt::Debug>(result: Result<T>, code: Code, why: &str) -> tonic::Status {
    let status = tonic::Status::from(result.expect_err(why));
    assert_eq!(status.code(), code, "{why}: {status:?}");
    assert_eq!(reason_of(&status).as_deref(), Some(why), "{status:?}");
    status
}

/// The notices in `device`'s mailbox, verified with the service's key.
async fn notices_of(f: &Fixture, device: &str) -> Vec<GroupNotice> {
    let keys = f.service.notice_keys();
    let (key_id, public) = &keys[0];
    let key = VerifyingKey::from_bytes(public).expect("key");
    f.mailbox(device)
        .await
        .into_iter()
        .filter(|e| e.kind == EnvelopeKind::Notice)
        .map(|e| {
            let signed = SignedGroupNotice::decode(&e.ciphertext[..]).expect("signed notice");
            assert_eq!(&signed.key_id, key_id);
            let mut message = NOTICE_CONTEXT.to_vec();
            message.extend_from_slice(&signed.notice);
            let signature = Signature::from_slice(&signed.signature).expect("signature");
            key.verify(&message, &signature).expect("verifies");
            let notice = GroupNotice::decode(&signed.notice[..]).expect("notice");
            assert_eq!(e.group_id, notice.group_id);
            notice
        })
        .collect()
}

fn actions(notices: &[GroupNotice]) -> Vec<NoticeAction> {
    notices.iter().map(GroupNotice::action).collect()
}

async fn send(f: &Fixture, from: &Caller, view: &GroupView, id: &str, body: &[u8]) -> Result<i64> {
    f.service
        .send_group(
            from,
            &view.group.group_id,
            id.into(),
            Bytes::copy_from_slice(body),
            &view.digest,
        )
        .await
}

fn group_bodies(envelopes: &[StoredEnvelope]) -> Vec<Vec<u8>> {
    envelopes
        .iter()
        .filter(|e| e.kind == EnvelopeKind::Group)
        .map(|e| e.ciphertext.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_group_tells_every_member_device_with_a_signed_notice() {
    let f = fixture();
    let alice = caller("alice", "a1");
    let view = f
        .service
        .create_group(
            &alice,
            "  Sailing  ",
            users(&["bob", "carol", "bob", "alice"]),
        )
        .await
        .expect("create");
    let g = &view.group;
    assert_eq!(g.name, "Sailing");
    assert_eq!(g.version, 1);
    assert_eq!(g.group_id.len(), 32);
    let roles: Vec<(&str, GroupRole)> = g
        .members
        .iter()
        .map(|m| (m.user_id.as_str(), m.role))
        .collect();
    assert_eq!(
        roles,
        [
            ("alice", GroupRole::Admin),
            ("bob", GroupRole::Member),
            ("carol", GroupRole::Member)
        ]
    );
    assert_eq!(view.role, GroupRole::Admin);
    assert_eq!(view.devices["bob"], ["b1", "b2"]);
    // Every device of every member, the creating one included, has the notice.
    for device in ["a1", "a2", "b1", "b2", "c1"] {
        let notices = notices_of(&f, device).await;
        assert_eq!(actions(&notices), [NoticeAction::Created], "{device}");
        assert_eq!(notices[0].actor_user_id, "alice");
        assert_eq!(notices[0].subject_user_ids, ["bob", "carol"]);
        assert_eq!(notices[0].name, "Sailing");
        assert_eq!(notices[0].time_ms, T0);
        assert!(notices[0].exists);
    }
    assert!(f.mailbox("d1").await.is_empty());
    let (listed, more) = f
        .service
        .list_groups(&caller("carol", "c1"), "", 0)
        .await
        .expect("list");
    assert!(!more);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].member_count, listed[0].role),
        (3, GroupRole::Member)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_unknown_users_and_oversized_groups_are_refused() {
    let f = fixture();
    let alice = caller("alice", "a1");
    for name in ["", "   ", "tab\there", &"x".repeat(101)] {
        refused(
            f.service.create_group(&alice, name, users(&["bob"])).await,
            Code::InvalidArgument,
            reason::INVALID_GROUP,
        );
    }
    // 100 characters of several bytes each are fine.
    f.service
        .create_group(&alice, &"é".repeat(100), Vec::new())
        .await
        .expect("100 characters");
    let status = refused(
        f.service
            .create_group(&alice, "x", users(&["bob", "nobody"]))
            .await,
        Code::NotFound,
        reason::NO_SUCH_USER,
    );
    assert_eq!(metadata_of(&status, "user_id").as_deref(), Some("nobody"));
    let many: Vec<String> = (0..MAX_GROUP_MEMBERS).map(|i| format!("u{i}")).collect();
    refused(
        f.service.create_group(&alice, "x", many).await,
        Code::InvalidArgument,
        reason::TOO_MANY_MEMBERS,
    );
    // Nothing was stored by any refused create.
    let (listed, _) = f.service.list_groups(&alice, "", 0).await.expect("list");
    assert_eq!(listed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_full_at_the_member_cap() {
    let f = fixture();
    let alice = caller("alice", "a1");
    let others = (1..MAX_GROUP_MEMBERS).map(|i| format!("u{i:04}")).collect();
    let view = big_group(&f, &alice, others).await;
    assert_eq!(view.group.members.len(), MAX_GROUP_MEMBERS);
    refused(
        f.service
            .change_group(&alice, &view.group.group_id, Change::Add(users(&["dave"])))
            .await,
        Code::InvalidArgument,
        reason::TOO_MANY_MEMBERS,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_change_membership_and_only_members_see_the_group() {
    let (f, alice, view) = alices_group(&["bob"]).await;
    let bob = caller("bob", "b1");
    let dave = caller("dave", "d1");
    let id = view.group.group_id.clone();
    for change in [
        Change::Add(users(&["carol"])),
        Change::Remove(users(&["alice"])),
        set_admins(&["bob"], true),
        Change::Rename("mine now".into()),
    ] {
        refused(
            f.service.change_group(&bob, &id, change).await,
            Code::PermissionDenied,
            reason::NOT_AN_ADMIN,
        );
    }
    // A stranger can neither see, change, send to nor leave it; nor can anyone reach a group
    // that does not exist, or one named by a malformed id.
    refused(
        f.service.get_group(&dave, &id).await,
        Code::PermissionDenied,
        reason::NOT_A_MEMBER,
    );
    refused(
        f.service
            .change_group(&dave, &id, Change::Add(users(&["dave"])))
            .await,
        Code::PermissionDenied,
        reason::NOT_A_MEMBER,
    );
    refused(
        send(&f, &dave, &view, "m1", b"x").await,
        Code::PermissionDenied,
        reason::NOT_A_MEMBER,
    );
    refused(
        f.service.change_group(&dave, &id, Change::Leave).await,
        Code::PermissionDenied,
        reason::NOT_A_MEMBER,
    );
    for other in ["0123456789abcdef0123456789abcdef", "../etc", ""] {
        refused(
            f.service.get_group(&alice, other).await,
            Code::PermissionDenied,
            reason::NOT_A_MEMBER,
        );
    }
    // Nothing changed: only the creation notice reached anyone.
    assert_eq!(
        actions(&notices_of(&f, "b1").await),
        [NoticeAction::Created]
    );
    let got = f.service.get_group(&bob, &id).await.expect("get");
    assert_eq!(got.group.version, 1);
    assert_eq!(got.role, GroupRole::Member);
    assert_eq!(got.digest, view.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_messages_reach_every_other_member_device_once() {
    let (f, alice, view) = alices_group(&["bob", "carol"]).await;
    let time = send(&f, &alice, &view, "m1", b"sealed")
        .await
        .expect("send");
    assert_eq!(time, T0);
    // A retry stores nothing twice.
    assert_eq!(
        send(&f, &alice, &view, "m1", b"sealed")
            .await
            .expect("retry"),
        T0
    );
    for device in ["a2", "b1", "b2", "c1"] {
        let envelopes = f.mailbox(device).await;
        assert_eq!(group_bodies(&envelopes), [b"sealed".to_vec()], "{device}");
        let message = envelopes
            .iter()
            .find(|e| e.kind == EnvelopeKind::Group)
            .expect("message");
        assert_eq!(
            (
                message.sender_user_id.as_str(),
                message.sender_device_id.as_str(),
                message.group_id.as_str()
            ),
            ("alice", "a1", view.group.group_id.as_str())
        );
    }
    assert!(group_bodies(&f.mailbox("a1").await).is_empty());
    assert!(f.mailbox("d1").await.is_empty());

    // Caps: empty, too large, bad ids.
    refused(
        send(&f, &alice, &view, "m2", b"").await,
        Code::InvalidArgument,
        reason::INVALID_ENVELOPE,
    );
    refused(
        send(&f, &alice, &view, "m2", &vec![0; MAX_ENVELOPE_BYTES + 1]).await,
        Code::InvalidArgument,
        reason::ENVELOPE_TOO_LARGE,
    );
    refused(
        send(&f, &alice, &view, "bad id!", b"x").await,
        Code::InvalidArgument,
        reason::INVALID_ENVELOPE,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_for_other_member_devices_is_stale_until_the_sender_catches_up() {
    let (f, alice, view) = alices_group(&["bob"]).await;
    // Bob signs in a third device: Alice has not given it her sender key yet.
    f.directory.set("bob", &["b1", "b2", "b3"]);
    let status = refused(
        send(&f, &alice, &view, "m1", b"x").await,
        Code::FailedPrecondition,
        reason::STALE_GROUP,
    );
    assert_eq!(metadata_of(&status, "version").as_deref(), Some("1"));
    assert!(group_bodies(&f.mailbox("b1").await).is_empty());
    let fresh = f
        .service
        .get_group(&alice, &view.group.group_id)
        .await
        .expect("get");
    assert_eq!(fresh.devices["bob"], ["b1", "b2", "b3"]);
    send(&f, &alice, &fresh, "m1", b"x").await.expect("send");
    assert_eq!(group_bodies(&f.mailbox("b3").await), [b"x".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_gets_the_notice_and_nothing_after_it() {
    let (f, alice, view) = alices_group(&["bob", "carol"]).await;
    let id = view.group.group_id.clone();
    send(&f, &alice, &view, "m1", b"before")
        .await
        .expect("send");
    let after = f
        .service
        .change_group(&alice, &id, Change::Remove(users(&["carol", "dave"])))
        .await
        .expect("remove")
        .expect("still a member");
    assert_eq!(after.group.version, 2);
    assert!(after.group.member("carol").is_none());
    // The old digest named Carol's device: refused, and nothing reaches her.
    refused(
        send(&f, &alice, &view, "m2", b"after").await,
        Code::FailedPrecondition,
        reason::STALE_GROUP,
    );
    send(&f, &alice, &after, "m2", b"after")
        .await
        .expect("send");
    let carol = f.mailbox("c1").await;
    assert_eq!(group_bodies(&carol), [b"before".to_vec()]);
    let notices = notices_of(&f, "c1").await;
    assert_eq!(
        actions(&notices),
        [NoticeAction::Created, NoticeAction::Removed]
    );
    assert_eq!(notices[1].subject_user_ids, ["carol"], "dave was no member");
    // The removal notice comes after the earlier message in her mailbox.
    assert_eq!(carol.last().expect("notice").kind, EnvelopeKind::Notice);
    assert_eq!(
        group_bodies(&f.mailbox("b1").await),
        [b"before".to_vec(), b"after".to_vec()]
    );
    refused(
        f.service.get_group(&caller("carol", "c1"), &id).await,
        Code::PermissionDenied,
        reason::NOT_A_MEMBER,
    );
    // Removing again changes nothing and sends no notice.
    f.service
        .change_group(&alice, &id, Change::Remove(users(&["carol"])))
        .await
        .expect("again");
    assert_eq!(notices_of(&f, "b1").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_promote_demote_and_rename_but_never_leave_the_group_without_an_admin() {
    let (f, alice, view) = alices_group(&["bob", "carol"]).await;
    let bob = caller("bob", "b1");
    let id = view.group.group_id.clone();
    refused(
        f.service
            .change_group(&alice, &id, set_admins(&["alice"], false))
            .await,
        Code::FailedPrecondition,
        reason::LAST_ADMIN,
    );
    refused(
        f.service
            .change_group(&alice, &id, set_admins(&["dave"], true))
            .await,
        Code::InvalidArgument,
        reason::INVALID_GROUP,
    );
    let promoted = f
        .service
        .change_group(&alice, &id, set_admins(&["bob"], true))
        .await
        .expect("promote")
        .expect("member");
    assert_eq!(
        promoted.group.member("bob").expect("bob").role,
        GroupRole::Admin
    );
    // Now Bob may rename, and demote Alice.
    f.service
        .change_group(&bob, &id, Change::Rename("Regatta".into()))
        .await
        .expect("rename");
    let demoted = f
        .service
        .change_group(&bob, &id, set_admins(&["alice"], false))
        .await
        .expect("demote")
        .expect("member");
    assert_eq!(demoted.group.name, "Regatta");
    assert_eq!(demoted.group.version, 4);
    refused(
        f.service
            .change_group(&alice, &id, Change::Rename("back".into()))
            .await,
        Code::PermissionDenied,
        reason::NOT_AN_ADMIN,
    );
    let notices = notices_of(&f, "c1").await;
    assert_eq!(
        actions(&notices),
        [
            NoticeAction::Created,
            NoticeAction::Promoted,
            NoticeAction::Renamed,
            NoticeAction::Demoted
        ]
    );
    assert_eq!(notices[2].name, "Regatta");
    assert_eq!(notices[3].actor_user_id, "bob");
    assert_eq!(notices[3].subject_user_ids, ["alice"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_last_admin_leaves_the_longest_member_takes_over_and_the_last_one_out_deletes() {
    let (f, alice, view) = alices_group(&["bob"]).await;
    let id = view.group.group_id.clone();
    f.clock.advance_ms(1_000);
    f.service
        .change_group(&alice, &id, Change::Add(users(&["carol"])))
        .await
        .expect("add");
    let left = f
        .service
        .change_group(&alice, &id, Change::Leave)
        .await
        .expect("leave");
    assert!(left.is_none(), "the leaver gets no view");
    let bob = caller("bob", "b1");
    let now = f.service.get_group(&bob, &id).await.expect("get");
    assert_eq!(now.role, GroupRole::Admin, "bob joined before carol");
    let notices = notices_of(&f, "a2").await;
    assert_eq!(
        actions(&notices),
        [
            NoticeAction::Created,
            NoticeAction::Added,
            NoticeAction::Left
        ]
    );
    assert_eq!(notices[2].promoted_user_ids, ["bob"]);
    f.service
        .change_group(&bob, &id, Change::Leave)
        .await
        .expect("bob leaves");
    let carol = caller("carol", "c1");
    assert_eq!(
        f.service.get_group(&carol, &id).await.expect("get").role,
        GroupRole::Admin
    );
    f.service
        .change_group(&carol, &id, Change::Leave)
        .await
        .expect("carol leaves");
    assert_eq!(f.store.group(&id).await.expect("read"), None);
    let last = notices_of(&f, "c1").await;
    let last = last.last().expect("notice");
    assert_eq!(last.action(), NoticeAction::Left);
    assert!(!last.exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_changes_each_apply_once() {
    let (f, alice, view) = alices_group(&[]).await;
    let id = view.group.group_id.clone();
    let adds = ["bob", "carol", "dave"].map(|user| {
        let (service, alice, id) = (Arc::clone(&f.service), alice.clone(), id.clone());
        tokio::spawn(async move {
            service
                .change_group(&alice, &id, Change::Add(vec![user.to_owned()]))
                .await
        })
    });
    for add in adds {
        add.await.expect("task").expect("add");
    }
    let group = f.service.get_group(&alice, &id).await.expect("get").group;
    assert_eq!(group.version, 4);
    assert_eq!(group.members.len(), 4);
    let versions: Vec<u64> = notices_of(&f, "a2")
        .await
        .iter()
        .map(|n| n.version)
        .collect();
    assert_eq!(versions, [1, 2, 3, 4]);
}

#[test]
fn the_digest_covers_every_member_device_in_a_fixed_order() {
    let group = Group {
        group_id: "g".into(),
        name: "g".into(),
        version: 1,
        created_ms: 0,
        members: vec![
            GroupMember {
                user_id: "a".into(),
                role: GroupRole::Admin,
                joined_ms: 0,
            },
            GroupMember {
                user_id: "b".into(),
                role: GroupRole::Member,
                joined_ms: 0,
            },
        ],
    };
    let devices = |b: &[&str]| {
        DeviceMap::from([
            ("a".to_owned(), vec!["a1".to_owned()]),
            ("b".to_owned(), b.iter().map(|d| (*d).to_owned()).collect()),
            ("stranger".to_owned(), vec!["s1".to_owned()]),
        ])
    };
    let expected: [u8; 32] = Sha256::digest(b"a a1\nb b1\nb b2\n").into();
    assert_eq!(devices_digest(&group, &devices(&["b2", "b1"])), expected);
    assert_ne!(devices_digest(&group, &devices(&["b1"])), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_fan_out_costs_one_send_per_256_devices() {
    let f = Fixture::with_config(crate::service::ChatConfig {
        send_rate_per_second: 1,
        send_burst: 4,
        ..crate::service::ChatConfig::default()
    });
    let alice = caller("alice", "a1");
    let others = (0..300).map(|i| format!("u{i:03}")).collect();
    // 302 notices: two sends' worth of the burst of four.
    let view = big_group(&f, &alice, others).await;
    // 301 recipient devices: two more.
    send(&f, &alice, &view, "m1", b"x").await.expect("send");
    let status = refused(
        send(&f, &alice, &view, "m2", b"x").await,
        Code::ResourceExhausted,
        reason::SEND_RATE,
    );
    assert!(juntos_proto::error::retry_after_of(&status).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_cannot_be_suppressed_by_a_send_with_their_id() {
    let (f, alice, view) = alices_group(&["bob"]).await;
    let id = view.group.group_id.clone();
    // Alice claims the id the next notice would have had, with a group message.
    send(&f, &alice, &view, &format!("notice-{id}-2"), b"x")
        .await
        .expect("send");
    f.service
        .change_group(&alice, &id, Change::Add(users(&["carol"])))
        .await
        .expect("add");
    for device in ["b1", "c1", "a2"] {
        let notices = notices_of(&f, device).await;
        assert_eq!(
            notices.last().map(GroupNotice::action),
            Some(NoticeAction::Added),
            "{device}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_after_leaving_gets_its_first_answer() {
    let (f, _, view) = alices_group(&["bob"]).await;
    let bob = caller("bob", "b1");
    let time = send(&f, &bob, &view, "m1", b"x").await.expect("send");
    f.service
        .change_group(&bob, &view.group.group_id, Change::Leave)
        .await
        .expect("leave");
    assert_eq!(
        send(&f, &bob, &view, "m1", b"x").await.expect("retry"),
        time
    );
    refused(
        send(&f, &bob, &view, "m2", b"x").await,
        Code::PermissionDenied,
        reason::NOT_A_MEMBER,
    );
}
