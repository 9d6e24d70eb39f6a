//! The chat service's storage: one mailbox per recipient device, each with a strictly increasing
//! sequence number, and the dedupe keys that make a retried send idempotent.
//!
//! The trait has whole-operation methods (a send is one call, atomic across every recipient
//! mailbox), so a document store fits as well as SQLite: the MongoDB backend
//! ([`super::MongoChatStore`]) keeps a counter document per mailbox, an envelope collection
//! sharded by `device_id` and a dedupe collection, writing a send in one multi-document
//! transaction.

use async_trait::async_trait;

/// One ciphertext for one recipient device, as a send stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEnvelope {
    pub recipient_user_id: String,
    pub recipient_device_id: String,
    pub ciphertext: Vec<u8>,
}

/// Everything one `Chat.Send` stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendBatch {
    pub sender_user_id: String,
    pub sender_device_id: String,
    /// The sender's id for the message; with `sender_user_id`, the dedupe key.
    pub client_msg_id: String,
    /// One per recipient device; device ids are distinct.
    pub envelopes: Vec<OutgoingEnvelope>,
    /// The server time recorded with the message (Unix ms).
    pub now_ms: i64,
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
}

/// A page of one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first.
    pub envelopes: Vec<StoredEnvelope>,
    /// Whether more envelopes follow the last one.
    pub more: bool,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The MongoDB server or driver failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The writer is gone (the store is shutting down or its thread died).
    #[error("the store's writer is not running")]
    WriterGone,
    /// A blocking task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The database was written by a newer version of Juntos.
    #[error("database schema version {found} is newer than this build knows ({latest})")]
    SchemaTooNew { found: i64, latest: i64 },
    /// Stored data breaks an invariant.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

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
}
