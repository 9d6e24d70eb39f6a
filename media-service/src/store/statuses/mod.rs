//! The status service's storage: statuses, each with the audience its poster chose, kept until
//! they expire.
//!
//! The trait has whole-operation methods (a post is one call that checks the poster's rolling
//! limit, dedupes and writes, atomically), so a document store fits as well as SQLite:
//! [`SqliteStatusStore`](super::SqliteStatusStore) is the embedded backend (on
//! `juntos_store::sqlite`: one writer thread, so a check and the write after it never interleave
//! with another post), [`MongoStatusStore`](super::MongoStatusStore) the shared one (a
//! transaction that also writes a per-poster document, so two concurrent posts of one poster
//! conflict and one runs again).

mod mongo;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use async_trait::async_trait;

pub(super) use self::mongo::create_indexes;
use super::StoreError;

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

impl NewStatus {
    /// The status as stored, which a post that stored it answers with.
    fn stored(&self) -> StoredStatus {
        StoredStatus {
            status_id: self.status_id.clone(),
            poster_user_id: self.poster_user_id.clone(),
            poster_device_id: self.poster_device_id.clone(),
            client_status_id: self.client_status_id.clone(),
            ciphertext: self.ciphertext.clone(),
            posted_ms: self.posted_ms,
            expires_ms: self.expires_ms,
        }
    }
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

/// The newest `limit` of two newest-first lists (each holding up to `limit + 1`), and whether
/// more follow: both backends list a viewer's statuses as those addressed to it and its own.
fn merge_newest_first(a: Vec<StoredStatus>, b: Vec<StoredStatus>, limit: u32) -> StatusPage {
    let mut all = a;
    all.extend(b);
    all.sort_by(|x, y| y.status_id.cmp(&x.status_id));
    all.dedup_by(|x, y| x.status_id == y.status_id);
    let limit = limit as usize;
    let more = all.len() > limit;
    all.truncate(limit);
    StatusPage {
        statuses: all,
        more,
    }
}
