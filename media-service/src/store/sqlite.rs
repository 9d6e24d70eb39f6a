//! [`StatusStore`] on SQLite (`<data-dir>/media.db`): the embedded default.
//!
//! The database is a `juntos_store::sqlite::Database`: one writer thread commits queued writes
//! (posts, deletes, sweep chunks, the blob index's writes) in batches of up to [`MAX_BATCH`],
//! one fsync per batch, and answers each only after the commit (`synchronous = FULL`: an
//! answered write survives `kill -9` and power loss); readers (listing) use a pool of read-only
//! connections. Because the writer runs writes one after another, a post's count of the
//! poster's recent statuses and its insert can never interleave with another post.
//!
//! The database file belongs to one process; two media pods never share it.

use std::path::Path;

use async_trait::async_trait;
use juntos_store::sqlite::{Database, Options};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{NewStatus, PostLimit, PostOutcome, StatusPage, StatusStore, StoreError, StoredStatus};

/// The schema migrations, in order; migration `i` (0-based) brings `user_version` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_statuses.sql"),
    include_str!("../../migrations/0002_blobs.sql"),
];

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 64;
/// Statuses removed per sweep write (each with up to 5,000 audience rows), so a large sweep
/// never stalls posts for long.
const SWEEP_CHUNK: i64 = 64;

/// A [`StatusStore`] (and [`BlobIndex`](super::BlobIndex)) in one SQLite database file.
#[derive(Clone)]
pub struct SqliteStatusStore {
    pub(super) db: Database,
}

impl std::fmt::Debug for SqliteStatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStatusStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl SqliteStatusStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// starts the writer thread, which stops once every clone of the store is dropped (after
    /// committing what was queued).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::open(
            path,
            Options {
                name: "media",
                migrations: MIGRATIONS,
                max_batch: MAX_BATCH,
            },
        )?;
        Ok(Self { db })
    }
}

const STATUS_COLUMNS: &str = "status_id, poster_user_id, poster_device_id, client_status_id, \
                              ciphertext, posted_ms, expires_ms";

fn status_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredStatus> {
    Ok(StoredStatus {
        status_id: r.get(0)?,
        poster_user_id: r.get(1)?,
        poster_device_id: r.get(2)?,
        client_status_id: r.get(3)?,
        ciphertext: r.get(4)?,
        posted_ms: r.get(5)?,
        expires_ms: r.get(6)?,
    })
}

fn apply_post(
    conn: &Connection,
    status: &NewStatus,
    limit: PostLimit,
) -> rusqlite::Result<PostOutcome> {
    let now = status.posted_ms;
    let existing = conn
        .prepare_cached(&format!(
            "SELECT {STATUS_COLUMNS} FROM statuses
             WHERE poster_user_id = ?1 AND client_status_id = ?2"
        ))?
        .query_row(
            params![status.poster_user_id, status.client_status_id],
            status_from_row,
        )
        .optional()?;
    if let Some(existing) = existing {
        if existing.expires_ms > now {
            return Ok(PostOutcome::Duplicate(existing));
        }
        // Expired (the sweeper has not come by yet): the id is free again.
        remove_status(conn, &existing.status_id)?;
    }

    let window_start = now.saturating_sub(limit.window_ms);
    let in_window: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM statuses WHERE poster_user_id = ?1 AND posted_ms > ?2",
        )?
        .query_row(params![status.poster_user_id, window_start], |r| r.get(0))?;
    if in_window >= i64::from(limit.max_posts) {
        // The status whose leaving the window brings the count below the limit (the oldest,
        // unless the limit was lowered since).
        let frees_with_posted_ms: i64 = conn
            .prepare_cached(
                "SELECT posted_ms FROM statuses WHERE poster_user_id = ?1 AND posted_ms > ?2
                 ORDER BY posted_ms LIMIT 1 OFFSET ?3",
            )?
            .query_row(
                params![
                    status.poster_user_id,
                    window_start,
                    in_window - i64::from(limit.max_posts)
                ],
                |r| r.get(0),
            )?;
        return Ok(PostOutcome::Limit {
            frees_with_posted_ms,
        });
    }

    conn.prepare_cached(
        "INSERT INTO statuses (status_id, poster_user_id, poster_device_id, client_status_id,
                               ciphertext, posted_ms, expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        status.status_id,
        status.poster_user_id,
        status.poster_device_id,
        status.client_status_id,
        status.ciphertext,
        status.posted_ms,
        status.expires_ms,
    ])?;
    let mut audience = conn.prepare_cached(
        "INSERT INTO status_audience (viewer_user_id, status_id) VALUES (?1, ?2)",
    )?;
    for viewer in &status.audience {
        audience.execute(params![viewer, status.status_id])?;
    }
    Ok(PostOutcome::Posted(StoredStatus {
        status_id: status.status_id.clone(),
        poster_user_id: status.poster_user_id.clone(),
        poster_device_id: status.poster_device_id.clone(),
        client_status_id: status.client_status_id.clone(),
        ciphertext: status.ciphertext.clone(),
        posted_ms: status.posted_ms,
        expires_ms: status.expires_ms,
    }))
}

/// Deletes one status row and its audience rows.
fn remove_status(conn: &Connection, status_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM status_audience WHERE status_id = ?1")?
        .execute(params![status_id])?;
    conn.prepare_cached("DELETE FROM statuses WHERE status_id = ?1")?
        .execute(params![status_id])?;
    Ok(())
}

fn apply_delete(
    conn: &Connection,
    poster_user_id: &str,
    status_id: &str,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached(
            "UPDATE statuses SET deleted = 1, ciphertext = X''
             WHERE status_id = ?1 AND poster_user_id = ?2 AND deleted = 0 AND expires_ms > ?3",
        )?
        .execute(params![status_id, poster_user_id, now_ms])?;
    if changed == 0 {
        return Ok(false);
    }
    conn.prepare_cached("DELETE FROM status_audience WHERE status_id = ?1")?
        .execute(params![status_id])?;
    Ok(true)
}

/// Removes up to [`SWEEP_CHUNK`] expired statuses with their audiences; returns how many.
fn apply_sweep_chunk(conn: &Connection, now_ms: i64) -> rusqlite::Result<u64> {
    let ids = conn
        .prepare_cached("SELECT status_id FROM statuses WHERE expires_ms <= ?1 LIMIT ?2")?
        .query_map(params![now_ms, SWEEP_CHUNK], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for id in &ids {
        remove_status(conn, id)?;
    }
    Ok(ids.len() as u64)
}

// === impl StatusStore ===

#[async_trait]
impl StatusStore for SqliteStatusStore {
    async fn post(&self, status: NewStatus, limit: PostLimit) -> Result<PostOutcome, StoreError> {
        self.db
            .write(move |conn, _| Ok(apply_post(conn, &status, limit)?))
            .await
    }

    async fn list_visible(
        &self,
        viewer_user_id: &str,
        now_ms: i64,
        before_status_id: Option<&str>,
        limit: u32,
    ) -> Result<StatusPage, StoreError> {
        let viewer = viewer_user_id.to_owned();
        let before = before_status_id.map(str::to_owned);
        self.db
            .read(move |conn| {
                // Status ids are ASCII digits and hex, so "~" sorts after every one of them.
                let before = before.as_deref().unwrap_or("~");
                let take = i64::from(limit) + 1;
                let addressed = conn
                    .prepare_cached(&format!(
                        "SELECT {} FROM status_audience a JOIN statuses s ON s.status_id = a.status_id
                         WHERE a.viewer_user_id = ?1 AND a.status_id < ?2
                           AND s.expires_ms > ?3 AND s.deleted = 0
                         ORDER BY a.status_id DESC LIMIT ?4",
                        prefixed("s.")
                    ))?
                    .query_map(params![viewer, before, now_ms, take], status_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let own = conn
                    .prepare_cached(&format!(
                        "SELECT {STATUS_COLUMNS} FROM statuses
                         WHERE poster_user_id = ?1 AND status_id < ?2
                           AND expires_ms > ?3 AND deleted = 0
                         ORDER BY status_id DESC LIMIT ?4"
                    ))?
                    .query_map(params![viewer, before, now_ms, take], status_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(merge_newest_first(addressed, own, limit))
            })
            .await
    }

    async fn delete(
        &self,
        poster_user_id: &str,
        status_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let (poster_user_id, status_id) = (poster_user_id.to_owned(), status_id.to_owned());
        self.db
            .write(move |conn, _| Ok(apply_delete(conn, &poster_user_id, &status_id, now_ms)?))
            .await
    }

    async fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let removed = self
                .db
                .write(move |conn, _| Ok(apply_sweep_chunk(conn, now_ms)?))
                .await?;
            total += removed;
            if removed < SWEEP_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

/// [`STATUS_COLUMNS`] with every column prefixed by `table`.
fn prefixed(table: &str) -> String {
    STATUS_COLUMNS
        .split(", ")
        .map(|c| format!("{table}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The newest `limit` of two newest-first lists (each holding up to `limit + 1`), and whether
/// more follow. Shared with the MongoDB backend, which lists the same two ways.
pub(super) fn merge_newest_first(
    a: Vec<StoredStatus>,
    b: Vec<StoredStatus>,
    limit: u32,
) -> StatusPage {
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

#[cfg(test)]
mod tests {
    use juntos_store::sqlite::migrate;

    use super::*;
    use crate::store::{blobs_suite, suite};

    fn fresh() -> (tempfile::TempDir, SqliteStatusStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStatusStore::open(&dir.path().join("media.db")).expect("open");
        (dir, store)
    }

    suite::status_store_suite!(fresh());
    blobs_suite::blob_index_suite!(fresh());

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).expect("count")
    }

    /// Deleting and sweeping remove the audience rows, not only the statuses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_and_sweep_remove_audience_rows() {
        let (dir, store) = fresh();
        for (i, id) in ["s1", "s2"].into_iter().enumerate() {
            let status = suite::new_status("alice", id, &["bob", "carol"], suite::T0 + i as i64);
            store.post(status, suite::LIMIT).await.expect("post");
        }
        let conn = Connection::open(dir.path().join("media.db")).expect("open");
        assert_eq!(count(&conn, "SELECT count(*) FROM status_audience"), 4);
        let first = suite::status_id_at(suite::T0, "s1");
        assert!(
            store
                .delete("alice", &first, suite::T0)
                .await
                .expect("delete")
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM status_audience"), 2);
        let removed = store
            .sweep_expired(suite::T0 + suite::DAY_MS + 10)
            .await
            .expect("sweep");
        assert_eq!(removed, 2, "the tombstone and the live one");
        assert_eq!(count(&conn, "SELECT count(*) FROM status_audience"), 0);
        assert_eq!(count(&conn, "SELECT count(*) FROM statuses"), 0);
    }

    /// A sweep larger than one chunk removes everything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sweep_spans_several_chunks() {
        let (_dir, store) = fresh();
        let n = SWEEP_CHUNK * 2 + 3;
        for i in 0..n {
            let poster = format!("u{}", i % 3);
            let status = suite::new_status(&poster, &format!("s{i}"), &["v"], suite::T0 + i);
            store.post(status, suite::LIMIT).await.expect("post");
        }
        let removed = store
            .sweep_expired(suite::T0 + suite::DAY_MS + n)
            .await
            .expect("sweep");
        assert_eq!(removed, u64::try_from(n).expect("small"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_keeps_statuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("media.db");
        let store = SqliteStatusStore::open(&path).expect("open");
        let status = suite::new_status("alice", "s1", &["bob"], suite::T0);
        store.post(status, suite::LIMIT).await.expect("post");
        drop(store);
        let store = SqliteStatusStore::open(&path).expect("reopen");
        let page = store
            .list_visible("bob", suite::T0, None, 10)
            .await
            .expect("list");
        assert_eq!(page.statuses.len(), 1);
    }

    #[test]
    fn migrations_set_the_version_once_and_refuse_newer_schemas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("media.db");
        let latest = i64::try_from(MIGRATIONS.len()).expect("few");
        {
            let mut conn = Connection::open(&path).expect("open");
            migrate(&mut conn, MIGRATIONS).expect("migrate");
            let v: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .expect("version");
            assert_eq!(v, latest);
            for table in ["statuses", "status_audience"] {
                let n: i64 = conn
                    .query_row(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                        [table],
                        |r| r.get(0),
                    )
                    .expect("count");
                assert_eq!(n, 1, "{table}");
            }
            // Running again is a no-op.
            migrate(&mut conn, MIGRATIONS).expect("again");
            conn.pragma_update(None, "user_version", latest + 1)
                .expect("bump");
        }
        let err = SqliteStatusStore::open(&path).expect_err("newer schema");
        assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == latest + 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_is_in_wal_mode() {
        let (dir, store) = fresh();
        let conn = Connection::open(dir.path().join("media.db")).expect("open");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        drop(store);
    }
}
