//! Statuses in the client database: the decrypted statuses this device can show, and who saw
//! this account's own.

use rusqlite::{Connection, params};

use super::Tx;
use crate::error::Result;
use crate::model::content::Attachment;
use crate::model::records::StatusInfo;

impl Tx<'_> {
    /// Stores a decrypted status (once; a second copy changes nothing).
    pub(crate) fn save_status(&self, status: &StatusInfo, poster_device_id: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO statuses
                 (status_id, poster_user_id, poster_device_id, body, posted_ms, expires_ms, viewed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                status.status_id,
                status.poster_user_id,
                poster_device_id,
                status.text,
                status.posted_ms,
                status.expires_ms,
                status.viewed
            ],
        )?;
        Ok(())
    }

    /// Marks a status viewed by this account; false when this device does not have it.
    pub(crate) fn mark_status_viewed(&self, status_id: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE statuses SET viewed = 1 WHERE status_id = ?1",
            [status_id],
        )? == 1)
    }

    /// Records that `viewer_user_id` saw one of `poster_user_id`'s statuses; false when it is
    /// not one of theirs here (or was recorded already).
    pub(crate) fn record_status_view(
        &self,
        status_id: &str,
        poster_user_id: &str,
        viewer_user_id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO status_views (status_id, viewer_user_id, viewed_ms)
             SELECT status_id, ?3, ?4 FROM statuses WHERE status_id = ?1 AND poster_user_id = ?2",
            params![status_id, poster_user_id, viewer_user_id, now_ms],
        )? == 1)
    }

    /// Deletes a status and its views.
    pub(crate) fn delete_status(&self, status_id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM statuses WHERE status_id = ?1", [status_id])?;
        self.conn()
            .execute("DELETE FROM status_views WHERE status_id = ?1", [status_id])?;
        self.conn().execute(
            "DELETE FROM attachments WHERE message_id = ?1",
            [super::media::status_key(status_id)],
        )?;
        Ok(())
    }

    /// Files a status's attachment (see `client.media().download`).
    pub(crate) fn save_status_attachment(
        &self,
        status_id: &str,
        attachment: &Attachment,
        local_path: Option<&str>,
    ) -> Result<()> {
        super::media::insert_attachment(
            self.conn(),
            &super::media::status_key(status_id),
            attachment,
            local_path,
        )
    }

    /// Deletes the statuses expired at `now_ms`, and those the server no longer lists (deleted
    /// early; `listed`: every id it listed, `None` when the listing was cut short).
    pub(crate) fn prune_statuses(&self, now_ms: i64, listed: Option<&[String]>) -> Result<()> {
        let gone: Vec<String> = {
            let mut stmt = self
                .conn()
                .prepare("SELECT status_id, expires_ms FROM statuses")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
            let mut gone = Vec::new();
            for row in rows {
                let (id, expires) = row?;
                if expires <= now_ms || listed.is_some_and(|l| !l.contains(&id)) {
                    gone.push(id);
                }
            }
            gone
        };
        for id in gone {
            self.delete_status(&id)?;
        }
        Ok(())
    }
}

/// The unexpired statuses this device has, newest first, with who saw this account's own.
pub(crate) fn statuses(conn: &Connection, me: &str, now_ms: i64) -> Result<Vec<StatusInfo>> {
    let mut list: Vec<StatusInfo> = conn
        .prepare(
            "SELECT status_id, poster_user_id, body, posted_ms, expires_ms, viewed FROM statuses
             WHERE expires_ms > ?1 ORDER BY posted_ms DESC, status_id DESC",
        )?
        .query_map([now_ms], |r| {
            Ok(StatusInfo {
                status_id: r.get(0)?,
                poster_user_id: r.get(1)?,
                text: r.get(2)?,
                posted_ms: r.get(3)?,
                expires_ms: r.get(4)?,
                viewed: r.get(5)?,
                own: false,
                seen_by: Vec::new(),
                attachment: None,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut viewers = conn.prepare(
        "SELECT viewer_user_id FROM status_views WHERE status_id = ?1 ORDER BY viewed_ms, viewer_user_id",
    )?;
    for status in &mut list {
        status.own = status.poster_user_id == me;
        status.attachment =
            super::media::attachment_info(conn, &super::media::status_key(&status.status_id))?;
        if status.own {
            status.seen_by = viewers
                .query_map([&status.status_id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
        }
    }
    Ok(list)
}

/// Whether this device has the status.
pub(crate) fn has_status(conn: &Connection, status_id: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM statuses WHERE status_id = ?1)",
        [status_id],
        |r| r.get(0),
    )?)
}

/// The poster of a status this device has.
pub(crate) fn status_poster(conn: &Connection, status_id: &str) -> Result<Option<String>> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .query_row(
            "SELECT poster_user_id FROM statuses WHERE status_id = ?1",
            [status_id],
            |r| r.get(0),
        )
        .optional()?)
}

/// Every contact's user id (those this device found by phone number).
pub(crate) fn contact_ids(conn: &Connection) -> Result<Vec<String>> {
    Ok(conn
        .prepare("SELECT user_id FROM contacts ORDER BY user_id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}
