//! Attachments and unfinished uploads in the client database (`0005_attachments.sql`).

use rusqlite::{Connection, OptionalExtension as _, params};

use super::Tx;
use crate::error::Result;
use crate::model::content::Attachment;
use crate::model::records::AttachmentInfo;

/// An upload started from a file and not finished.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PendingUpload {
    pub blob_id: String,
    pub capability: Vec<u8>,
    pub key: Vec<u8>,
    pub kind: i32,
    pub upload_expires_ms: i64,
}

impl std::fmt::Debug for PendingUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the capability.
        f.debug_struct("PendingUpload")
            .field("blob_id", &self.blob_id)
            .finish_non_exhaustive()
    }
}

/// The file an upload reads, as it was when the upload began.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
    /// Device, inode and change time (empty where the platform has none).
    pub file_id: String,
}

/// The key a status's attachment is filed under: `status:<id>`, which no message id can be
/// (received ids are checked to be `[A-Za-z0-9_-]`).
pub(crate) fn status_key(status_id: &str) -> String {
    format!("status:{status_id}")
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(super) fn insert_attachment(
    conn: &Connection,
    message_id: &str,
    a: &Attachment,
    local_path: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO attachments (message_id, blob_id, capability, key, digest, size,
             kind, mime_type, file_name, thumbnail, width, height, local_path)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            message_id,
            a.blob_id,
            a.capability,
            a.key,
            a.digest,
            signed(a.size),
            a.kind,
            a.mime_type,
            a.file_name,
            a.thumbnail,
            a.width,
            a.height,
            local_path,
        ],
    )?;
    Ok(())
}

/// What apps see of a message's attachment.
pub(crate) fn attachment_info(
    conn: &Connection,
    message_id: &str,
) -> Result<Option<AttachmentInfo>> {
    Ok(conn
        .query_row(
            "SELECT file_name, mime_type, size, width, height, thumbnail, local_path
             FROM attachments WHERE message_id = ?1",
            [message_id],
            |r| {
                Ok(AttachmentInfo {
                    file_name: r.get(0)?,
                    mime_type: r.get(1)?,
                    size: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    width: r.get(3)?,
                    height: r.get(4)?,
                    thumbnail: r.get(5)?,
                    local_path: r.get(6)?,
                })
            },
        )
        .optional()?)
}

/// A message's attachment with its secrets (to download it, or to forward it).
pub(crate) fn attachment(conn: &Connection, message_id: &str) -> Result<Option<Attachment>> {
    Ok(conn
        .query_row(
            "SELECT blob_id, capability, key, digest, size, kind, mime_type, file_name, thumbnail,
                 width, height
             FROM attachments WHERE message_id = ?1",
            [message_id],
            |r| {
                Ok(Attachment {
                    blob_id: r.get(0)?,
                    capability: r.get(1)?,
                    key: r.get(2)?,
                    digest: r.get(3)?,
                    size: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
                    kind: r.get(5)?,
                    mime_type: r.get(6)?,
                    file_name: r.get(7)?,
                    thumbnail: r.get(8)?,
                    width: r.get(9)?,
                    height: r.get(10)?,
                })
            },
        )
        .optional()?)
}

/// The unfinished upload of `file`, if any.
pub(crate) fn pending_upload(conn: &Connection, file: &FileStamp) -> Result<Option<PendingUpload>> {
    Ok(conn
        .query_row(
            "SELECT blob_id, capability, key, kind, upload_expires_ms FROM uploads
             WHERE path = ?1 AND size = ?2 AND modified_ms = ?3 AND file_id = ?4",
            params![file.path, signed(file.size), file.modified_ms, file.file_id],
            |r| {
                Ok(PendingUpload {
                    blob_id: r.get(0)?,
                    capability: r.get(1)?,
                    key: r.get(2)?,
                    kind: r.get(3)?,
                    upload_expires_ms: r.get(4)?,
                })
            },
        )
        .optional()?)
}

impl Tx<'_> {
    /// Remembers an upload of `file` (replacing an older one of the same file).
    pub(crate) fn save_upload(&self, file: &FileStamp, upload: &PendingUpload) -> Result<()> {
        self.conn().execute(
            "INSERT OR REPLACE INTO uploads (path, size, modified_ms, file_id, blob_id, capability,
                 key, kind, upload_expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                file.path,
                signed(file.size),
                file.modified_ms,
                file.file_id,
                upload.blob_id,
                upload.capability,
                upload.key,
                upload.kind,
                upload.upload_expires_ms,
            ],
        )?;
        Ok(())
    }

    /// Forgets uploads abandoned by now (the server deletes them at that time).
    pub(crate) fn prune_uploads(&self, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "DELETE FROM uploads WHERE upload_expires_ms <= ?1",
            [now_ms],
        )?;
        Ok(())
    }

    /// Forgets the upload of blob `blob_id` (finished, or gone from the server).
    pub(crate) fn forget_upload(&self, blob_id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM uploads WHERE blob_id = ?1", [blob_id])?;
        Ok(())
    }

    /// Records where this device has the file of `message_id`'s attachment.
    pub(crate) fn set_attachment_path(&self, message_id: &str, path: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE attachments SET local_path = ?2 WHERE message_id = ?1",
            params![message_id, path],
        )?;
        Ok(())
    }
}
