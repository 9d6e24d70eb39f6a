//! [`StatusStore`] on the SQLite media database (`store/sqlite.rs`): tables `statuses` and
//! `status_audience`, migration `0001_statuses.sql`.
//!
//! Because the writer runs writes one after another, a post's count of the poster's recent
//! statuses and its insert can never interleave with another post.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{
    NewStatus, PostLimit, PostOutcome, StatusPage, StatusStore, StoredStatus, merge_newest_first,
};
use crate::store::{SqliteStatusStore, StoreError};

/// Statuses removed per sweep write (each with up to 5,000 audience rows), so a large sweep
/// never stalls posts for long.
const SWEEP_CHUNK: i64 = 64;

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
    Ok(PostOutcome::Posted(status.stored()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::fresh;
    use crate::store::statuses::suite;

    suite::status_store_suite!(fresh());

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
}
