//! The chat service's storage: one mailbox per recipient device, each with a strictly increasing
//! sequence number, the dedupe keys that make a retried send idempotent, and group membership
//! (which changes in the same transaction as the notices it puts in the members' mailboxes).
//!
//! The trait has whole-operation methods (a send is one call, atomic across every recipient
//! mailbox), so a document store fits as well as SQLite: the MongoDB backend
//! ([`MongoChatStore`]) keeps a counter document per mailbox, an envelope collection
//! sharded by `device_id` and a dedupe collection, writing a send in one multi-document
//! transaction.
//!
//! This module holds the [`ChatStore`] trait and its records; the backends are [`sqlite`] and
//! [`mongo`], and `suite.rs` is the behavioural suite both pass.

use async_trait::async_trait;

pub mod mongo;
pub mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

pub use mongo::MongoChatStore;
pub use sqlite::SqliteChatStore;

/// One ciphertext for one recipient device, as a send stores it. (`Bytes`, so a group message
/// fanned out to a thousand devices is held in memory once.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    pub recipient_user_id: String,
    pub recipient_device_id: String,
    pub ciphertext: bytes::Bytes,
}

/// What an envelope carries (`juntos.chat.v1.EnvelopeKind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EnvelopeKind {
    /// A pairwise ciphertext (`Chat.Send`).
    #[default]
    Direct,
    /// A sender-key ciphertext fanned out to a group's member devices.
    Group,
    /// A signed membership notice written by the service.
    Notice,
}

impl EnvelopeKind {
    /// The number stored for this kind (the wire enum's value).
    pub fn code(self) -> i32 {
        match self {
            Self::Direct => 0,
            Self::Group => 1,
            Self::Notice => 2,
        }
    }

    /// The kind stored as `code`.
    pub fn from_code(code: i64) -> Result<Self, StoreError> {
        match code {
            0 => Ok(Self::Direct),
            1 => Ok(Self::Group),
            2 => Ok(Self::Notice),
            _ => Err(StoreError::Corrupt(format!("unknown envelope kind {code}"))),
        }
    }
}

/// Everything one `Chat.Send` or `Groups.SendGroup` stores, or the notices of a group change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendBatch {
    pub sender_user_id: String,
    pub sender_device_id: String,
    /// The sender's id for the message; with `sender_user_id`, the dedupe key.
    pub client_msg_id: String,
    /// One per recipient device; device ids are distinct.
    pub envelopes: Vec<OutgoingEnvelope>,
    /// The server time recorded with the message (Unix ms).
    pub now_ms: i64,
    /// Recorded with every envelope.
    pub kind: EnvelopeKind,
    /// The group a group message or notice is about (empty for direct messages), recorded with
    /// every envelope.
    pub group_id: String,
    /// For a group message: the group version its recipients were read at. The store refuses
    /// the send ([`SendOutcome::StaleGroup`]) unless the group still has this version, so no
    /// message reaches a member removed in between.
    pub group_version: Option<u64>,
}

/// What [`ChatStore::send`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// Every envelope was stored.
    Stored {
        /// The batch's `now_ms`.
        server_time_ms: i64,
        /// The sequence number each envelope got in its mailbox, in the order of
        /// `SendBatch::envelopes`.
        seqs: Vec<u64>,
    },
    /// The dedupe key was already used: nothing was stored; this is the first send's time.
    Duplicate { server_time_ms: i64 },
    /// The group of a group message changed (or is gone) since its recipients were read:
    /// nothing was stored.
    StaleGroup,
}

/// A stored envelope, as its recipient device receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    pub seq: u64,
    pub sender_user_id: String,
    pub sender_device_id: String,
    pub client_msg_id: String,
    pub server_time_ms: i64,
    pub ciphertext: Vec<u8>,
    pub kind: EnvelopeKind,
    /// Empty for direct messages.
    pub group_id: String,
}

/// A page of one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first.
    pub envelopes: Vec<StoredEnvelope>,
    /// Whether more envelopes follow the last one.
    pub more: bool,
}

/// A member's standing in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRole {
    Member,
    Admin,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub user_id: String,
    pub role: GroupRole,
    /// When the user joined (Unix ms).
    pub joined_ms: i64,
}

/// A group as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Random, chosen by the service.
    pub group_id: String,
    pub name: String,
    /// Raised by one on every change; the store compares it to detect concurrent changes.
    pub version: u64,
    pub created_ms: i64,
    /// Sorted by user id, distinct.
    pub members: Vec<GroupMember>,
}

impl Group {
    /// The member `user_id`, if they are one.
    pub fn member(&self, user_id: &str) -> Option<&GroupMember> {
        self.members
            .binary_search_by(|m| m.user_id.as_str().cmp(user_id))
            .ok()
            .map(|i| &self.members[i])
    }
}

/// A group as one of its members lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub name: String,
    pub version: u64,
    pub member_count: u32,
    /// The listing member's role.
    pub role: GroupRole,
}

/// One change of a group, written with its notices in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWrite {
    /// The group after the change (its `version` one above `base_version`); no members: the
    /// group is deleted.
    pub group: Group,
    /// The version the change was made from; `None` when creating (the id must be new).
    pub base_version: Option<u64>,
    /// The notices for every device concerned (kind [`EnvelopeKind::Notice`]).
    pub notices: SendBatch,
}

/// The first `limit` of `rows` (read with a limit of `limit + 1`), and whether more follow.
fn first_page<T>(mut rows: Vec<T>, limit: u32) -> (Vec<T>, bool) {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    (rows, more)
}

/// A storage failure (the store error every Juntos service shares).
pub use juntos_store::StoreError;

/// Mailboxes and dedupe keys. Every method is atomic on its own.
#[async_trait]
pub trait ChatStore: Send + Sync + 'static {
    /// Stores every envelope of `batch` in its recipient's mailbox, each under the next sequence
    /// number of that mailbox, and records the dedupe key `(sender_user_id, client_msg_id)` with
    /// `now_ms`, all or nothing. Returns only once the write is durable. When the dedupe key is
    /// already recorded, stores nothing and answers [`SendOutcome::Duplicate`] with the first
    /// send's time.
    async fn send(&self, batch: SendBatch) -> Result<SendOutcome, StoreError>;

    /// The time a send with this dedupe key was stored, if one was (and not pruned yet).
    async fn sent_at(
        &self,
        sender_user_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>, StoreError>;

    /// Up to `limit` envelopes of `device_id`'s mailbox with `seq > after_seq`, oldest first,
    /// and whether more follow.
    async fn fetch(&self, device_id: &str, after_seq: u64, limit: u32) -> Result<Page, StoreError>;

    /// Deletes every envelope of `device_id`'s mailbox with `seq <= up_to_seq`; returns how
    /// many there were. Sequence numbers are never reused after a delete.
    async fn ack(&self, device_id: &str, up_to_seq: u64) -> Result<u64, StoreError>;

    /// The highest sequence number ever given out in `device_id`'s mailbox (0 if none), whether
    /// or not that envelope is still stored.
    async fn last_seq(&self, device_id: &str) -> Result<u64, StoreError>;

    /// Forgets dedupe keys recorded before `older_than_ms`; returns how many.
    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<u64, StoreError>;

    /// Writes `write.group` (creating, replacing or, with no members, deleting it) and stores
    /// `write.notices` as [`ChatStore::send`] would, all or nothing, only if the group's current
    /// version is `write.base_version` (absent for `None`). Returns whether it wrote; `false`
    /// means another change came first and nothing was written.
    async fn write_group(&self, write: GroupWrite) -> Result<bool, StoreError>;

    /// The group `group_id` with its members, if it exists.
    async fn group(&self, group_id: &str) -> Result<Option<Group>, StoreError>;

    /// Up to `limit` of the groups `user_id` is in with ids after `after_group_id`, by id, and
    /// whether more follow.
    async fn groups_of(
        &self,
        user_id: &str,
        after_group_id: &str,
        limit: u32,
    ) -> Result<(Vec<GroupListing>, bool), StoreError>;

    /// How many groups each of `user_ids` is in (users in none are absent).
    async fn group_counts(
        &self,
        user_ids: &[String],
    ) -> Result<std::collections::HashMap<String, u64>, StoreError>;
}
