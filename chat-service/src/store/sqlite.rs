//! [`ChatStore`] on SQLite: the embedded default.
//!
//! - The database is a [`juntos_store::sqlite::Database`]: one writer thread runs the writes
//!   (sends, group changes, acks, prunes) in group commits of up to [`MAX_BATCH`] requests (one
//!   `BEGIN IMMEDIATE` transaction and one fsync each, `synchronous = FULL`, so an answered write
//!   survives `kill -9` and power loss; should one request fail, the batch runs again with each
//!   request in its own savepoint, so it does not fail its neighbours), and the reads (fetch,
//!   last seq, dedupe lookups) use its pool of read-only connections, which WAL mode lets read
//!   while the writer commits.
//! - Sequence numbers come from the `mailbox_counters` table, written in the same transaction as
//!   the envelopes, so a number is never reused, even after every envelope is acked and deleted.
//!   The writes of one transaction carry the next number of every mailbox they touched in
//!   [`MailboxCounters`], the transaction's batch state, which writes them once before the commit.
//!
//! The database file belongs to one process; two chat pods never share it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;

use async_trait::async_trait;
use juntos_store::sqlite::{Batch, Database, Options};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{
    ChatStore, EnvelopeKind, Group, GroupListing, GroupMember, GroupRole, GroupWrite, Page,
    SendBatch, SendOutcome, StoreError, StoredEnvelope, first_page,
};

/// The schema migrations, in order; migration `i` (0-based) brings `user_version` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_chat.sql"),
    include_str!("../../migrations/0002_groups.sql"),
];

/// Most write requests committed in one transaction.
pub const MAX_BATCH: usize = 256;
/// Dedupe keys deleted per write request while pruning, so a large prune never stalls sends.
const PRUNE_CHUNK: i64 = 5_000;

/// A [`ChatStore`] in one SQLite database file.
#[derive(Clone)]
pub struct SqliteChatStore {
    db: Database<MailboxCounters>,
}

impl std::fmt::Debug for SqliteChatStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteChatStore")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

impl SqliteChatStore {
    /// Opens (creating if needed) the database at `path`, brings its schema up to date and
    /// starts the writer thread, which stops once every clone of the store is dropped (after
    /// committing what was queued).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::open(
            path,
            Options {
                name: "chat",
                migrations: MIGRATIONS,
                max_batch: MAX_BATCH,
            },
        )?;
        Ok(Self { db })
    }
}

/// The next free sequence number of each mailbox one transaction touched, upserted into
/// `mailbox_counters` just before it commits.
#[derive(Default)]
struct MailboxCounters(HashMap<String, u64>);

impl MailboxCounters {
    /// Runs `write` with the numbers taken so far and keeps the mailboxes it touched only if it
    /// succeeds.
    fn run<T>(
        &mut self,
        write: impl FnOnce(&HashMap<String, u64>, &mut HashMap<String, u64>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut touched = HashMap::new();
        let out = write(&self.0, &mut touched)?;
        self.0.extend(touched);
        Ok(out)
    }
}

impl Batch for MailboxCounters {
    fn before_commit(&mut self, conn: &Connection) -> Result<(), StoreError> {
        let mut upsert = conn.prepare_cached(
            "INSERT INTO mailbox_counters (device_id, last_seq) VALUES (?1, ?2)
             ON CONFLICT (device_id) DO UPDATE SET last_seq = excluded.last_seq",
        )?;
        for (device_id, next) in &self.0 {
            upsert.execute(params![device_id, seq_sql(next - 1)])?;
        }
        Ok(())
    }
}

// === writes (run by the writer thread) ===

/// Stores one send inside the current transaction. `counters` holds the next free sequence
/// number of mailboxes already touched by this transaction; `touched` receives this send's.
fn apply_send(
    conn: &Connection,
    send: &SendBatch,
    counters: &HashMap<String, u64>,
    touched: &mut HashMap<String, u64>,
) -> rusqlite::Result<SendOutcome> {
    if let Some(version) = send.group_version
        && group_version(conn, &send.group_id)? != Some(version)
    {
        return Ok(SendOutcome::StaleGroup);
    }
    // Notices are exactly-once through their group's version; they never use (or collide
    // with) the senders' dedupe keys.
    let fresh = send.kind == EnvelopeKind::Notice
        || conn
            .prepare_cached(
                "INSERT INTO send_dedupe (sender_user_id, client_msg_id, server_time_ms)
                 VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![
                send.sender_user_id,
                send.client_msg_id,
                send.now_ms
            ])?
            == 1;
    if !fresh {
        let server_time_ms = conn
            .prepare_cached(
                "SELECT server_time_ms FROM send_dedupe
                 WHERE sender_user_id = ?1 AND client_msg_id = ?2",
            )?
            .query_row(params![send.sender_user_id, send.client_msg_id], |r| {
                r.get(0)
            })?;
        return Ok(SendOutcome::Duplicate { server_time_ms });
    }
    let mut counter =
        conn.prepare_cached("SELECT last_seq FROM mailbox_counters WHERE device_id = ?1")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO envelopes (device_id, seq, sender_user_id, sender_device_id, client_msg_id,
                                server_time_ms, ciphertext, kind, group_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut seqs = Vec::with_capacity(send.envelopes.len());
    for envelope in &send.envelopes {
        let device = &envelope.recipient_device_id;
        let seq = match touched.entry(device.clone()) {
            Entry::Occupied(mut next) => {
                let seq = *next.get();
                *next.get_mut() += 1;
                seq
            }
            Entry::Vacant(slot) => {
                let seq = match counters.get(device) {
                    Some(next) => *next,
                    None => {
                        let last: Option<i64> = counter
                            .query_row(params![device], |r| r.get(0))
                            .optional()?;
                        seq_from_sql(last.unwrap_or(0))? + 1
                    }
                };
                slot.insert(seq + 1);
                seq
            }
        };
        insert.execute(params![
            device,
            seq_sql(seq),
            send.sender_user_id,
            send.sender_device_id,
            send.client_msg_id,
            send.now_ms,
            &envelope.ciphertext[..],
            send.kind.code(),
            send.group_id,
        ])?;
        seqs.push(seq);
    }
    Ok(SendOutcome::Stored {
        server_time_ms: send.now_ms,
        seqs,
    })
}

/// The current version of `group_id`, if it exists.
fn group_version(conn: &Connection, group_id: &str) -> rusqlite::Result<Option<u64>> {
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM groups WHERE group_id = ?1")?
        .query_row(params![group_id], |r| r.get(0))
        .optional()?;
    version.map(seq_from_sql).transpose()
}

/// Writes one group change and its notices inside the current transaction, if the group is
/// still at the version the change was made from.
fn apply_group(
    conn: &Connection,
    write: &GroupWrite,
    counters: &HashMap<String, u64>,
    touched: &mut HashMap<String, u64>,
) -> rusqlite::Result<bool> {
    let group = &write.group;
    if group_version(conn, &group.group_id)? != write.base_version {
        return Ok(false);
    }
    conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1")?
        .execute(params![group.group_id])?;
    if group.members.is_empty() {
        conn.prepare_cached("DELETE FROM groups WHERE group_id = ?1")?
            .execute(params![group.group_id])?;
    } else {
        conn.prepare_cached(
            "INSERT INTO groups (group_id, name, version, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, version = excluded.version",
        )?
        .execute(params![
            group.group_id,
            group.name,
            seq_sql(group.version),
            group.created_ms
        ])?;
        let mut insert = conn.prepare_cached(
            "INSERT INTO group_members (group_id, user_id, admin, joined_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for member in &group.members {
            insert.execute(params![
                group.group_id,
                member.user_id,
                i64::from(member.role == GroupRole::Admin),
                member.joined_ms
            ])?;
        }
    }
    if !write.notices.envelopes.is_empty() {
        match apply_send(conn, &write.notices, counters, touched)? {
            SendOutcome::Stored { .. } => {}
            // Never for a notice batch; refuse (and roll back) rather than change silently.
            SendOutcome::Duplicate { .. } | SendOutcome::StaleGroup => {
                return Err(rusqlite::Error::InvalidQuery);
            }
        }
    }
    Ok(true)
}

fn role_from_sql(admin: i64) -> GroupRole {
    if admin == 0 {
        GroupRole::Member
    } else {
        GroupRole::Admin
    }
}

/// A sequence number as SQLite stores it (sequence numbers stay far below `i64::MAX`).
fn seq_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn seq_from_sql(seq: i64) -> rusqlite::Result<u64> {
    u64::try_from(seq).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, seq))
}

// === impl ChatStore ===

#[async_trait]
impl ChatStore for SqliteChatStore {
    async fn send(&self, batch: SendBatch) -> Result<SendOutcome, StoreError> {
        self.db
            .write(move |conn, counters| {
                counters.run(|seen, touched| apply_send(conn, &batch, seen, touched))
            })
            .await
    }

    async fn sent_at(
        &self,
        sender_user_id: &str,
        client_msg_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let (sender, id) = (sender_user_id.to_owned(), client_msg_id.to_owned());
        self.db
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT server_time_ms FROM send_dedupe
                     WHERE sender_user_id = ?1 AND client_msg_id = ?2",
                    )?
                    .query_row(params![sender, id], |r| r.get(0))
                    .optional()?)
            })
            .await
    }

    async fn fetch(&self, device_id: &str, after_seq: u64, limit: u32) -> Result<Page, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT seq, sender_user_id, sender_device_id, client_msg_id, server_time_ms,
                        ciphertext, kind, group_id
                 FROM envelopes WHERE device_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt.query_map(
                    params![device_id, seq_sql(after_seq), i64::from(limit) + 1],
                    |r| {
                        let envelope = StoredEnvelope {
                            seq: seq_from_sql(r.get(0)?)?,
                            sender_user_id: r.get(1)?,
                            sender_device_id: r.get(2)?,
                            client_msg_id: r.get(3)?,
                            server_time_ms: r.get(4)?,
                            ciphertext: r.get(5)?,
                            kind: EnvelopeKind::Direct,
                            group_id: r.get(7)?,
                        };
                        Ok((envelope, r.get::<_, i64>(6)?))
                    },
                )?;
                let mut envelopes = Vec::new();
                for row in rows {
                    let (mut envelope, kind) = row?;
                    envelope.kind = EnvelopeKind::from_code(kind)?;
                    envelopes.push(envelope);
                }
                let (envelopes, more) = first_page(envelopes, limit);
                Ok(Page { envelopes, more })
            })
            .await
    }

    async fn ack(&self, device_id: &str, up_to_seq: u64) -> Result<u64, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .write(move |conn, _| {
                let deleted = conn
                    .prepare_cached("DELETE FROM envelopes WHERE device_id = ?1 AND seq <= ?2")?
                    .execute(params![device_id, seq_sql(up_to_seq)])?;
                Ok(deleted as u64)
            })
            .await
    }

    async fn last_seq(&self, device_id: &str) -> Result<u64, StoreError> {
        let device_id = device_id.to_owned();
        self.db
            .read(move |conn| {
                let last: Option<i64> = conn
                    .prepare_cached("SELECT last_seq FROM mailbox_counters WHERE device_id = ?1")?
                    .query_row(params![device_id], |r| r.get(0))
                    .optional()?;
                Ok(seq_from_sql(last.unwrap_or(0))?)
            })
            .await
    }

    async fn write_group(&self, write: GroupWrite) -> Result<bool, StoreError> {
        self.db
            .write(move |conn, counters| {
                counters.run(|seen, touched| apply_group(conn, &write, seen, touched))
            })
            .await
    }

    async fn group(&self, group_id: &str) -> Result<Option<Group>, StoreError> {
        let group_id = group_id.to_owned();
        self.db
            .read(move |conn| {
                let row: Option<(String, i64, i64)> = conn
                    .prepare_cached(
                        "SELECT name, version, created_ms FROM groups WHERE group_id = ?1",
                    )?
                    .query_row(params![group_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                let Some((name, version, created_ms)) = row else {
                    return Ok(None);
                };
                let members = conn
                    .prepare_cached(
                        "SELECT user_id, admin, joined_ms FROM group_members
                     WHERE group_id = ?1 ORDER BY user_id",
                    )?
                    .query_map(params![group_id], |r| {
                        Ok(GroupMember {
                            user_id: r.get(0)?,
                            role: role_from_sql(r.get(1)?),
                            joined_ms: r.get(2)?,
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(Some(Group {
                    group_id,
                    name,
                    version: seq_from_sql(version)?,
                    created_ms,
                    members,
                }))
            })
            .await
    }

    async fn groups_of(
        &self,
        user_id: &str,
        after_group_id: &str,
        limit: u32,
    ) -> Result<(Vec<GroupListing>, bool), StoreError> {
        let (user_id, after) = (user_id.to_owned(), after_group_id.to_owned());
        self.db
            .read(move |conn| {
                let listings = conn
                    .prepare_cached(
                        "SELECT m.group_id, g.name, g.version, m.admin,
                            (SELECT count(*) FROM group_members c WHERE c.group_id = m.group_id)
                     FROM group_members m JOIN groups g ON g.group_id = m.group_id
                     WHERE m.user_id = ?1 AND m.group_id > ?2
                     ORDER BY m.group_id LIMIT ?3",
                    )?
                    .query_map(params![user_id, after, i64::from(limit) + 1], |r| {
                        Ok(GroupListing {
                            group_id: r.get(0)?,
                            name: r.get(1)?,
                            version: seq_from_sql(r.get(2)?)?,
                            role: role_from_sql(r.get(3)?),
                            member_count: u32::try_from(r.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                        })
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(first_page(listings, limit))
            })
            .await
    }

    async fn group_counts(&self, user_ids: &[String]) -> Result<HashMap<String, u64>, StoreError> {
        let user_ids = user_ids.to_vec();
        self.db
            .read(move |conn| {
                let mut count =
                    conn.prepare_cached("SELECT count(*) FROM group_members WHERE user_id = ?1")?;
                let mut counts = HashMap::new();
                for user_id in user_ids {
                    let n: i64 = count.query_row(params![user_id], |r| r.get(0))?;
                    if n > 0 {
                        counts.insert(user_id, u64::try_from(n).unwrap_or(0));
                    }
                }
                Ok(counts)
            })
            .await
    }

    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = self
                .db
                .write(move |conn, _| {
                    let deleted = conn.execute(
                        "DELETE FROM send_dedupe WHERE (sender_user_id, client_msg_id) IN (
                             SELECT sender_user_id, client_msg_id FROM send_dedupe
                             WHERE server_time_ms < ?1 LIMIT ?2)",
                        params![older_than_ms, PRUNE_CHUNK],
                    )?;
                    Ok(deleted as u64)
                })
                .await?;
            total += deleted;
            if deleted < PRUNE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use juntos_store::sqlite::check_migrations;

    use super::*;
    use crate::store::suite::to_devices;
    use crate::test_support::mailbox;

    fn fresh() -> (tempfile::TempDir, SqliteChatStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteChatStore::open(&dir.path().join("chat.db")).expect("open");
        (dir, store)
    }

    crate::store::suite::chat_store_suite!(async { fresh() }, reopen: |dir| async {
        SqliteChatStore::open(&dir.path().join("chat.db")).expect("reopen")
    });

    /// A send that fails half-way stores nothing (no envelope, no counter, no dedupe key), and
    /// the sends committed in the same group commit are not affected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_send_rolls_back_alone() {
        let (dir, store) = fresh();
        let conn = Connection::open(dir.path().join("chat.db")).expect("open");
        conn.execute_batch(
            "CREATE TRIGGER fail_boom BEFORE INSERT ON envelopes WHEN NEW.device_id = 'boom'
             BEGIN SELECT RAISE(ABORT, 'boom'); END;",
        )
        .expect("trigger");
        let (good1, bad, good2) = tokio::join!(
            store.send(to_devices("g1", &["bd1"])),
            store.send(to_devices("bad", &["bd1", "bd2", "boom"])),
            store.send(to_devices("g2", &["bd1", "bd2"])),
        );
        bad.expect_err("the trigger fails it");
        let good1 = good1.expect("first good send");
        let good2 = good2.expect("second good send");
        assert!(matches!(good1, SendOutcome::Stored { ref seqs, .. } if seqs == &[1]));
        assert!(matches!(good2, SendOutcome::Stored { ref seqs, .. } if seqs == &[2, 1]));
        let ids: Vec<String> = mailbox(&store, "bd1")
            .await
            .into_iter()
            .map(|e| e.client_msg_id)
            .collect();
        assert_eq!(ids, ["g1", "g2"]);
        assert_eq!(store.last_seq("bd2").await.expect("last"), 1);
        assert_eq!(store.last_seq("boom").await.expect("last"), 0);
        assert_eq!(store.sent_at("a", "bad").await.expect("lookup"), None);
    }

    #[test]
    fn migrations_set_the_version_once_and_refuse_newer_schemas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chat.db");
        // Every table of every migration exists.
        let tables = [
            "mailbox_counters",
            "envelopes",
            "send_dedupe",
            "groups",
            "group_members",
        ];
        let newer = check_migrations(&path, MIGRATIONS, &tables);
        let err = SqliteChatStore::open(&path).expect_err("newer schema");
        assert!(matches!(err, StoreError::SchemaTooNew { found, .. } if found == newer));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_is_wal_with_full_sync() {
        let (dir, store) = fresh();
        let conn = Connection::open(dir.path().join("chat.db")).expect("open");
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, "wal");
        drop(store);
    }
}
