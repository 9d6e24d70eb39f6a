//! The client database (`<home>/client.db`, SQLite in WAL mode): the only code that touches it.
//!
//! Migrations are the numbered files in `client-core/migrations`, applied in order and tracked by
//! `PRAGMA user_version`. Secrets (identity keys, tokens) live here and nowhere else.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use juntos_store::sqlite;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::crypto::IdentityKeys;
use crate::error::{ClientError, Result};
use crate::model::session::{Session, Tokens};

pub(crate) mod groups;
pub(crate) mod media;
pub(crate) mod messaging;
pub(crate) mod statuses;

/// The migrations, in order: the database is at version N once the first N have run.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_messaging.sql"),
    include_str!("../../migrations/0003_groups.sql"),
    include_str!("../../migrations/0004_statuses.sql"),
    include_str!("../../migrations/0005_attachments.sql"),
];

/// A write transaction on the client database: every table's writes are methods on it (in the
/// module of that table), so what must change together changes in one transaction.
pub(crate) struct Tx<'a>(Transaction<'a>);

impl Tx<'_> {
    /// The transaction's connection, for the table modules.
    fn conn(&self) -> &Connection {
        &self.0
    }
}

/// The client database.
pub(crate) struct Store {
    // One connection: the client writes little, and a mutex keeps every write serialized.
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        sqlite::set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        sqlite::migrate(&mut conn, MIGRATIONS)?;
        restrict_permissions(path)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        juntos_store::lock(&self.conn)
    }

    /// Runs `work` in one immediate transaction; commits when it returns `Ok`.
    pub(crate) fn write<T>(&self, work: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = Tx(conn.transaction_with_behavior(TransactionBehavior::Immediate)?);
        let answer = work(&tx)?;
        tx.0.commit()?;
        Ok(answer)
    }

    /// Runs `read` on the connection (no transaction needed for single reads).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        read(&self.conn())
    }

    /// The stored identity keys, or `generate()`'s, stored first. Atomic, even across processes
    /// sharing the file, so a device never ends up with two identities.
    pub(crate) fn identity_or_insert(
        &self,
        generate: impl FnOnce() -> IdentityKeys,
    ) -> Result<IdentityKeys> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(keys) = read_identity(&tx)? {
            return Ok(keys);
        }
        let keys = generate();
        tx.execute(
            "INSERT INTO identity (id, signing_secret, dh_secret) VALUES (1, ?1, ?2)",
            params![
                &keys.signing_secret_bytes()[..],
                &keys.dh_secret_bytes()[..]
            ],
        )?;
        tx.commit()?;
        Ok(keys)
    }

    /// The stored identity keys, if any.
    pub(crate) fn identity(&self) -> Result<Option<IdentityKeys>> {
        read_identity(&self.conn())
    }

    /// Forgets the identity keys.
    pub(crate) fn delete_identity(&self) -> Result<()> {
        self.conn().execute("DELETE FROM identity", [])?;
        Ok(())
    }

    /// The signed-in session, if any.
    pub(crate) fn session(&self) -> Result<Option<Session>> {
        let session = self
            .conn()
            .query_row(
                "SELECT user_id, device_id, phone, access_token, access_expires_at_ms, refresh_token,
                        refresh_expires_at_ms
                 FROM session WHERE id = 1",
                [],
                |r| {
                    Ok(Session {
                        user_id: r.get(0)?,
                        device_id: r.get(1)?,
                        phone: r.get(2)?,
                        tokens: Tokens {
                            access_token: r.get(3)?,
                            access_expires_at_ms: r.get(4)?,
                            refresh_token: r.get(5)?,
                            refresh_expires_at_ms: r.get(6)?,
                        },
                    })
                },
            )
            .optional()?;
        Ok(session)
    }

    /// Stores `session`, replacing any earlier one.
    pub(crate) fn save_session(&self, session: &Session) -> Result<()> {
        let t = &session.tokens;
        self.conn().execute(
            "INSERT OR REPLACE INTO session (id, user_id, device_id, phone, access_token,
                 access_expires_at_ms, refresh_token, refresh_expires_at_ms)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                session.user_id,
                session.device_id,
                session.phone,
                t.access_token,
                t.access_expires_at_ms,
                t.refresh_token,
                t.refresh_expires_at_ms
            ],
        )?;
        Ok(())
    }

    /// Replaces the tokens of the session of `device_id`; `false` when that session is gone
    /// (signed out meanwhile), in which case nothing is stored.
    pub(crate) fn update_tokens(&self, device_id: &str, tokens: &Tokens) -> Result<bool> {
        let changed = self.conn().execute(
            "UPDATE session SET access_token = ?1, access_expires_at_ms = ?2, refresh_token = ?3,
                 refresh_expires_at_ms = ?4
             WHERE id = 1 AND device_id = ?5",
            params![
                tokens.access_token,
                tokens.access_expires_at_ms,
                tokens.refresh_token,
                tokens.refresh_expires_at_ms,
                device_id
            ],
        )?;
        Ok(changed == 1)
    }

    /// Forgets the session.
    pub(crate) fn clear_session(&self) -> Result<()> {
        self.conn().execute("DELETE FROM session", [])?;
        Ok(())
    }
}

fn read_identity(conn: &Connection) -> Result<Option<IdentityKeys>> {
    let row: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_row(
            "SELECT signing_secret, dh_secret FROM identity WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((signing, dh)) =
        row.map(|(s, d)| (zeroize::Zeroizing::new(s), zeroize::Zeroizing::new(d)))
    else {
        return Ok(None);
    };
    IdentityKeys::from_secret_bytes(&signing, &dh)
        .map(Some)
        .ok_or_else(|| ClientError::Storage {
            message: "stored identity keys are corrupt".to_owned(),
        })
}

/// Makes the database files readable by this user only: they hold identity keys and tokens,
/// and a home directory the app did not create may be more open than that.
fn restrict_permissions(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            files.push(name.into());
        }
        for file in files.iter().filter(|f| f.exists()) {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use rand::rngs::OsRng;

    use super::*;

    fn session(access: &str) -> Session {
        Session {
            user_id: "user-1".into(),
            device_id: "device-1".into(),
            phone: "+12015550123".into(),
            tokens: Tokens {
                access_token: access.into(),
                access_expires_at_ms: 1_000,
                refresh_token: format!("refresh-{access}"),
                refresh_expires_at_ms: 2_000,
            },
        }
    }

    #[test]
    fn migrations_run_once_and_set_user_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client.db");
        let store = Store::open(&path).expect("open");
        let version: usize = store
            .conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, MIGRATIONS.len());
        let mode: String = store
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        store.save_session(&session("a")).expect("save");
        drop(store);

        // Reopening does not rerun (and so does not fail on) the migrations, and keeps the data.
        let store = Store::open(&path).expect("reopen");
        assert!(store.session().expect("read").is_some());
    }

    #[test]
    fn each_migration_applies_on_its_predecessor() {
        let mut conn = Connection::open_in_memory().expect("memory db");
        for (index, sql) in MIGRATIONS.iter().enumerate() {
            let tx = conn.transaction().expect("tx");
            tx.execute_batch(sql)
                .unwrap_or_else(|e| panic!("migration {} failed: {e}", index + 1));
            tx.commit().expect("commit");
        }
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            tables,
            [
                "accepted_base_keys",
                "archived_sessions",
                "attachments",
                "contacts",
                "device_lists",
                "devices",
                "group_devices",
                "group_members",
                "groups",
                "identity",
                "messages",
                "notice_keys",
                "one_time_prekeys",
                "outbox",
                "pending_receipts",
                "ratchet_sessions",
                "reactions",
                "sender_keys_given",
                "sender_keys_own",
                "sender_keys_received",
                "session",
                "signed_prekeys",
                "sqlite_sequence",
                "status_views",
                "statuses",
                "uploads",
            ]
        );
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client.db");
        Connection::open(&path)
            .expect("create")
            .pragma_update(None, "user_version", 99)
            .expect("set");
        let err = Store::open(&path).expect_err("newer schema");
        assert!(err.to_string().contains("newer"), "{err}");
    }

    #[test]
    fn session_persists_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client.db");
        let store = Store::open(&path).expect("open");
        assert_eq!(store.session().expect("read"), None);
        store.save_session(&session("a")).expect("save");
        drop(store);

        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.session().expect("read"), Some(session("a")));

        // Token rotation replaces the tokens of that device only.
        let new = session("b").tokens;
        assert!(!store.update_tokens("other-device", &new).expect("update"));
        assert_eq!(store.session().expect("read"), Some(session("a")));
        assert!(store.update_tokens("device-1", &new).expect("update"));
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.session().expect("read"), Some(session("b")));

        store.clear_session().expect("clear");
        assert_eq!(store.session().expect("read"), None);
        assert!(
            !store.update_tokens("device-1", &new).expect("update"),
            "no session to update"
        );
    }

    #[test]
    fn identity_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("client.db");
        let store = Store::open(&path).expect("open");
        assert!(store.identity().expect("read").is_none());

        let first = store
            .identity_or_insert(|| IdentityKeys::generate(&mut OsRng))
            .expect("create");
        let second = store
            .identity_or_insert(|| panic!("must not generate again"))
            .expect("reuse");
        assert_eq!(first.signing_public(), second.signing_public());
        assert_eq!(first.dh_public(), second.dh_public());
        drop(store);

        let store = Store::open(&path).expect("reopen");
        let third = store
            .identity_or_insert(|| panic!("must not generate again"))
            .expect("reuse");
        assert_eq!(first.signing_public(), third.signing_public());
        assert_eq!(first.dh_public(), third.dh_public());

        store.delete_identity().expect("delete");
        let fresh = store
            .identity_or_insert(|| IdentityKeys::generate(&mut OsRng))
            .expect("create");
        assert_ne!(first.signing_public(), fresh.signing_public());
    }
}
