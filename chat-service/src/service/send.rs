//! The chat service's logic: `Send` (validation, caps, the device-list check, the per-user send
//! rate, storing, ringing), `Sync` and `Ack`. `Connect` is in [`super::connect`].

use std::collections::{HashMap, HashSet};

use juntos_proto::meta::Caller;

use super::{ChatService, MAX_ENVELOPE_BYTES, MAX_RECIPIENTS};
use crate::directory::DeviceMap;
use crate::error::{Error, Result};
use crate::store::{OutgoingEnvelope, Page, SendBatch, SendOutcome, StoreError};

/// Longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_LEN: usize = juntos_proto::ids::MAX_CLIENT_ID_LEN;
/// Longest user or device id accepted in an envelope (login's ids are far shorter).
const MAX_ID_LEN: usize = 128;
/// `Sync` page size when the request says 0.
pub const DEFAULT_SYNC_LIMIT: u32 = 100;
/// Largest `Sync` page.
pub const MAX_SYNC_LIMIT: u32 = 1_000;

impl ChatService {
    // === Send ===

    /// `Chat.Send`: checks and stores one message (an envelope per recipient device), then
    /// wakes the recipients' streams. Returns the server time of the (first) store.
    pub async fn send(
        &self,
        caller: &Caller,
        client_msg_id: String,
        envelopes: Vec<OutgoingEnvelope>,
    ) -> Result<i64> {
        check_client_msg_id(&client_msg_id)?;
        check_envelopes(caller, &envelopes)?;
        self.check_rate(&caller.user_id)?;

        let users = users_of(caller, &envelopes);
        let devices = self.directory.active_devices(&users).await?;
        if check_devices(caller, &envelopes, &devices).is_err() {
            // The cache may be behind the client: ask again before refusing.
            let fresh = self.directory.active_devices_fresh(&users).await?;
            if let Err(refused) = check_devices(caller, &envelopes, &fresh) {
                // A retry of a send that was stored before the list changed gets its answer.
                if let Some(server_time_ms) =
                    self.store.sent_at(&caller.user_id, &client_msg_id).await?
                {
                    return Ok(server_time_ms);
                }
                return Err(refused);
            }
        }

        let recipients: Vec<String> = envelopes
            .iter()
            .map(|e| e.recipient_device_id.clone())
            .collect();
        let batch = SendBatch {
            sender_user_id: caller.user_id.clone(),
            sender_device_id: caller.device_id.clone(),
            client_msg_id,
            envelopes,
            now_ms: self.clock.now_ms(),
            ..SendBatch::default()
        };
        match self.store.send(batch).await? {
            SendOutcome::Stored { server_time_ms, .. } => {
                self.ring(&recipients);
                Ok(server_time_ms)
            }
            SendOutcome::Duplicate { server_time_ms } => Ok(server_time_ms),
            SendOutcome::StaleGroup => Err(Error::Store(StoreError::Corrupt(
                "a direct send was refused as a group send".into(),
            ))),
        }
    }

    // === Sync and Ack ===

    /// `Chat.Sync`: a page of the caller's mailbox after `after_seq` (`limit` 0 means
    /// [`DEFAULT_SYNC_LIMIT`]; larger than [`MAX_SYNC_LIMIT`] means that).
    pub async fn sync(&self, caller: &Caller, after_seq: u64, limit: u32) -> Result<Page> {
        let limit = match limit {
            0 => DEFAULT_SYNC_LIMIT,
            n => n.min(MAX_SYNC_LIMIT),
        };
        Ok(self
            .store
            .fetch(&caller.device_id, after_seq, limit)
            .await?)
    }

    /// `Chat.Ack`: deletes the caller's envelopes up to `up_to_seq`; returns how many.
    pub async fn ack(&self, caller: &Caller, up_to_seq: u64) -> Result<u64> {
        Ok(self.store.ack(&caller.device_id, up_to_seq).await?)
    }
}

// === Send checks ===

/// A `client_msg_id` the wire allows ([`juntos_proto::ids::is_client_id`]: 1–64 characters of
/// `[A-Za-z0-9_-]`), or [`Error::InvalidEnvelope`].
pub(super) fn check_client_msg_id(id: &str) -> Result<()> {
    if juntos_proto::ids::is_client_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidEnvelope(
            "client_msg_id must be 1-64 characters of A-Z, a-z, 0-9, _ and -",
        ))
    }
}

/// The shape of the envelopes: count, ids, sizes, distinct devices, not to the sending device.
fn check_envelopes(caller: &Caller, envelopes: &[OutgoingEnvelope]) -> Result<()> {
    if envelopes.is_empty() {
        return Err(Error::InvalidEnvelope("a send needs at least one envelope"));
    }
    if envelopes.len() > MAX_RECIPIENTS {
        return Err(Error::TooManyRecipients {
            count: envelopes.len(),
            limit: MAX_RECIPIENTS,
        });
    }
    let mut devices = HashSet::with_capacity(envelopes.len());
    for envelope in envelopes {
        let ok_id = |id: &str| !id.is_empty() && id.len() <= MAX_ID_LEN;
        if !ok_id(&envelope.recipient_user_id) || !ok_id(&envelope.recipient_device_id) {
            return Err(Error::InvalidEnvelope(
                "an envelope has an empty or bad recipient id",
            ));
        }
        if envelope.ciphertext.is_empty() {
            return Err(Error::InvalidEnvelope(
                "an envelope has an empty ciphertext",
            ));
        }
        if envelope.ciphertext.len() > MAX_ENVELOPE_BYTES {
            return Err(Error::EnvelopeTooLarge {
                size: envelope.ciphertext.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        if envelope.recipient_device_id == caller.device_id {
            return Err(Error::InvalidEnvelope(
                "the sending device cannot be a recipient",
            ));
        }
        if !devices.insert(envelope.recipient_device_id.as_str()) {
            return Err(Error::InvalidEnvelope("a recipient device is listed twice"));
        }
    }
    Ok(())
}

/// The distinct users whose device lists a send must match: every recipient user, and the
/// sender (for its other devices).
fn users_of(caller: &Caller, envelopes: &[OutgoingEnvelope]) -> Vec<String> {
    let mut users: Vec<String> = envelopes
        .iter()
        .map(|e| e.recipient_user_id.as_str())
        .chain([caller.user_id.as_str()])
        .collect::<HashSet<&str>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    users.sort_unstable();
    users
}

/// Checks that the envelopes cover exactly every active device of every recipient user, plus
/// every active device of the sender except the sending one. The refusal lists, for each user
/// whose list was wrong, all of that user's current devices (for the sender, the sending device
/// included; the client leaves it out).
fn check_devices(
    caller: &Caller,
    envelopes: &[OutgoingEnvelope],
    current: &DeviceMap,
) -> Result<()> {
    let mut listed: HashMap<&str, HashSet<&str>> = HashMap::new();
    for envelope in envelopes {
        listed
            .entry(envelope.recipient_user_id.as_str())
            .or_default()
            .insert(envelope.recipient_device_id.as_str());
    }
    if let Some(missing) = listed
        .keys()
        .find(|user| **user != caller.user_id && !current.contains_key(**user))
    {
        return Err(Error::NoSuchUser {
            user_id: (*missing).to_owned(),
        });
    }
    let none = Vec::new();
    let mut stale = HashMap::new();
    let own = caller.user_id.as_str();
    for user in listed.keys().copied().chain([own]) {
        let devices = current.get(user).unwrap_or(&none);
        let expected: HashSet<&str> = devices
            .iter()
            .map(String::as_str)
            .filter(|d| !(user == own && *d == caller.device_id))
            .collect();
        let given = listed.get(user);
        let matches = match given {
            Some(given) => *given == expected,
            None => expected.is_empty(),
        };
        if !matches {
            stale.insert(user.to_owned(), devices.clone());
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(Error::StaleDevices(stale))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use juntos_proto::error::{metadata_of, reason, reason_of, retry_after_of};
    use tonic::Code;

    use super::*;
    use crate::service::ChatConfig;
    use crate::store::ChatStore as _;
    use crate::test_support::{ALICE_TO_BOB, Fixture, T0, caller, envelope};

    fn assert_refused(result: Result<i64, tonic::Status>, code: Code, why: &str) -> tonic::Status {
        let status = result.expect_err(why);
        assert_eq!(status.code(), code, "{why}: {status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some(why), "{status:?}");
        status
    }

    async fn mailbox(f: &Fixture, device: &str) -> Vec<(String, Vec<u8>)> {
        f.mailbox(device)
            .await
            .into_iter()
            .map(|e| (e.client_msg_id, e.ciphertext))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_send_reaches_every_device_with_the_verified_sender() {
        let f = Fixture::new();
        let time = f
            .send(&caller("alice", "a1"), "m1", ALICE_TO_BOB, b"hi")
            .await
            .expect("send");
        assert_eq!(time, T0);
        for device in ["b1", "b2", "a2"] {
            assert_eq!(mailbox(&f, device).await, [("m1".into(), b"hi".to_vec())]);
        }
        let page = f
            .service
            .sync(&caller("bob", "b2"), 0, 0)
            .await
            .expect("sync");
        let e = &page.envelopes[0];
        assert_eq!(
            (
                e.sender_user_id.as_str(),
                e.sender_device_id.as_str(),
                e.server_time_ms
            ),
            ("alice", "a1", T0)
        );
        assert!(mailbox(&f, "a1").await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_recipient_device_is_stale() {
        let f = Fixture::new();
        let result = f
            .send(
                &caller("alice", "a1"),
                "m1",
                &[("bob", "b1"), ("alice", "a2")],
                b"x",
            )
            .await;
        let status = assert_refused(result, Code::FailedPrecondition, reason::STALE_DEVICES);
        assert_eq!(metadata_of(&status, "bob").as_deref(), Some("b1,b2"));
        assert_eq!(
            metadata_of(&status, "alice"),
            None,
            "alice's list was right"
        );
        assert!(mailbox(&f, "b1").await.is_empty(), "nothing stored");
        assert!(mailbox(&f, "a2").await.is_empty(), "nothing stored");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_extra_recipient_device_is_stale() {
        let f = Fixture::new();
        let to = [
            ("bob", "b1"),
            ("bob", "b2"),
            ("bob", "gone"),
            ("alice", "a2"),
        ];
        let result = f.send(&caller("alice", "a1"), "m1", &to, b"x").await;
        let status = assert_refused(result, Code::FailedPrecondition, reason::STALE_DEVICES);
        assert_eq!(metadata_of(&status, "bob").as_deref(), Some("b1,b2"));
        // Bob signed out everywhere: any device of his is extra.
        f.directory.set("bob", &[]);
        let result = f
            .send(&caller("alice", "a1"), "m2", ALICE_TO_BOB, b"x")
            .await;
        let status = assert_refused(result, Code::FailedPrecondition, reason::STALE_DEVICES);
        assert_eq!(metadata_of(&status, "bob").as_deref(), Some(""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_senders_other_devices_are_required() {
        let f = Fixture::new();
        let result = f
            .send(
                &caller("alice", "a1"),
                "m1",
                &[("bob", "b1"), ("bob", "b2")],
                b"x",
            )
            .await;
        let status = assert_refused(result, Code::FailedPrecondition, reason::STALE_DEVICES);
        // All of Alice's devices, the sending one included.
        assert_eq!(metadata_of(&status, "alice").as_deref(), Some("a1,a2"));
        assert_eq!(metadata_of(&status, "bob"), None);
        // A single-device sender addresses only the recipient.
        f.directory.set("alice", &["a1"]);
        f.send(
            &caller("alice", "a1"),
            "m2",
            &[("bob", "b1"), ("bob", "b2")],
            b"x",
        )
        .await
        .expect("send");
        // A note to self reaches the other devices only.
        f.directory.set("alice", &["a1", "a2", "a3"]);
        f.send(
            &caller("alice", "a1"),
            "m3",
            &[("alice", "a2"), ("alice", "a3")],
            b"x",
        )
        .await
        .expect("note to self");
        assert_eq!(mailbox(&f, "a3").await.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_user_is_not_found() {
        let f = Fixture::new();
        let to = [("carol", "c1"), ("alice", "a2")];
        let result = f.send(&caller("alice", "a1"), "m1", &to, b"x").await;
        let status = assert_refused(result, Code::NotFound, reason::NO_SUCH_USER);
        assert_eq!(metadata_of(&status, "user_id").as_deref(), Some("carol"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_list_newer_than_the_cache_is_accepted() {
        let f = Fixture::new();
        f.directory.freeze_cache();
        f.directory.set("bob", &["b1", "b2", "b3"]);
        let to = [("bob", "b1"), ("bob", "b2"), ("bob", "b3"), ("alice", "a2")];
        f.send(&caller("alice", "a1"), "m1", &to, b"x")
            .await
            .expect("the fresh lookup agrees with the client");
        assert_eq!(mailbox(&f, "b3").await.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_send_gets_the_first_answer_and_stores_nothing_twice() {
        let f = Fixture::new();
        let alice = caller("alice", "a1");
        let first = f
            .send(&alice, "m1", ALICE_TO_BOB, b"one")
            .await
            .expect("send");
        f.clock.advance_ms(5_000);
        let again = f
            .send(&alice, "m1", ALICE_TO_BOB, b"one")
            .await
            .expect("retry");
        assert_eq!(again, first);
        assert_eq!(mailbox(&f, "b1").await.len(), 1);
        // Bob added a device since: the retry still answers, without storing.
        f.directory.set("bob", &["b1", "b2", "b3"]);
        let late = f
            .send(&alice, "m1", ALICE_TO_BOB, b"one")
            .await
            .expect("retry");
        assert_eq!(late, first);
        assert_eq!(mailbox(&f, "b1").await.len(), 1);
        // A new id is a new message (with the new list).
        let to = [("bob", "b1"), ("bob", "b2"), ("bob", "b3"), ("alice", "a2")];
        assert_eq!(
            f.send(&alice, "m2", &to, b"two").await.expect("send"),
            T0 + 5_000
        );
        assert_eq!(mailbox(&f, "b1").await.len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_cap_has_its_reason() {
        let f = Fixture::new();
        let alice = caller("alice", "a1");
        let send = |id: &str, envelopes: Vec<OutgoingEnvelope>| {
            let (service, alice, id) = (&f.service, &alice, id.to_owned());
            async move {
                service
                    .send(alice, id, envelopes)
                    .await
                    .map_err(tonic::Status::from)
            }
        };
        let ok = || ALICE_TO_BOB.iter().map(|(u, d)| envelope(u, d, b"x"));

        // Exactly 64 KiB passes the size check (and is stored).
        let mut at_cap: Vec<_> = ok().collect();
        at_cap[0].ciphertext = vec![1; MAX_ENVELOPE_BYTES].into();
        send("big-ok", at_cap).await.expect("64 KiB is allowed");
        let mut over: Vec<_> = ok().collect();
        over[1].ciphertext = vec![1; MAX_ENVELOPE_BYTES + 1].into();
        assert_refused(
            send("big", over).await,
            Code::InvalidArgument,
            reason::ENVELOPE_TOO_LARGE,
        );

        let many = (0..=MAX_RECIPIENTS)
            .map(|i| envelope("bob", &format!("d{i}"), b"x"))
            .collect();
        assert_refused(
            send("many", many).await,
            Code::InvalidArgument,
            reason::TOO_MANY_RECIPIENTS,
        );

        let mut empty: Vec<_> = ok().collect();
        empty[2].ciphertext.clear();
        let mut twice: Vec<_> = ok().collect();
        twice.push(envelope("bob", "b1", b"y"));
        let mut to_self: Vec<_> = ok().collect();
        to_self.push(envelope("alice", "a1", b"y"));
        let mut no_device: Vec<_> = ok().collect();
        no_device[0].recipient_device_id.clear();
        for (why, envelopes) in [
            ("empty ciphertext", empty),
            ("duplicate device", twice),
            ("sending device", to_self),
            ("empty device id", no_device),
            ("no envelopes", Vec::new()),
        ] {
            let status = send("m1", envelopes).await.expect_err(why);
            assert_eq!(
                reason_of(&status).as_deref(),
                Some(reason::INVALID_ENVELOPE),
                "{why}"
            );
            assert_eq!(status.code(), Code::InvalidArgument, "{why}");
        }

        let long = "x".repeat(MAX_CLIENT_MSG_ID_LEN + 1);
        for id in ["", "a b", "é", "a/b", long.as_str()] {
            let status = send(id, ok().collect()).await.expect_err(id);
            assert_eq!(
                reason_of(&status).as_deref(),
                Some(reason::INVALID_ENVELOPE),
                "{id:?}"
            );
        }
        let longest = "A-z_9".repeat(12) + "abcd";
        assert_eq!(longest.len(), MAX_CLIENT_MSG_ID_LEN);
        send(&longest, ok().collect())
            .await
            .expect("64 characters of the alphabet");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_send_rate_is_per_user_with_a_retry_time() {
        let f = Fixture::with_config(ChatConfig {
            send_rate_per_second: 1,
            send_burst: 2,
            ..ChatConfig::default()
        });
        let alice = caller("alice", "a1");
        f.send(&alice, "m1", ALICE_TO_BOB, b"x").await.expect("1");
        f.send(&alice, "m2", ALICE_TO_BOB, b"x").await.expect("2");
        let status = assert_refused(
            f.send(&alice, "m3", ALICE_TO_BOB, b"x").await,
            Code::ResourceExhausted,
            reason::SEND_RATE,
        );
        let wait = retry_after_of(&status).expect("retry info");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            mailbox(&f, "b1").await.len() == 2,
            "the refused send stored nothing"
        );
        let bob_to_alice = [("alice", "a1"), ("alice", "a2"), ("bob", "b2")];
        f.send(&caller("bob", "b1"), "m1", &bob_to_alice, b"x")
            .await
            .expect("another user has its own budget");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_pages_with_default_and_maximum_limits_and_ack_deletes() {
        let f = Fixture::new();
        let sends = (0..1_005).map(|i| {
            let store = Arc::clone(&f.store);
            async move {
                store
                    .send(SendBatch {
                        sender_user_id: "alice".into(),
                        sender_device_id: "a1".into(),
                        client_msg_id: format!("m{i}"),
                        envelopes: vec![envelope("bob", "b1", b"x")],
                        now_ms: T0,
                        ..SendBatch::default()
                    })
                    .await
                    .expect("send")
            }
        });
        futures_util::future::join_all(sends).await;
        let bob = caller("bob", "b1");
        let page = f.service.sync(&bob, 0, 0).await.expect("sync");
        assert_eq!((page.envelopes.len(), page.more), (100, true));
        let page = f.service.sync(&bob, 0, 50_000).await.expect("sync");
        assert_eq!((page.envelopes.len(), page.more), (1_000, true));
        let last = page.envelopes.last().expect("page").seq;
        assert_eq!(f.service.ack(&bob, last).await.expect("ack"), 1_000);
        let page = f.service.sync(&bob, 0, 0).await.expect("sync");
        assert_eq!((page.envelopes.len(), page.more), (5, false));
        assert!(page.envelopes[0].seq > last);
        // Another device's ack does not touch Bob's b1 mailbox.
        assert_eq!(
            f.service
                .ack(&caller("bob", "b2"), u64::MAX >> 2)
                .await
                .expect("ack"),
            0
        );
    }
}
