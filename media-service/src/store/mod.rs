//! The status service's storage: statuses, each with the audience its poster chose, kept until
//! they expire.
//!
//! The trait has whole-operation methods (a post is one call that checks the poster's rolling
//! limit, dedupes and writes, atomically), so a document store fits as well as SQLite:
//! [`SqliteStatusStore`] is the embedded backend (on `juntos_store::sqlite`: one writer thread,
//! so a check and the write after it never interleave with another post), [`MongoStatusStore`]
//! the shared one (a transaction that also writes a per-poster document, so two concurrent posts
//! of one poster conflict and one runs again).

mod blobs_mongo;
mod blobs_sqlite;
#[cfg(test)]
pub(crate) mod blobs_suite;
mod mongo;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use async_trait::async_trait;

pub use self::mongo::{COLLECTIONS, DEFAULT_DATABASE, MongoStatusStore};
pub use self::sqlite::SqliteStatusStore;

/// A status to store, as the service made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStatus {
    /// The server's id (see [`crate::status_id`]): sorts by posting time.
    pub status_id: String,
    pub poster_user_id: String,
    pub poster_device_id: String,
    /// With `poster_user_id`, the dedupe key of the post.
    pub client_status_id: String,
    pub ciphertext: Vec<u8>,
    /// Who besides the poster may see it: distinct user ids, never the poster.
    pub audience: Vec<String>,
    /// Unix ms; also "now" for the rolling limit.
    pub posted_ms: i64,
    /// Unix ms; gone from listings from this instant, removed by the sweeper after it.
    pub expires_ms: i64,
}

/// A stored status (its audience is not read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatus {
    pub status_id: String,
    pub poster_user_id: String,
    pub poster_device_id: String,
    pub client_status_id: String,
    /// Empty for a status its poster deleted (only ever seen by a retried post).
    pub ciphertext: Vec<u8>,
    pub posted_ms: i64,
    pub expires_ms: i64,
}

/// The rolling limit a post is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostLimit {
    /// Most statuses a poster may have posted within `window_ms` before a post.
    pub max_posts: u32,
    /// The window, in ms. No longer than a status lives, so every status in the window is still
    /// stored (deleted ones as tombstones).
    pub window_ms: i64,
}

/// What [`StatusStore::post`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// Stored.
    Posted(StoredStatus),
    /// The poster already posted an unexpired status with this `client_status_id`: nothing was
    /// stored; this is the first one.
    Duplicate(StoredStatus),
    /// The poster has `max_posts` statuses in the window: nothing was stored. A slot frees when
    /// the status posted at `frees_with_posted_ms` leaves the window.
    Limit { frees_with_posted_ms: i64 },
}

/// A page of statuses, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusPage {
    pub statuses: Vec<StoredStatus>,
    /// Whether older visible statuses follow the last one.
    pub more: bool,
}

/// A storage failure: the one every Juntos store shares.
pub use juntos_store::StoreError;

/// Statuses and their audiences. Every method is atomic on its own, and an answered write is
/// durable.
#[async_trait]
pub trait StatusStore: Send + Sync + 'static {
    /// Stores `status` with its audience, all or nothing, unless:
    /// * the poster has an unexpired status (deleted or not) with the same `client_status_id`:
    ///   answers [`PostOutcome::Duplicate`] with it (an expired one is replaced);
    /// * the poster has `limit.max_posts` or more statuses (deleted ones included) posted after
    ///   `status.posted_ms - limit.window_ms`: answers [`PostOutcome::Limit`].
    ///
    /// The check and the write are one step: concurrent posts of one poster never get more
    /// than `max_posts` into a window, even from several processes.
    async fn post(&self, status: NewStatus, limit: PostLimit) -> Result<PostOutcome, StoreError>;

    /// Up to `limit` statuses `viewer_user_id` may see (its own, or ones whose audience holds
    /// it) that are neither deleted nor expired at `now_ms` (`expires_ms > now_ms`), with ids
    /// below `before_status_id` (all when `None`), newest (highest id) first, and whether more
    /// follow.
    async fn list_visible(
        &self,
        viewer_user_id: &str,
        now_ms: i64,
        before_status_id: Option<&str>,
        limit: u32,
    ) -> Result<StatusPage, StoreError>;

    /// Deletes `poster_user_id`'s status `status_id`: its ciphertext and audience go at once, a
    /// tombstone stays until expiry (it still counts towards the rolling limit). Returns whether
    /// there was such a status, not deleted and unexpired at `now_ms`.
    async fn delete(
        &self,
        poster_user_id: &str,
        status_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Removes every status (tombstones included) with `expires_ms <= now_ms`, with its
    /// audience; returns how many statuses.
    async fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError>;
}

/// A blob the service handed out an id for: an upload in progress, or a complete blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    /// The blob store key (a random id the service chose).
    pub blob_id: String,
    pub owner_user_id: String,
    /// A `juntos.media.v1.MediaKind`.
    pub kind: i32,
    /// The declared (and, once complete, actual) size in bytes.
    pub size: u64,
    pub part_size: u64,
    /// Parts stored for good, from the first.
    pub parts_done: u64,
    /// The blob store's upload handle while the upload is unfinished; `None` once complete.
    pub upload: Option<String>,
    /// SHA-256 of the capability (the capability itself is never stored).
    pub capability_hash: Vec<u8>,
    pub created_ms: i64,
    /// Unix ms: an unfinished upload is abandoned, or a complete blob deleted, at this time.
    pub expires_ms: i64,
}

impl BlobRecord {
    pub fn complete(&self) -> bool {
        self.upload.is_none()
    }
}

/// A user's profile photo: the blob keys of its two sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePhotoRecord {
    pub user_id: String,
    /// Changes with every photo.
    pub version: String,
    pub large_key: String,
    pub small_key: String,
    pub updated_ms: i64,
}

/// The media service's index of blobs and profile photos (the bytes are in a
/// [`BlobStore`](crate::BlobStore)). Every method is atomic on its own.
#[async_trait]
pub trait BlobIndex: Send + Sync + 'static {
    /// Records a new upload, unless its owner already has `max_pending` unfinished ones:
    /// then nothing is stored and the answer is `false`.
    async fn insert_blob(&self, record: BlobRecord, max_pending: u32) -> Result<bool, StoreError>;

    /// How many bytes `owner_user_id` declared in uploads created after `since_ms` that are
    /// still known (complete or not), and when the oldest of them was created.
    async fn uploaded_since(
        &self,
        owner_user_id: &str,
        since_ms: i64,
    ) -> Result<(u64, Option<i64>), StoreError>;

    /// The blob, complete or not.
    async fn blob(&self, blob_id: &str) -> Result<Option<BlobRecord>, StoreError>;

    /// Marks one more part stored, if `parts_done` is still `before` (two streams writing one
    /// upload cannot both count a part); returns whether it did.
    async fn commit_part(&self, blob_id: &str, before: u64) -> Result<bool, StoreError>;

    /// Marks an unfinished upload complete, to be deleted at `expires_ms`; returns whether it
    /// was unfinished.
    async fn complete_blob(&self, blob_id: &str, expires_ms: i64) -> Result<bool, StoreError>;

    /// Brings the expiry of `owner_user_id`'s complete blobs among `blob_ids` forward to
    /// `expires_ms` (never later than it was); returns how many it changed.
    async fn expire_blobs_at(
        &self,
        owner_user_id: &str,
        blob_ids: &[String],
        expires_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Forgets the blob if it is still as `seen` left it (same `expires_ms` and completeness: a
    /// sweep never forgets an upload that completed, or a blob whose expiry moved, since it was
    /// listed); returns whether it did. Its bytes must be gone, or going, from the blob store.
    async fn remove_blob(&self, seen: &BlobRecord) -> Result<bool, StoreError>;

    /// Up to `limit` blobs with `expires_ms <= now_ms`, in `(expires_ms, blob_id)` order, after
    /// `after` (that pair of the last one a previous page returned).
    async fn expired_blobs(
        &self,
        now_ms: i64,
        after: Option<&(i64, String)>,
        limit: u32,
    ) -> Result<Vec<BlobRecord>, StoreError>;

    /// Which of `keys` are blob store keys this index refers to (blobs and profile photos).
    async fn known_keys(&self, keys: Vec<String>) -> Result<Vec<String>, StoreError>;

    /// Sets the user's profile photo; returns the one it replaced.
    async fn set_profile_photo(
        &self,
        photo: ProfilePhotoRecord,
    ) -> Result<Option<ProfilePhotoRecord>, StoreError>;

    async fn profile_photo(&self, user_id: &str) -> Result<Option<ProfilePhotoRecord>, StoreError>;

    /// Removes the user's profile photo; returns it.
    async fn delete_profile_photo(
        &self,
        user_id: &str,
    ) -> Result<Option<ProfilePhotoRecord>, StoreError>;
}
