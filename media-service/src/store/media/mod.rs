//! The media service's index: a record per blob (an upload in progress, or a complete blob) and
//! per user's profile photo, kept in the same database as the statuses (SQLite tables, MongoDB
//! collections `blobs` and `profile_photos`); the bytes are in a [`BlobStore`](crate::BlobStore).

mod mongo;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use async_trait::async_trait;

pub(super) use self::mongo::create_indexes;
use super::StoreError;

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

/// A size or count as both backends store it (a signed 64-bit integer), `i64::MAX` at most.
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
