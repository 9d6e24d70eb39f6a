//! The SQLite media database (`<data-dir>/media.db`): the embedded default, holding both the
//! statuses ([`StatusStore`](super::StatusStore), `statuses/sqlite.rs`) and the blob index
//! ([`BlobIndex`](super::BlobIndex), `media/sqlite.rs`).
//!
//! The database is a `juntos_store::sqlite::Database`: one writer thread commits queued writes
//! (posts, deletes, sweep chunks, the blob index's writes) in batches of up to [`MAX_BATCH`],
//! one fsync per batch, and answers each only after the commit (`synchronous = FULL`: an
//! answered write survives `kill -9` and power loss); readers (listing) use a pool of read-only
//! connections.
//!
//! The database file belongs to one process; two media pods never share it.

use std::path::Path;

use juntos_store::sqlite::{Database, Options};

use super::StoreError;

/// The schema migrations, in order; migration `i` (0-based) brings `user_version` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_statuses.sql"),
    include_str!("../../migrations/0002_blobs.sql"),
];

/// Most writes committed in one transaction.
pub const MAX_BATCH: usize = 64;

/// A [`StatusStore`](super::StatusStore) (and [`BlobIndex`](super::BlobIndex)) in one SQLite
/// database file.
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

#[cfg(test)]
pub(super) mod tests {
    use juntos_store::sqlite::check_migrations;
    use rusqlite::Connection;

    use super::*;
    use crate::store::StatusStore as _;
    use crate::store::statuses::suite;

    /// A store in a fresh database, and the temporary directory it is in.
    pub(in crate::store) fn fresh() -> (tempfile::TempDir, SqliteStatusStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStatusStore::open(&dir.path().join("media.db")).expect("open");
        (dir, store)
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
        let newer = check_migrations(&path, MIGRATIONS, &["statuses", "status_audience"]);
        let err = SqliteStatusStore::open(&path).expect_err("newer schema");
        assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == newer));
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
