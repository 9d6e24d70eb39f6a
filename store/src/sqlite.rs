//! A SQLite database file as every Juntos service uses it.
//!
//! - **One writer thread** owns the only writing connection. Writes reach it over a bounded
//!   channel; it takes everything queued (up to [`Options::max_batch`] writes) and runs them in
//!   one `BEGIN IMMEDIATE` transaction, commits once, and only then answers each. One fsync
//!   covers the whole batch (group commit), and with `synchronous = FULL` an answered write
//!   survives `kill -9` and power loss. Should a write fail (none is expected to; a failure
//!   means a broken disk or database, or a bug), the transaction is rolled back and the batch
//!   runs again with each write in its own savepoint, so the failing write is refused alone and
//!   its neighbours still commit. A write is therefore a closure that may run twice: it must
//!   not have effects outside the database.
//! - Because the writer runs writes one after another, a write's reads and writes can never
//!   interleave with another write's: check-then-act steps (a limit, a version) are atomic.
//! - **Readers** use a small pool of read-only connections on the blocking thread pool: up to
//!   [`MAX_IDLE_READERS`] are kept open, more are opened when needed. WAL mode lets them read
//!   while the writer commits.
//! - **Migrations** are numbered SQL scripts: the database is at version N (`PRAGMA
//!   user_version`) once the first N have run, each in its own transaction.
//!
//! A database file belongs to one process; two pods never share it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use rusqlite;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, lock};

/// Read connections kept open between reads.
pub const MAX_IDLE_READERS: usize = 4;
/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`Database`] is opened.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Names the writer thread (`<name>-db-writer`) and the log lines about this database.
    pub name: &'static str,
    /// The schema migrations, in order; migration `i` (0-based) brings `user_version` to `i + 1`.
    pub migrations: &'static [&'static str],
    /// Most writes committed in one transaction; as many more may wait before writers wait too.
    pub max_batch: usize,
}

/// State shared by the writes of one transaction, fresh for each (see chat's mailbox counters:
/// the next sequence number of every mailbox the transaction touched, written once before the
/// commit). Most databases need none: `()`.
pub trait Batch: Default + Send + 'static {
    /// Runs in the transaction after its last write, before the commit.
    fn before_commit(&mut self, _conn: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Batch for () {}

/// A SQLite database: one writer thread with group commit, and a pool of readers.
pub struct Database<B: Batch = ()> {
    writer: mpsc::Sender<Box<dyn Job<B>>>,
    readers: Arc<Readers>,
}

impl<B: Batch> Clone for Database<B> {
    fn clone(&self) -> Self {
        Self {
            writer: self.writer.clone(),
            readers: Arc::clone(&self.readers),
        }
    }
}

impl<B: Batch> std::fmt::Debug for Database<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("path", &self.readers.path)
            .finish_non_exhaustive()
    }
}

impl<B: Batch> Database<B> {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// starts the writer thread, which stops once every clone of the database is dropped (after
    /// committing what was queued).
    pub fn open(path: &Path, options: Options) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        migrate(&mut conn, options.migrations)?;
        let readers = Arc::new(Readers {
            path: path.to_owned(),
            idle: Mutex::default(),
        });
        // Fail now rather than on the first read if readers cannot open the file.
        readers.put(readers.open()?);

        let max_batch = options.max_batch.max(1);
        let (writer, requests) = mpsc::channel(4 * max_batch);
        let name = options.name;
        std::thread::Builder::new()
            .name(format!("{name}-db-writer"))
            .spawn(move || writer_loop::<B>(conn, requests, max_batch, name))
            .map_err(|e| StoreError::Corrupt(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { writer, readers })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.readers.path
    }

    /// Runs `write` in the writer's next transaction and answers once it is committed.
    ///
    /// `write` may run twice (see the module documentation), so it must have no effect outside
    /// the database and the batch state.
    pub async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection, &mut B) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(FnJob {
            write,
            out: None,
            reply,
        });
        self.writer
            .send(job)
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Runs `read` on a read-only connection on the blocking thread pool.
    pub async fn read<T, F>(&self, read: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let conn = readers.take()?;
            let result = read(&conn);
            readers.put(conn);
            result
        })
        .await?
    }
}

/// Switches `conn` to WAL, failing if the file system cannot have it.
pub fn set_wal(conn: &Connection) -> Result<(), StoreError> {
    // `journal_mode` answers with the mode now in force.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Corrupt(format!(
            "could not enable WAL (journal mode {mode})"
        )));
    }
    Ok(())
}

// === migrations ===

/// Applies every migration after the database's `user_version`, each in its own transaction.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    migrate_to(conn, migrations, migrations.len())
}

/// Applies the migrations after the database's `user_version` up to the first `target` (tests
/// use it to build an older database), each in its own transaction. A database newer than
/// `migrations` is refused.
pub fn migrate_to(
    conn: &mut Connection,
    migrations: &[&str],
    target: usize,
) -> Result<(), StoreError> {
    let latest = i64::try_from(migrations.len()).expect("a handful of migrations");
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > latest {
            return Err(StoreError::SchemaTooNew {
                found: version,
                latest,
            });
        }
        let done = usize::try_from(version)
            .map_err(|_| StoreError::Corrupt("negative schema version".into()))?;
        if done >= target.min(migrations.len()) {
            return Ok(());
        }
        tx.execute_batch(migrations[done])?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// For a service's schema test: migrates a new database at `path` with `migrations`, checks that
/// it is then at the latest version with every table of `tables` and that migrating again is a
/// no-op, and sets its `user_version` one past the latest, which the service must refuse to open
/// ([`StoreError::SchemaTooNew`]). Returns that version; panics when a check fails.
pub fn check_migrations(path: &Path, migrations: &[&str], tables: &[&str]) -> i64 {
    let latest = i64::try_from(migrations.len()).expect("few");
    let mut conn = Connection::open(path).expect("open");
    migrate(&mut conn, migrations).expect("migrate");
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(v, latest);
    for table in tables {
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
    migrate(&mut conn, migrations).expect("again");
    conn.pragma_update(None, "user_version", latest + 1)
        .expect("bump");
    latest + 1
}

// === readers ===

/// The read connections.
struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    fn take(&self) -> Result<Connection, StoreError> {
        let idle = lock(&self.idle).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => self.open(),
        }
    }

    fn put(&self, conn: Connection) {
        let mut idle = lock(&self.idle);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }
}

// === writer ===

/// One write, run by the writer thread and answered after the commit.
trait Job<B>: Send {
    /// Runs the write (again, if it ran in a transaction that was rolled back).
    fn run(&mut self, conn: &Connection, batch: &mut B) -> Result<(), StoreError>;
    /// Sends the result, or `failure` when the write, its savepoint or the commit failed.
    fn answer(self: Box<Self>, failure: Option<StoreError>);
}

struct FnJob<T, F> {
    write: F,
    out: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<B, T, F> Job<B> for FnJob<T, F>
where
    T: Send,
    F: FnMut(&Connection, &mut B) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection, batch: &mut B) -> Result<(), StoreError> {
        self.out = Some((self.write)(conn, batch)?);
        Ok(())
    }

    fn answer(self: Box<Self>, failure: Option<StoreError>) {
        let result = match (failure, self.out) {
            (Some(e), _) => Err(e),
            (None, Some(out)) => Ok(out),
            (None, None) => Err(StoreError::Corrupt("a write did not run".into())),
        };
        // A caller that stopped waiting is no error.
        drop(self.reply.send(result));
    }
}

/// The writer thread: group commit until every sender is gone.
fn writer_loop<B: Batch>(
    mut conn: Connection,
    mut requests: mpsc::Receiver<Box<dyn Job<B>>>,
    max_batch: usize,
    name: &str,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch, name);
    }
}

/// Runs `jobs` in one transaction, then answers every one.
fn commit_batch<B: Batch>(conn: &mut Connection, jobs: &mut Vec<Box<dyn Job<B>>>, name: &str) {
    let failures = run_batch(conn, jobs, false).or_else(|e| {
        tracing::warn!(database = name, error = %e, "batch failed; retrying write by write");
        run_batch(conn, jobs, true)
    });
    match failures {
        Ok(failures) => {
            for (job, failure) in jobs.drain(..).zip(failures) {
                job.answer(failure);
            }
        }
        Err(e) => {
            tracing::error!(database = name, error = %e, "transaction failed");
            for job in jobs.drain(..) {
                job.answer(Some(StoreError::Corrupt(format!(
                    "transaction failed: {e}"
                ))));
            }
        }
    }
}

/// The transaction of [`commit_batch`]: each job's failure, in order. Without `isolate`, the
/// first failing job fails the whole transaction; with it, each job runs in its own savepoint
/// and a failing one is rolled back and reported alone.
fn run_batch<B: Batch>(
    conn: &mut Connection,
    jobs: &mut [Box<dyn Job<B>>],
    isolate: bool,
) -> Result<Vec<Option<StoreError>>, StoreError> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut state = B::default();
    let mut failures = Vec::with_capacity(jobs.len());
    for job in jobs.iter_mut() {
        if isolate {
            let sp = tx.savepoint()?;
            // Dropping the savepoint unreleased rolls it back.
            let result = job
                .run(&sp, &mut state)
                .and_then(|()| sp.commit().map_err(StoreError::from));
            failures.push(result.err());
        } else {
            // A failure fails the transaction; the caller runs the batch again isolated.
            job.run(&tx, &mut state)?;
            failures.push(None);
        }
    }
    state.before_commit(&tx)?;
    tx.commit()?;
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: &[&str] = &[
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);",
        "CREATE TABLE totals (id INTEGER PRIMARY KEY CHECK (id = 1), count INTEGER NOT NULL);",
    ];

    const OPTIONS: Options = Options {
        name: "test",
        migrations: MIGRATIONS,
        max_batch: 16,
    };

    /// Counts the items inserted by one transaction and adds them to `totals` before the commit.
    #[derive(Default)]
    struct Counted(i64);

    impl Batch for Counted {
        fn before_commit(&mut self, conn: &Connection) -> Result<(), StoreError> {
            conn.execute(
                "INSERT INTO totals (id, count) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET count = count + excluded.count",
                [self.0],
            )?;
            Ok(())
        }
    }

    fn insert(
        name: &str,
    ) -> impl FnMut(&Connection, &mut Counted) -> Result<i64, StoreError> + use<> {
        let name = name.to_owned();
        move |conn, counted| {
            conn.execute("INSERT INTO items (name) VALUES (?1)", [&name])?;
            counted.0 += 1;
            Ok(conn.last_insert_rowid())
        }
    }

    async fn total(db: &Database<Counted>) -> i64 {
        db.read(|conn| Ok(conn.query_row("SELECT count FROM totals", [], |r| r.get(0))?))
            .await
            .expect("read total")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_commit_in_batches_and_a_failing_write_fails_alone() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db: Database<Counted> =
            Database::open(&dir.path().join("t.db"), OPTIONS).expect("open");
        // Many concurrent writes, one of which breaks the unique constraint.
        let mut writes = Vec::new();
        for i in 0..50 {
            let db = db.clone();
            let name = if i == 25 {
                "item 0".to_owned()
            } else {
                format!("item {i}")
            };
            writes.push(tokio::spawn(async move { db.write(insert(&name)).await }));
        }
        let mut failed = 0;
        for write in writes {
            if write.await.expect("join").is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 1, "only the duplicate fails");
        assert_eq!(
            total(&db).await,
            49,
            "the batch state counted only committed writes"
        );
        let names: i64 = db
            .read(|conn| Ok(conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))?))
            .await
            .expect("count");
        assert_eq!(names, 49);
    }

    #[tokio::test]
    async fn an_answered_write_is_there_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        {
            let db: Database<Counted> = Database::open(&path, OPTIONS).expect("open");
            db.write(insert("kept")).await.expect("write");
        }
        let db: Database<Counted> = Database::open(&path, OPTIONS).expect("reopen");
        assert_eq!(total(&db).await, 1);
    }

    #[test]
    fn migrations_run_once_in_order_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).expect("open");
        migrate_to(&mut conn, MIGRATIONS, 1).expect("first migration");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, 1);
        migrate(&mut conn, MIGRATIONS).expect("the rest");
        migrate(&mut conn, MIGRATIONS).expect("nothing left to do");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, 2);
        let err = migrate(&mut conn, &MIGRATIONS[..1]).expect_err("newer than known");
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 2,
                    latest: 1
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn writes_after_the_last_clone_is_dropped_are_committed_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let db: Database<Counted> = Database::open(&path, OPTIONS).expect("open");
        let pending = {
            let db = db.clone();
            tokio::spawn(async move { db.write(insert("last")).await })
        };
        drop(db);
        pending.await.expect("join").expect("committed");
        let db: Database<Counted> = Database::open(&path, OPTIONS).expect("reopen");
        assert_eq!(total(&db).await, 1);
    }
}
