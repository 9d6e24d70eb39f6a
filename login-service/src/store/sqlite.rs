//! [`LoginStore`] on SQLite: the embedded default.
//!
//! The database is a [`juntos_store::sqlite::Database`]: one writer thread runs the writes in
//! batches (group commit, `synchronous = FULL`), and reads use a pool of read-only connections,
//! all on threads of their own so the async threads never wait on disk. The writer runs one
//! write at a time, each inside its batch's `BEGIN IMMEDIATE` transaction, which makes the
//! check-then-act steps (device cap, refresh rotation) atomic. A write may run twice (see
//! `juntos_store::sqlite`), so each only touches the database.

use std::path::Path;
#[cfg(test)]
use std::sync::Arc;

use async_trait::async_trait;
use juntos_store::sqlite::{Database, Options};
use rusqlite::{Connection, OptionalExtension as _, Row, params};

use super::{
    Account, AddDeviceOutcome, Contact, Device, LoginStore, NewDevice, NewSession, OneTimePrekey,
    PrekeyBundle, Revocation, RevokeReason, RotateOutcome, Session, Settings, SettingsUpdate,
    SignedPrekey, StoreError, UserDevices, Visibility, unique_in_order,
};

/// The schema migrations, in order; migration `i` (0-based) brings `user_version` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_key_directory.sql"),
    include_str!("../../migrations/0003_settings.sql"),
];

/// Most writes committed in one transaction (sign-ins, rotations and prekey uploads are a few
/// rows each).
const MAX_BATCH: usize = 64;

/// A [`LoginStore`] in one SQLite database.
#[derive(Clone)]
pub struct SqliteStore {
    db: Database,
    /// The directory of a test store's file, removed with the last clone.
    #[cfg(test)]
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::open(
            path,
            Options {
                name: "login",
                migrations: MIGRATIONS,
                max_batch: MAX_BATCH,
            },
        )?;
        Ok(Self {
            db,
            #[cfg(test)]
            _temp: None,
        })
    }

    /// A fresh database in a temporary directory that lives as long as the store, for tests.
    #[cfg(test)]
    pub(crate) fn open_temporary() -> Result<Self, StoreError> {
        let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(Box::new(e)))?;
        let store = Self::open(&dir.path().join("login.sqlite3"))?;
        Ok(Self {
            _temp: Some(Arc::new(dir)),
            ..store
        })
    }
}

fn account_from_row(row: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        user_id: row.get(0)?,
        phone: row.get(1)?,
        created_at_ms: row.get(2)?,
    })
}

const DEVICE_COLUMNS: &str = "device_id, user_id, name, platform, identity_signing_key, \
                              identity_dh_key, created_at_ms, removed_at_ms";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<Device> {
    device_from_row_at(row, 0)
}

/// A device from [`DEVICE_COLUMNS`] (in that order) starting at column `at`.
fn device_from_row_at(row: &Row<'_>, at: usize) -> rusqlite::Result<Device> {
    Ok(Device {
        device_id: row.get(at)?,
        user_id: row.get(at + 1)?,
        name: row.get(at + 2)?,
        platform: row.get(at + 3)?,
        identity_signing_key: row.get(at + 4)?,
        identity_dh_key: row.get(at + 5)?,
        created_at_ms: row.get(at + 6)?,
        removed_at_ms: row.get(at + 7)?,
    })
}

const SESSION_COLUMNS: &str =
    "s.session_id, s.user_id, s.device_id, s.created_at_ms, s.revoked_at_ms, s.revoke_reason";

/// A session from [`SESSION_COLUMNS`] starting at column `at`.
fn session_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Session> {
    let reason: Option<String> = row.get(at + 5)?;
    Ok(Session {
        session_id: row.get(at)?,
        user_id: row.get(at + 1)?,
        device_id: row.get(at + 2)?,
        created_at_ms: row.get(at + 3)?,
        revoked_at_ms: row.get(at + 4)?,
        // An unknown reason still means revoked; keep the time, drop the label.
        revoke_reason: reason.as_deref().and_then(RevokeReason::parse),
    })
}

fn revoke_session(
    conn: &Connection,
    session_id: &str,
    now_ms: i64,
    reason: RevokeReason,
) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE sessions SET revoked_at_ms = ?2, revoke_reason = ?3
         WHERE session_id = ?1 AND revoked_at_ms IS NULL",
        params![session_id, now_ms, reason.as_str()],
    )
}

/// Whether `device_id` exists and is not removed.
fn device_is_active(conn: &Connection, device_id: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM devices WHERE device_id = ?1 AND removed_at_ms IS NULL)",
        params![device_id],
        |r| r.get(0),
    )
}

fn one_time_prekey_count(conn: &Connection, device_id: &str) -> Result<u32, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?1",
        params![device_id],
        |r| r.get(0),
    )?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt("one-time prekey count out of range".into()))
}

#[async_trait]
impl LoginStore for SqliteStore {
    async fn find_or_create_account(
        &self,
        phone: &str,
        new_user_id: &str,
        now_ms: i64,
    ) -> Result<(Account, bool), StoreError> {
        let (phone, new_user_id) = (phone.to_owned(), new_user_id.to_owned());
        self.db
            .write(move |conn, _| {
                let created = conn.execute(
                    "INSERT INTO accounts (user_id, phone, created_at_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (phone) DO NOTHING",
                    params![new_user_id, phone, now_ms],
                )? == 1;
                let account = conn.query_row(
                    "SELECT user_id, phone, created_at_ms FROM accounts WHERE phone = ?1",
                    params![phone],
                    account_from_row,
                )?;
                Ok((account, created))
            })
            .await
    }

    async fn account(&self, user_id: &str) -> Result<Option<Account>, StoreError> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT user_id, phone, created_at_ms FROM accounts WHERE user_id = ?1",
                        params![user_id],
                        account_from_row,
                    )
                    .optional()?)
            })
            .await
    }

    async fn add_device(
        &self,
        device: NewDevice,
        max_devices: u32,
    ) -> Result<AddDeviceOutcome, StoreError> {
        self.db.write(move |conn, _| {
            let active: i64 = conn.query_row(
                "SELECT COUNT(*) FROM devices WHERE user_id = ?1 AND removed_at_ms IS NULL",
                params![device.user_id],
                |r| r.get(0),
            )?;
            if active >= i64::from(max_devices) {
                return Ok(AddDeviceOutcome::TooManyDevices);
            }
            conn.execute(
                &format!(
                    "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)"
                ),
                params![
                    device.device_id,
                    device.user_id,
                    device.name,
                    device.platform,
                    device.identity_signing_key,
                    device.identity_dh_key,
                    device.created_at_ms,
                ],
            )?;
            Ok(AddDeviceOutcome::Added(device.registered()))
        })
        .await
    }

    async fn device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ?1"),
                        params![device_id],
                        device_from_row,
                    )
                    .optional()?)
            })
            .await
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, StoreError> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                 WHERE user_id = ?1 AND removed_at_ms IS NULL
                 ORDER BY created_at_ms, device_id"
                ))?;
                let devices = stmt
                    .query_map(params![user_id], device_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(devices)
            })
            .await
    }

    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.db
            .write(move |conn, _| {
                conn.execute(
                    "INSERT INTO sessions (session_id, user_id, device_id, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                    params![
                        session.session_id,
                        session.user_id,
                        session.device_id,
                        session.created_at_ms
                    ],
                )?;
                conn.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    session.refresh_token_hash,
                    session.session_id,
                    session.created_at_ms,
                    session.refresh_expires_at_ms,
                ],
            )?;
                Ok(())
            })
            .await
    }

    async fn session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        let session_id = session_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        &format!(
                            "SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.session_id = ?1"
                        ),
                        params![session_id],
                        |row| session_from_row(row, 0),
                    )
                    .optional()?)
            })
            .await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError> {
        let (old_hash, new_hash) = (old_hash.to_owned(), new_hash.to_owned());
        self.db
            .write(move |conn, _| {
                let found = conn
                    .query_row(
                        &format!(
                            "SELECT t.expires_at_ms, t.rotated_at_ms, {SESSION_COLUMNS}
                         FROM refresh_tokens t JOIN sessions s ON s.session_id = t.session_id
                         WHERE t.token_hash = ?1"
                        ),
                        params![old_hash],
                        |row| {
                            let expires_at_ms: i64 = row.get(0)?;
                            let rotated_at_ms: Option<i64> = row.get(1)?;
                            Ok((expires_at_ms, rotated_at_ms, session_from_row(row, 2)?))
                        },
                    )
                    .optional()?;
                let Some((expires_at_ms, rotated_at_ms, session)) = found else {
                    return Ok(RotateOutcome::Invalid);
                };
                if !session.is_active() {
                    return Ok(RotateOutcome::Invalid);
                }
                if rotated_at_ms.is_some() {
                    revoke_session(
                        conn,
                        &session.session_id,
                        now_ms,
                        RevokeReason::RefreshTokenReused,
                    )?;
                    // A device lives as long as its one session: with the session gone it can
                    // never be used again, so it leaves the device list (and the device cap) now
                    // instead of lingering as a device senders must encrypt for.
                    conn.execute(
                        "UPDATE devices SET removed_at_ms = ?2
                     WHERE device_id = ?1 AND removed_at_ms IS NULL",
                        params![session.device_id, now_ms],
                    )?;
                    for table in ["signed_prekeys", "one_time_prekeys"] {
                        conn.execute(
                            &format!("DELETE FROM {table} WHERE device_id = ?1"),
                            params![session.device_id],
                        )?;
                    }
                    return Ok(RotateOutcome::Reused {
                        session_id: session.session_id,
                    });
                }
                if expires_at_ms <= now_ms {
                    return Ok(RotateOutcome::Invalid);
                }
                conn.execute(
                    "UPDATE refresh_tokens SET rotated_at_ms = ?2 WHERE token_hash = ?1",
                    params![old_hash, now_ms],
                )?;
                conn.execute(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![new_hash, session.session_id, now_ms, new_expires_at_ms],
            )?;
                Ok(RotateOutcome::Rotated { session })
            })
            .await
    }

    async fn revoke_device_sessions(
        &self,
        user_id: &str,
        device_id: &str,
        now_ms: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.db
            .write(move |conn, _| {
                conn.execute(
                    "UPDATE devices SET removed_at_ms = ?3
                 WHERE device_id = ?1 AND user_id = ?2 AND removed_at_ms IS NULL",
                    params![device_id, user_id, now_ms],
                )?;
                let ids = {
                    let mut stmt = conn.prepare_cached(
                        "SELECT session_id FROM sessions
                     WHERE device_id = ?1 AND user_id = ?2 AND revoked_at_ms IS NULL
                     ORDER BY session_id",
                    )?;
                    stmt.query_map(params![device_id, user_id], |r| r.get::<_, String>(0))?
                        .collect::<rusqlite::Result<Vec<_>>>()?
                };
                for id in &ids {
                    revoke_session(conn, id, now_ms, reason)?;
                }
                // Only the owner's sign-out removes the device's keys.
                for table in ["signed_prekeys", "one_time_prekeys"] {
                    conn.execute(
                        &format!(
                            "DELETE FROM {table} WHERE device_id = ?1 AND EXISTS (
                             SELECT 1 FROM devices WHERE device_id = ?1 AND user_id = ?2)"
                        ),
                        params![device_id, user_id],
                    )?;
                }
                Ok(ids)
            })
            .await
    }

    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>, StoreError> {
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT session_id, revoked_at_ms FROM sessions
                 WHERE revoked_at_ms IS NOT NULL AND revoked_at_ms >= ?1
                 ORDER BY revoked_at_ms, session_id",
                )?;
                let revocations = stmt
                    .query_map(params![since_ms], |r| {
                        Ok(Revocation {
                            session_id: r.get(0)?,
                            revoked_at_ms: r.get(1)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(revocations)
            })
            .await
    }

    async fn set_signed_prekey(
        &self,
        device_id: &str,
        prekey: SignedPrekey,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let device_id = device_id.to_owned();
        self.db.write(move |conn, _| {
            if !device_is_active(conn, &device_id)? {
                return Ok(false);
            }
            conn.execute(
                "INSERT INTO signed_prekeys (device_id, key_id, public_key, signature, uploaded_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (device_id) DO UPDATE SET key_id = excluded.key_id,
                     public_key = excluded.public_key, signature = excluded.signature,
                     uploaded_at_ms = excluded.uploaded_at_ms",
                params![
                    device_id,
                    prekey.key_id,
                    prekey.public_key,
                    prekey.signature,
                    now_ms
                ],
            )?;
            Ok(true)
        })
        .await
    }

    async fn signed_prekey(&self, device_id: &str) -> Result<Option<SignedPrekey>, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                .query_row(
                    "SELECT key_id, public_key, signature FROM signed_prekeys WHERE device_id = ?1",
                    params![device_id],
                    |r| {
                        Ok(SignedPrekey {
                            key_id: r.get(0)?,
                            public_key: r.get(1)?,
                            signature: r.get(2)?,
                        })
                    },
                )
                .optional()?)
            })
            .await
    }

    async fn add_one_time_prekeys(
        &self,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        max_stored: u32,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .write(move |conn, _| {
                if !device_is_active(conn, &device_id)? {
                    return Ok(None);
                }
                {
                    // Delete, then insert: a replaced key gets a new rowid, i.e. counts as newest.
                    let mut delete = conn.prepare_cached(
                        "DELETE FROM one_time_prekeys WHERE device_id = ?1 AND key_id = ?2",
                    )?;
                    let mut insert = conn.prepare_cached(
                    "INSERT INTO one_time_prekeys (device_id, key_id, public_key, uploaded_at_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                    for prekey in &prekeys {
                        delete.execute(params![device_id, prekey.key_id])?;
                        insert.execute(params![
                            device_id,
                            prekey.key_id,
                            prekey.public_key,
                            now_ms
                        ])?;
                    }
                }
                let count = one_time_prekey_count(conn, &device_id)?;
                let count = if count > max_stored {
                    conn.execute(
                        "DELETE FROM one_time_prekeys WHERE rowid IN (
                         SELECT rowid FROM one_time_prekeys WHERE device_id = ?1
                         ORDER BY rowid LIMIT ?2)",
                        params![device_id, count - max_stored],
                    )?;
                    max_stored
                } else {
                    count
                };
                Ok(Some(count))
            })
            .await
    }

    async fn one_time_prekey_count(&self, device_id: &str) -> Result<u32, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |conn| one_time_prekey_count(conn, &device_id))
            .await
    }

    async fn take_bundles(
        &self,
        user_id: &str,
        except_device_id: Option<&str>,
    ) -> Result<Option<Vec<PrekeyBundle>>, StoreError> {
        let user_id = user_id.to_owned();
        let except = except_device_id.map(str::to_owned);
        self.db
            .write(move |conn, _| {
                let exists: bool = conn.query_row(
                    "SELECT EXISTS (SELECT 1 FROM accounts WHERE user_id = ?1)",
                    params![user_id],
                    |r| r.get(0),
                )?;
                if !exists {
                    return Ok(None);
                }
                let mut bundles = {
                    let mut stmt = conn.prepare_cached(
                        "SELECT d.device_id, d.identity_signing_key, d.identity_dh_key,
                            p.key_id, p.public_key, p.signature
                     FROM devices d JOIN signed_prekeys p ON p.device_id = d.device_id
                     WHERE d.user_id = ?1 AND d.removed_at_ms IS NULL
                         AND d.device_id IS NOT ?2
                     ORDER BY d.created_at_ms, d.device_id",
                    )?;
                    stmt.query_map(params![user_id, except], |r| {
                        Ok(PrekeyBundle {
                            device_id: r.get(0)?,
                            identity_signing_key: r.get(1)?,
                            identity_dh_key: r.get(2)?,
                            signed_prekey: SignedPrekey {
                                key_id: r.get(3)?,
                                public_key: r.get(4)?,
                                signature: r.get(5)?,
                            },
                            one_time_prekey: None,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?
                };
                {
                    let mut take = conn.prepare_cached(
                        "DELETE FROM one_time_prekeys WHERE rowid = (
                         SELECT rowid FROM one_time_prekeys WHERE device_id = ?1
                         ORDER BY rowid LIMIT 1)
                     RETURNING key_id, public_key",
                    )?;
                    for bundle in &mut bundles {
                        bundle.one_time_prekey = take
                            .query_row(params![bundle.device_id], |r| {
                                Ok(OneTimePrekey {
                                    key_id: r.get(0)?,
                                    public_key: r.get(1)?,
                                })
                            })
                            .optional()?;
                    }
                }
                Ok(Some(bundles))
            })
            .await
    }

    async fn devices_of(&self, user_ids: &[String]) -> Result<Vec<UserDevices>, StoreError> {
        let user_ids = unique_in_order(user_ids);
        self.db
            .read(move |conn| {
                // One snapshot for the whole answer.
                let tx = conn.unchecked_transaction()?;
                let mut users = Vec::new();
                {
                    // A user without active devices is one row of NULL device columns.
                    let mut stmt = tx.prepare_cached(
                        "SELECT a.user_id, d.device_id IS NOT NULL,
                            d.device_id, d.user_id, d.name, d.platform, d.identity_signing_key,
                            d.identity_dh_key, d.created_at_ms, d.removed_at_ms
                     FROM accounts a LEFT JOIN devices d
                         ON d.user_id = a.user_id AND d.removed_at_ms IS NULL
                     WHERE a.user_id = ?1
                     ORDER BY d.created_at_ms, d.device_id",
                    )?;
                    for user_id in &user_ids {
                        let rows = stmt
                            .query_map(params![user_id], |r| {
                                let has_device: bool = r.get(1)?;
                                Ok(if has_device {
                                    Some(device_from_row_at(r, 2)?)
                                } else {
                                    None
                                })
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        if rows.is_empty() {
                            continue;
                        }
                        users.push(UserDevices {
                            user_id: user_id.clone(),
                            devices: rows.into_iter().flatten().collect(),
                        });
                    }
                }
                tx.commit()?;
                Ok(users)
            })
            .await
    }

    async fn users_by_phones(
        &self,
        phones: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let phones = unique_in_order(phones);
        self.db
            .read(move |conn| {
                let tx = conn.unchecked_transaction()?;
                let mut found = Vec::new();
                {
                    let mut stmt =
                        tx.prepare_cached("SELECT user_id FROM accounts WHERE phone = ?1")?;
                    for phone in phones {
                        let user_id: Option<String> =
                            stmt.query_row(params![phone], |r| r.get(0)).optional()?;
                        if let Some(user_id) = user_id {
                            found.push((phone, user_id));
                        }
                    }
                }
                tx.commit()?;
                Ok(found)
            })
            .await
    }

    async fn add_contacts(
        &self,
        owner_user_id: &str,
        contacts: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let owner = owner_user_id.to_owned();
        let contacts = contacts.to_vec();
        self.db
            .write(move |conn, _| {
                {
                    let mut stmt = conn.prepare_cached(
                        "INSERT INTO contacts (owner_user_id, contact_user_id, phone, added_at_ms)
                     SELECT ?1, a.user_id, ?3, ?4 FROM accounts a
                     WHERE a.user_id = ?2 AND a.user_id != ?1
                         AND EXISTS (SELECT 1 FROM accounts WHERE user_id = ?1)
                     ON CONFLICT (owner_user_id, contact_user_id)
                         DO UPDATE SET phone = excluded.phone",
                    )?;
                    for (user_id, phone) in &contacts {
                        stmt.execute(params![owner, user_id, phone, now_ms])?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn contacts(&self, owner_user_id: &str) -> Result<Vec<Contact>, StoreError> {
        let owner = owner_user_id.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT contact_user_id, phone, added_at_ms FROM contacts
                 WHERE owner_user_id = ?1 ORDER BY added_at_ms, contact_user_id",
                )?;
                let contacts = stmt
                    .query_map(params![owner], |r| {
                        Ok(Contact {
                            user_id: r.get(0)?,
                            phone: r.get(1)?,
                            added_at_ms: r.get(2)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(contacts)
            })
            .await
    }

    async fn mutual_contacts(
        &self,
        user_id: &str,
        candidates: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let user_id = user_id.to_owned();
        let candidates = unique_in_order(candidates);
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM contacts a JOIN contacts b
                     ON b.owner_user_id = a.contact_user_id AND b.contact_user_id = a.owner_user_id
                     WHERE a.owner_user_id = ?1 AND a.contact_user_id = ?2)",
                )?;
                let mut mutual = Vec::new();
                for candidate in candidates {
                    if stmt.query_row(params![user_id, candidate], |r| r.get::<_, bool>(0))? {
                        mutual.push(candidate);
                    }
                }
                Ok(mutual)
            })
            .await
    }

    async fn settings_of(
        &self,
        user_ids: &[String],
    ) -> Result<Vec<(String, Settings)>, StoreError> {
        let user_ids = unique_in_order(user_ids);
        self.db
            .read(move |conn| {
                let tx = conn.unchecked_transaction()?;
                let mut found = Vec::new();
                for user_id in user_ids {
                    if let Some(settings) = account_settings(&tx, &user_id)? {
                        found.push((user_id, settings));
                    }
                }
                tx.commit()?;
                Ok(found)
            })
            .await
    }

    async fn update_settings(
        &self,
        user_id: &str,
        update: SettingsUpdate,
        now_ms: i64,
    ) -> Result<Option<Settings>, StoreError> {
        let user_id = user_id.to_owned();
        self.db
            .write(move |conn, _| {
                let Some(current) = account_settings(conn, &user_id)? else {
                    return Ok(None);
                };
                let next = update.apply(current);
                conn.execute(
                    "INSERT INTO settings (user_id, name, about, presence, profile, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (user_id) DO UPDATE SET name = excluded.name,
                     about = excluded.about, presence = excluded.presence,
                     profile = excluded.profile, updated_at_ms = excluded.updated_at_ms",
                    params![
                        user_id,
                        next.name,
                        next.about,
                        next.presence.as_str(),
                        next.profile.as_str(),
                        now_ms
                    ],
                )?;
                Ok(Some(next))
            })
            .await
    }
}

/// The settings of `user_id` (defaults when never changed), or `None` when it is not an account.
fn account_settings(conn: &Connection, user_id: &str) -> Result<Option<Settings>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT s.name, s.about, s.presence, s.profile FROM accounts a
             LEFT JOIN settings s ON s.user_id = a.user_id WHERE a.user_id = ?1",
        )?
        .query_row(params![user_id], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })
        .optional()?;
    Ok(match row {
        None => None,
        Some((Some(name), Some(about), Some(presence), Some(profile))) => Some(Settings {
            name,
            about,
            presence: visibility(&presence)?,
            profile: visibility(&profile)?,
        }),
        Some(_) => Some(Settings::default()),
    })
}

fn visibility(stored: &str) -> Result<Visibility, StoreError> {
    Visibility::parse(stored).ok_or_else(|| StoreError::Corrupt(format!("visibility {stored:?}")))
}

#[cfg(test)]
mod tests {
    use juntos_store::sqlite::migrate_to;

    use super::*;
    use crate::store::suite::login_store_suite;

    fn user_version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version")
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .expect("table_info");
        stmt.query_map([], |r| r.get::<_, String>(1))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows")
    }

    #[test]
    fn migration_0001_creates_the_schema() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "foreign_keys", true).expect("fk");
        migrate_to(&mut conn, MIGRATIONS, 1).expect("migrate");
        assert_eq!(user_version(&conn), 1);
        assert_eq!(
            columns(&conn, "accounts"),
            ["user_id", "phone", "created_at_ms"]
        );
        assert_eq!(
            columns(&conn, "devices"),
            [
                "device_id",
                "user_id",
                "name",
                "platform",
                "identity_signing_key",
                "identity_dh_key",
                "created_at_ms",
                "removed_at_ms"
            ]
        );
        assert_eq!(
            columns(&conn, "sessions"),
            [
                "session_id",
                "user_id",
                "device_id",
                "created_at_ms",
                "revoked_at_ms",
                "revoke_reason"
            ]
        );
        assert_eq!(
            columns(&conn, "refresh_tokens"),
            [
                "token_hash",
                "session_id",
                "created_at_ms",
                "expires_at_ms",
                "rotated_at_ms"
            ]
        );

        // The phone is unique, and devices must belong to an account.
        conn.execute("INSERT INTO accounts VALUES ('u1', '+15550000001', 1)", [])
            .expect("insert");
        assert!(
            conn.execute("INSERT INTO accounts VALUES ('u2', '+15550000001', 1)", [])
                .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO devices VALUES ('d1', 'nobody', 'n', 1, x'00', x'00', 1, NULL)",
                []
            )
            .is_err()
        );
    }

    #[test]
    fn migration_0002_adds_the_key_directory() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.pragma_update(None, "foreign_keys", true).expect("fk");
        migrate_to(&mut conn, MIGRATIONS, 1).expect("migrate to 1");
        conn.execute_batch(
            "INSERT INTO accounts VALUES ('u1', '+15550000001', 1), ('u2', '+15550000002', 1);
             INSERT INTO devices VALUES ('d1', 'u1', 'n', 1, x'00', x'00', 1, NULL);",
        )
        .expect("data before 0002");
        migrate_to(&mut conn, MIGRATIONS, 2).expect("migrate to 2");
        assert_eq!(user_version(&conn), 2);
        assert_eq!(
            columns(&conn, "signed_prekeys"),
            [
                "device_id",
                "key_id",
                "public_key",
                "signature",
                "uploaded_at_ms"
            ]
        );
        assert_eq!(
            columns(&conn, "one_time_prekeys"),
            ["device_id", "key_id", "public_key", "uploaded_at_ms"]
        );
        assert_eq!(
            columns(&conn, "contacts"),
            ["owner_user_id", "contact_user_id", "phone", "added_at_ms"]
        );
        let devices: i64 = conn
            .query_row("SELECT COUNT(*) FROM devices", [], |r| r.get(0))
            .expect("count");
        assert_eq!(devices, 1, "existing data kept");

        // One signed prekey per device; one-time prekeys unique per (device, key id); keys
        // belong to a device and contacts to accounts.
        conn.execute(
            "INSERT INTO signed_prekeys VALUES ('d1', 1, x'01', x'02', 1)",
            [],
        )
        .expect("signed");
        assert!(
            conn.execute(
                "INSERT INTO signed_prekeys VALUES ('d1', 2, x'01', x'02', 1)",
                []
            )
            .is_err()
        );
        conn.execute(
            "INSERT INTO one_time_prekeys VALUES ('d1', 1, x'01', 1)",
            [],
        )
        .expect("one-time");
        conn.execute(
            "INSERT INTO one_time_prekeys VALUES ('d1', 2, x'01', 1)",
            [],
        )
        .expect("another key id");
        assert!(
            conn.execute(
                "INSERT INTO one_time_prekeys VALUES ('d1', 1, x'01', 1)",
                []
            )
            .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO one_time_prekeys VALUES ('dx', 1, x'01', 1)",
                []
            )
            .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO signed_prekeys VALUES ('dx', 1, x'01', x'02', 1)",
                []
            )
            .is_err()
        );
        conn.execute(
            "INSERT INTO contacts VALUES ('u1', 'u2', '+15550000002', 1)",
            [],
        )
        .expect("contact");
        assert!(
            conn.execute(
                "INSERT INTO contacts VALUES ('u1', 'u2', '+15550000002', 2)",
                []
            )
            .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO contacts VALUES ('u1', 'ux', '+15550000009', 1)",
                []
            )
            .is_err()
        );
        // STRICT: a key id must be an integer.
        assert!(
            conn.execute(
                "INSERT INTO one_time_prekeys VALUES ('d1', 'x', x'01', 1)",
                []
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn migrations_run_once_and_reach_the_latest_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("login.sqlite3");
        {
            let _store = SqliteStore::open(&path).expect("open");
        }
        let conn = Connection::open(&path).expect("reopen raw");
        assert_eq!(
            user_version(&conn),
            i64::try_from(MIGRATIONS.len()).expect("small")
        );
        conn.execute("INSERT INTO accounts VALUES ('u1', '+15550000001', 1)", [])
            .expect("insert");
        drop(conn);
        // Reopening does not re-run 0001 (which would fail on the existing tables) and keeps data.
        let store = SqliteStore::open(&path).expect("reopen");
        let (n, mode) = store
            .db
            .read(|conn| {
                let n: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
                let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
                Ok((n, mode))
            })
            .await
            .expect("read");
        assert_eq!(n, 1);
        assert_eq!(mode, "wal");
        // Foreign keys are enforced where the writes run.
        let fk: i64 = store
            .db
            .write(|conn, _| Ok(conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?))
            .await
            .expect("fk");
        assert_eq!(fk, 1);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("login.sqlite3");
        let conn = Connection::open(&path).expect("open raw");
        conn.pragma_update(None, "user_version", 99)
            .expect("set version");
        drop(conn);
        assert!(matches!(
            SqliteStore::open(&path),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    // === the shared behavioural suite ===

    /// A store on a fresh file in a temporary directory (removed with the store).
    async fn fresh() -> ((), SqliteStore) {
        ((), SqliteStore::open_temporary().expect("open"))
    }

    login_store_suite!(fresh());
}
