//! [`ChatStore`] on MongoDB: the shared backend every chat pod uses (a replica set or a sharded
//! cluster).
//!
//! Collections (shard keys and why are in ARCHITECTURE.md):
//! * `envelopes`: one document per envelope in a device's mailbox: `device_id`, `seq` (Int64),
//!   `recipient_user_id`, `sender_user_id`, `sender_device_id`, `client_msg_id`,
//!   `server_time_ms`, `ciphertext` (Binary); unique index `(device_id, seq)`;
//! * `mailbox_counters`: `_id` device id, `last_seq` (Int64), the highest sequence number ever
//!   given out in that mailbox; only ever raised by `$inc`, so a number is never handed out twice
//!   (not even after the envelopes are acked and deleted);
//! * `sends`: the dedupe keys: `sender_user_id`, `client_msg_id` (unique together),
//!   `server_time_ms`, `created_at` (a Date of the same instant, which pruning goes by);
//! * `groups`: one document per group: `_id` group id, `name`, `version` (Int64), `created_ms`,
//!   `members` (an array of `{user_id, admin, joined_ms}` sorted by user id, at most 1,024),
//!   `member_count`, `admins` (user ids), `sends` (a counter every group message raises);
//!   index `(members.user_id, _id)` lists a user's groups.
//!
//! A group change is one transaction: the conditional write of the group document
//! (`version` as read, or an insert for a new group) and its notices, stored like a send. A
//! group message's transaction first raises `sends` on the group document on condition that
//! `version` is unchanged: a change racing it conflicts on that document, so a message either
//! commits before a removal (and the removed member's devices get it before the notice) or is
//! refused as stale and fanned out again to the new membership.
//!
//! A send is one transaction (write concern majority, journaled): it inserts the dedupe key
//! first (a duplicate key means the send was already stored: the transaction is aborted and the
//! first send's time answered), raises each recipient mailbox's counter by its number of
//! envelopes with `find_one_and_update` + `$inc` + upsert (returning the new value, so the range
//! `last - n + 1 ..= last` is this send's), and inserts the envelopes. Two sends to one mailbox
//! conflict on its counter document; the loser's transaction fails with a
//! `TransientTransactionError` and runs again. Because the counter is raised inside the
//! transaction, envelopes become visible in sequence order: a reader never sees seq `n + 1`
//! while seq `n` is still to come (which an ack up to `n + 1` would otherwise lose).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use juntos_store::mongo::{
    Fields as _, MongoStore, backoff, binary, commit, corrupt, create_collections, index,
    is_duplicate_key, is_transient, majority, to_i64, unique_index,
};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Client, ClientSession, Collection, Database};

use super::{
    ChatStore, EnvelopeKind, Group, GroupListing, GroupMember, GroupRole, GroupWrite, Page,
    SendBatch, SendOutcome, StoreError, StoredEnvelope, first_page,
};

/// The names of the collections, for tests and operators.
pub const COLLECTIONS: &[&str] = &["envelopes", "mailbox_counters", "sends", "groups"];

/// How long a send keeps running its transaction again after write conflicts (many senders
/// writing to one mailbox at once conflict on its counter; each round one of them wins).
const SEND_RETRY_BUDGET: Duration = Duration::from_secs(60);

/// How many locks the mailboxes of one process are spread over (see [`MongoChatStore::send`]).
const SEND_LOCK_STRIPES: usize = 1024;

/// A [`ChatStore`] in one MongoDB database.
#[derive(Clone)]
pub struct MongoChatStore {
    client: Client,
    db: Database,
    /// Sends from this process to one mailbox take turns, so that they do not conflict on its
    /// counter in the database and run their transactions again and again (sends from other pods
    /// still can; they retry). Striped by a hash of the device id.
    send_locks: Arc<[tokio::sync::Mutex<()>]>,
}

impl std::fmt::Debug for MongoChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoChatStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

/// What one attempt of a transaction came to.
enum Attempt {
    /// Everything written; commit. The seqs in batch order.
    Stored(Vec<u64>),
    /// The dedupe key exists already; abort and answer the first send's time.
    Duplicate,
    /// The group changed since the request was made: abort, nothing to write.
    Refused,
    /// Two first sends to a new mailbox raced on creating its counter; abort and run again.
    Retry,
}

/// A write that runs as one transaction.
#[derive(Clone, Copy)]
enum Op<'a> {
    Send(&'a SendBatch),
    Group(&'a GroupWrite),
}

impl Op<'_> {
    /// The batch of envelopes the write stores.
    fn batch(&self) -> &SendBatch {
        match self {
            Op::Send(batch) => batch,
            Op::Group(write) => &write.notices,
        }
    }
}

/// Made with [`MongoStore::connect`] (or [`MongoStore::with_client`]).
impl MongoStore for MongoChatStore {
    async fn with_database(client: Client, db: Database) -> Result<Self, StoreError> {
        let send_locks = (0..SEND_LOCK_STRIPES)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        let store = Self {
            client,
            db,
            send_locks,
        };
        store.create_schema().await?;
        Ok(store)
    }
}

impl MongoChatStore {
    /// The database this store uses.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn create_schema(&self) -> Result<(), StoreError> {
        // Explicitly, so that no transaction has to create a collection.
        create_collections(&self.db, COLLECTIONS).await?;
        self.envelopes()
            .create_index(unique_index(
                doc! { "device_id": 1, "seq": 1 },
                "device_seq_unique",
            ))
            .await?;
        self.sends()
            .create_index(unique_index(
                doc! { "sender_user_id": 1, "client_msg_id": 1 },
                "sender_msg_unique",
            ))
            .await?;
        self.sends()
            .create_index(index(doc! { "created_at": 1 }, "by_created_at"))
            .await?;
        self.groups()
            .create_index(index(doc! { "members.user_id": 1, "_id": 1 }, "by_member"))
            .await?;
        Ok(())
    }

    fn envelopes(&self) -> Collection<Document> {
        self.db.collection("envelopes")
    }
    fn counters(&self) -> Collection<Document> {
        self.db.collection("mailbox_counters")
    }
    fn sends(&self) -> Collection<Document> {
        self.db.collection("sends")
    }
    fn groups(&self) -> Collection<Document> {
        self.db.collection("groups")
    }

    /// One attempt of [`Op`], inside the transaction of `s`.
    async fn attempt(&self, s: &mut ClientSession, op: Op<'_>) -> Result<Attempt, StoreError> {
        match op {
            Op::Send(batch) => {
                if let Some(version) = batch.group_version {
                    // The condition, and a write every change of the group conflicts with.
                    let raised = self
                        .groups()
                        .update_one(
                            doc! { "_id": &batch.group_id, "version": to_i64(version)? },
                            doc! { "$inc": { "sends": 1_i64 } },
                        )
                        .session(&mut *s)
                        .await?;
                    if raised.matched_count == 0 {
                        return Ok(Attempt::Refused);
                    }
                }
                self.send_in(s, batch).await
            }
            Op::Group(write) => {
                if !self.write_group_in(s, write).await? {
                    return Ok(Attempt::Refused);
                }
                if write.notices.envelopes.is_empty() {
                    return Ok(Attempt::Stored(Vec::new()));
                }
                match self.send_in(s, &write.notices).await? {
                    // A notice's key names the group version, which was just taken.
                    Attempt::Duplicate => Err(StoreError::Corrupt(
                        "a group notice's dedupe key exists".into(),
                    )),
                    other => Ok(other),
                }
            }
        }
    }

    /// The conditional write of a group document; whether it matched `write.base_version`.
    async fn write_group_in(
        &self,
        s: &mut ClientSession,
        write: &GroupWrite,
    ) -> Result<bool, StoreError> {
        let group = &write.group;
        let Some(base) = write.base_version else {
            return match self
                .groups()
                .insert_one(group_doc(group)?)
                .session(&mut *s)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if is_duplicate_key(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let current = doc! { "_id": &group.group_id, "version": to_i64(base)? };
        if group.members.is_empty() {
            let deleted = self.groups().delete_one(current).session(&mut *s).await?;
            return Ok(deleted.deleted_count == 1);
        }
        let replaced = self
            .groups()
            .replace_one(current, group_doc(group)?)
            .session(&mut *s)
            .await?;
        Ok(replaced.matched_count == 1)
    }

    /// Runs `op` as a transaction, again after transient conflicts, holding the send locks of
    /// its mailboxes.
    async fn run(&self, op: Op<'_>) -> Result<SendOutcome, StoreError> {
        let batch = op.batch();
        // The stripes of every recipient mailbox, taken in ascending order (no deadlock).
        let stripes: BTreeSet<usize> = batch
            .envelopes
            .iter()
            .map(|e| stripe(&e.recipient_device_id))
            .collect();
        let mut held = Vec::with_capacity(stripes.len());
        for i in stripes {
            held.push(self.send_locks[i].lock().await);
        }
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let retry_left = started.elapsed() < SEND_RETRY_BUDGET;
            let mut session = self.client.start_session().await?;
            session
                .start_transaction()
                .write_concern(majority())
                .await?;
            match self.attempt(&mut session, op).await {
                Ok(Attempt::Stored(seqs)) => match commit(&mut session).await {
                    Ok(()) => {
                        return Ok(SendOutcome::Stored {
                            server_time_ms: batch.now_ms,
                            seqs,
                        });
                    }
                    Err(e) if retry_left && is_transient(&e) => {}
                    Err(e) => return Err(e),
                },
                Ok(Attempt::Refused) => {
                    let _ = session.abort_transaction().await;
                    return Ok(SendOutcome::StaleGroup);
                }
                Ok(Attempt::Duplicate) => {
                    let _ = session.abort_transaction().await;
                    if let Some(server_time_ms) = self
                        .sent_at(&batch.sender_user_id, &batch.client_msg_id)
                        .await?
                    {
                        return Ok(SendOutcome::Duplicate { server_time_ms });
                    }
                    // Pruned in between: the key is free again.
                    if !retry_left {
                        return Err(StoreError::Corrupt("dedupe key came and went".into()));
                    }
                }
                Ok(Attempt::Retry) => {
                    let _ = session.abort_transaction().await;
                    if !retry_left {
                        return Err(StoreError::Corrupt(
                            "mailbox counter creation kept conflicting".into(),
                        ));
                    }
                }
                Err(e) if retry_left && is_transient(&e) => {
                    let _ = session.abort_transaction().await;
                }
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    return Err(e);
                }
            }
            backoff(attempt).await;
        }
    }

    /// One attempt of [`ChatStore::send`], inside the transaction of `s`.
    async fn send_in(
        &self,
        s: &mut ClientSession,
        batch: &SendBatch,
    ) -> Result<Attempt, StoreError> {
        // The dedupe key first: a committed duplicate fails here with a duplicate key error, a
        // concurrent one with a write conflict (transient: run again, then see it committed).
        // Notices are exactly-once through their group's version, and never use (or collide
        // with) the senders' keys.
        if batch.kind != EnvelopeKind::Notice {
            let inserted = self
                .sends()
                .insert_one(doc! {
                    "sender_user_id": &batch.sender_user_id,
                    "client_msg_id": &batch.client_msg_id,
                    "server_time_ms": batch.now_ms,
                    "created_at": DateTime::from_millis(batch.now_ms),
                })
                .session(&mut *s)
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_duplicate_key(&e) => return Ok(Attempt::Duplicate),
                Err(e) => return Err(e.into()),
            }
        }
        // A contiguous range per mailbox, in a fixed order of mailboxes.
        let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
        for envelope in &batch.envelopes {
            *wanted.entry(&envelope.recipient_device_id).or_default() += 1;
        }
        let mut next: BTreeMap<&str, u64> = BTreeMap::new();
        for (device_id, n) in wanted {
            let raised = self
                .counters()
                .find_one_and_update(
                    doc! { "_id": device_id },
                    doc! { "$inc": { "last_seq": to_i64(n)? } },
                )
                .upsert(true)
                .return_document(ReturnDocument::After)
                .session(&mut *s)
                .await;
            let counter = match raised {
                Ok(Some(counter)) => counter,
                Ok(None) => {
                    return Err(StoreError::Corrupt(
                        "counter upsert returned nothing".into(),
                    ));
                }
                Err(e) if is_duplicate_key(&e) => return Ok(Attempt::Retry),
                Err(e) => return Err(e.into()),
            };
            let last = counter.u64_field("last_seq")?;
            let first = last
                .checked_sub(n - 1)
                .filter(|first| *first >= 1)
                .ok_or_else(|| StoreError::Corrupt(format!("mailbox counter {last} below {n}")))?;
            next.insert(device_id, first);
        }
        let mut seqs = Vec::with_capacity(batch.envelopes.len());
        let mut documents = Vec::with_capacity(batch.envelopes.len());
        for envelope in &batch.envelopes {
            let slot = next
                .get_mut(envelope.recipient_device_id.as_str())
                .ok_or_else(|| StoreError::Corrupt("no range for a recipient".into()))?;
            let seq = *slot;
            *slot += 1;
            seqs.push(seq);
            documents.push(doc! {
                "device_id": &envelope.recipient_device_id,
                "seq": to_i64(seq)?,
                "recipient_user_id": &envelope.recipient_user_id,
                "sender_user_id": &batch.sender_user_id,
                "sender_device_id": &batch.sender_device_id,
                "client_msg_id": &batch.client_msg_id,
                "server_time_ms": batch.now_ms,
                "ciphertext": binary(&envelope.ciphertext),
                "kind": batch.kind.code(),
                "group_id": &batch.group_id,
            });
        }
        if !documents.is_empty() {
            self.envelopes()
                .insert_many(documents)
                .session(&mut *s)
                .await?;
        }
        Ok(Attempt::Stored(seqs))
    }
}

#[async_trait]
impl ChatStore for MongoChatStore {
    async fn send(&self, batch: SendBatch) -> Result<SendOutcome, StoreError> {
        self.run(Op::Send(&batch)).await
    }

    async fn sent_at(
        &self,
        sender_user_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.sends()
            .find_one(doc! { "sender_user_id": sender_user_id, "client_msg_id": client_msg_id })
            .await?
            .map(|d| d.i64_field("server_time_ms"))
            .transpose()
    }

    async fn fetch(&self, device_id: &str, after_seq: u64, limit: u32) -> Result<Page, StoreError> {
        let envelopes: Vec<StoredEnvelope> = self
            .envelopes()
            .find(doc! { "device_id": device_id, "seq": { "$gt": seq_bound(after_seq) } })
            .sort(doc! { "seq": 1 })
            .limit(i64::from(limit) + 1)
            .await?
            .map_err(StoreError::from)
            .and_then(|d| async move { envelope_from_doc(&d) })
            .try_collect()
            .await?;
        let (envelopes, more) = first_page(envelopes, limit);
        Ok(Page { envelopes, more })
    }

    async fn ack(&self, device_id: &str, up_to_seq: u64) -> Result<u64, StoreError> {
        let deleted = self
            .envelopes()
            .delete_many(doc! { "device_id": device_id, "seq": { "$lte": seq_bound(up_to_seq) } })
            .await?;
        Ok(deleted.deleted_count)
    }

    async fn last_seq(&self, device_id: &str) -> Result<u64, StoreError> {
        match self.counters().find_one(doc! { "_id": device_id }).await? {
            Some(d) => d.u64_field("last_seq"),
            None => Ok(0),
        }
    }

    async fn write_group(&self, write: GroupWrite) -> Result<bool, StoreError> {
        match self.run(Op::Group(&write)).await? {
            SendOutcome::Stored { .. } => Ok(true),
            SendOutcome::StaleGroup => Ok(false),
            SendOutcome::Duplicate { .. } => Err(StoreError::Corrupt(
                "a group notice's dedupe key exists".into(),
            )),
        }
    }

    async fn group(&self, group_id: &str) -> Result<Option<Group>, StoreError> {
        self.groups()
            .find_one(doc! { "_id": group_id })
            .await?
            .map(|d| group_from_doc(&d))
            .transpose()
    }

    async fn groups_of(
        &self,
        user_id: &str,
        after_group_id: &str,
        limit: u32,
    ) -> Result<(Vec<GroupListing>, bool), StoreError> {
        let listings: Vec<GroupListing> = self
            .groups()
            .find(doc! { "members.user_id": user_id, "_id": { "$gt": after_group_id } })
            .projection(doc! { "name": 1, "version": 1, "member_count": 1, "admins": 1 })
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit) + 1)
            .await?
            .map_err(StoreError::from)
            .and_then(|d| async move {
                let admin = d
                    .get_array("admins")
                    .map_err(|e| corrupt("admins", e))?
                    .iter()
                    .any(|a| a.as_str() == Some(user_id));
                Ok(GroupListing {
                    group_id: d.string_field("_id")?,
                    name: d.string_field("name")?,
                    version: d.u64_field("version")?,
                    member_count: d.u32_field("member_count")?,
                    role: if admin {
                        GroupRole::Admin
                    } else {
                        GroupRole::Member
                    },
                })
            })
            .try_collect()
            .await?;
        Ok(first_page(listings, limit))
    }

    async fn group_counts(
        &self,
        user_ids: &[String],
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let mut counts = std::collections::HashMap::new();
        for user_id in user_ids {
            let n = self
                .groups()
                .count_documents(doc! { "members.user_id": user_id })
                .await?;
            if n > 0 {
                counts.insert(user_id.clone(), n);
            }
        }
        Ok(counts)
    }

    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let deleted = self
            .sends()
            .delete_many(doc! { "created_at": { "$lt": DateTime::from_millis(older_than_ms) } })
            .await?;
        Ok(deleted.deleted_count)
    }
}

/// The send lock stripe of a mailbox.
fn stripe(device_id: &str) -> usize {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    device_id.hash(&mut hasher);
    // The remainder is below SEND_LOCK_STRIPES, which fits in usize.
    usize::try_from(hasher.finish() % SEND_LOCK_STRIPES as u64).unwrap_or(0)
}

/// A sequence number as a query bound: every stored number is at most `i64::MAX`.
fn seq_bound(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn group_doc(group: &Group) -> Result<Document, StoreError> {
    let members: Vec<Bson> = group
        .members
        .iter()
        .map(|m| {
            Bson::Document(doc! {
                "user_id": &m.user_id,
                "admin": m.role == GroupRole::Admin,
                "joined_ms": m.joined_ms,
            })
        })
        .collect();
    let admins: Vec<&str> = group
        .members
        .iter()
        .filter(|m| m.role == GroupRole::Admin)
        .map(|m| m.user_id.as_str())
        .collect();
    Ok(doc! {
        "_id": &group.group_id,
        "name": &group.name,
        "version": to_i64(group.version)?,
        "created_ms": group.created_ms,
        "member_count": i64::try_from(group.members.len()).unwrap_or(i64::MAX),
        "admins": admins,
        "members": members,
        "sends": 0_i64,
    })
}

fn group_from_doc(d: &Document) -> Result<Group, StoreError> {
    let members = d
        .get_array("members")
        .map_err(|e| corrupt("members", e))?
        .iter()
        .map(|m| {
            let m = m
                .as_document()
                .ok_or_else(|| corrupt("members", "not a document"))?;
            Ok(GroupMember {
                user_id: m.string_field("user_id")?,
                role: if m.get_bool("admin").map_err(|e| corrupt("admin", e))? {
                    GroupRole::Admin
                } else {
                    GroupRole::Member
                },
                joined_ms: m.i64_field("joined_ms")?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Group {
        group_id: d.string_field("_id")?,
        name: d.string_field("name")?,
        version: d.u64_field("version")?,
        created_ms: d.i64_field("created_ms")?,
        members,
    })
}

fn envelope_from_doc(d: &Document) -> Result<StoredEnvelope, StoreError> {
    Ok(StoredEnvelope {
        seq: d.u64_field("seq")?,
        sender_user_id: d.string_field("sender_user_id")?,
        sender_device_id: d.string_field("sender_device_id")?,
        client_msg_id: d.string_field("client_msg_id")?,
        server_time_ms: d.i64_field("server_time_ms")?,
        ciphertext: d.bytes_field("ciphertext")?,
        // Envelopes stored before groups existed have neither field.
        kind: match d.get("kind") {
            None => EnvelopeKind::Direct,
            Some(_) => EnvelopeKind::from_code(d.i64_field("kind")?)?,
        },
        group_id: match d.get("group_id") {
            None => String::new(),
            Some(_) => d.string_field("group_id")?,
        },
    })
}

#[cfg(test)]
mod tests;
