//! [`BlobIndex`] on the SQLite media database (tables `blobs` and `profile_photos`, migration
//! `0002_blobs.sql`); writes go through the status store's `juntos_store::sqlite` writer, in the
//! same batches as the statuses'.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension as _, params, params_from_iter};

use super::{BlobIndex, BlobRecord, ProfilePhotoRecord, StoreError, signed};
use crate::store::SqliteStatusStore;

const BLOB_COLUMNS: &str = "blob_id, owner_user_id, kind, size, part_size, parts_done, upload, \
                            capability_hash, created_ms, expires_ms";

fn blob_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlobRecord> {
    let unsigned = |i: usize| -> rusqlite::Result<u64> {
        let v: i64 = r.get(i)?;
        u64::try_from(v).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Integer,
                Box::new(e),
            )
        })
    };
    Ok(BlobRecord {
        blob_id: r.get(0)?,
        owner_user_id: r.get(1)?,
        kind: r.get(2)?,
        size: unsigned(3)?,
        part_size: unsigned(4)?,
        parts_done: unsigned(5)?,
        upload: r.get(6)?,
        capability_hash: r.get(7)?,
        created_ms: r.get(8)?,
        expires_ms: r.get(9)?,
    })
}

fn photo_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProfilePhotoRecord> {
    Ok(ProfilePhotoRecord {
        user_id: r.get(0)?,
        version: r.get(1)?,
        large_key: r.get(2)?,
        small_key: r.get(3)?,
        updated_ms: r.get(4)?,
    })
}

fn photo_of(conn: &Connection, user_id: &str) -> rusqlite::Result<Option<ProfilePhotoRecord>> {
    conn.query_row(
        "SELECT user_id, version, large_key, small_key, updated_ms FROM profile_photos \
         WHERE user_id = ?1",
        [user_id],
        photo_from_row,
    )
    .optional()
}

#[async_trait]
impl BlobIndex for SqliteStatusStore {
    async fn insert_blob(&self, record: BlobRecord, max_pending: u32) -> Result<bool, StoreError> {
        self.db.write(move |conn, _| {
            let pending: i64 = conn.query_row(
                "SELECT count(*) FROM blobs WHERE owner_user_id = ?1 AND upload IS NOT NULL",
                [&record.owner_user_id],
                |r| r.get(0),
            )?;
            if pending >= i64::from(max_pending) {
                return Ok(false);
            }
            conn.execute(
                &format!("INSERT INTO blobs ({BLOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    record.blob_id,
                    record.owner_user_id,
                    record.kind,
                    signed(record.size),
                    signed(record.part_size),
                    signed(record.parts_done),
                    record.upload,
                    record.capability_hash,
                    record.created_ms,
                    record.expires_ms,
                ],
            )?;
            Ok(true)
        })
        .await
    }

    async fn uploaded_since(
        &self,
        owner_user_id: &str,
        since_ms: i64,
    ) -> Result<(u64, Option<i64>), StoreError> {
        let owner = owner_user_id.to_owned();
        self.db
            .read(move |conn| {
                let (bytes, oldest): (i64, Option<i64>) = conn.query_row(
                    "SELECT coalesce(sum(size), 0), min(created_ms) FROM blobs \
                 WHERE owner_user_id = ?1 AND created_ms > ?2",
                    params![owner, since_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok((u64::try_from(bytes).unwrap_or(0), oldest))
            })
            .await
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<BlobRecord>, StoreError> {
        let blob_id = blob_id.to_owned();
        self.db
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        &format!("SELECT {BLOB_COLUMNS} FROM blobs WHERE blob_id = ?1"),
                        [&blob_id],
                        blob_from_row,
                    )
                    .optional()?)
            })
            .await
    }

    async fn commit_part(&self, blob_id: &str, before: u64) -> Result<bool, StoreError> {
        let blob_id = blob_id.to_owned();
        self.db
            .write(move |conn, _| {
                Ok(conn.execute(
                    "UPDATE blobs SET parts_done = parts_done + 1 \
                 WHERE blob_id = ?1 AND parts_done = ?2 AND upload IS NOT NULL",
                    params![blob_id, signed(before)],
                )? == 1)
            })
            .await
    }

    async fn complete_blob(&self, blob_id: &str, expires_ms: i64) -> Result<bool, StoreError> {
        let blob_id = blob_id.to_owned();
        self.db
            .write(move |conn, _| {
                Ok(conn.execute(
                    "UPDATE blobs SET upload = NULL, expires_ms = ?2 \
                 WHERE blob_id = ?1 AND upload IS NOT NULL",
                    params![blob_id, expires_ms],
                )? == 1)
            })
            .await
    }

    async fn expire_blobs_at(
        &self,
        owner_user_id: &str,
        blob_ids: &[String],
        expires_ms: i64,
    ) -> Result<u64, StoreError> {
        let (owner, ids) = (owner_user_id.to_owned(), blob_ids.to_vec());
        self.db
            .write(move |conn, _| {
                let mut changed = 0;
                for id in &ids {
                    changed += conn.execute(
                    "UPDATE blobs SET expires_ms = ?3 WHERE blob_id = ?1 AND owner_user_id = ?2 \
                     AND upload IS NULL AND expires_ms > ?3",
                    params![id, owner, expires_ms],
                )? as u64;
                }
                Ok(changed)
            })
            .await
    }

    async fn remove_blob(&self, seen: &BlobRecord) -> Result<bool, StoreError> {
        let (blob_id, expires_ms, complete) =
            (seen.blob_id.clone(), seen.expires_ms, seen.complete());
        self.db
            .write(move |conn, _| {
                Ok(conn.execute(
                    "DELETE FROM blobs WHERE blob_id = ?1 AND expires_ms = ?2 \
                 AND (upload IS NULL) = ?3",
                    params![blob_id, expires_ms, complete],
                )? == 1)
            })
            .await
    }

    async fn expired_blobs(
        &self,
        now_ms: i64,
        after: Option<&(i64, String)>,
        limit: u32,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let (after_ms, after_id) = after.cloned().unwrap_or((i64::MIN, String::new()));
        self.db
            .read(move |conn| {
                let mut stmt = conn.prepare(&format!(
                    "SELECT {BLOB_COLUMNS} FROM blobs WHERE expires_ms <= ?1 \
                 AND (expires_ms, blob_id) > (?2, ?3) ORDER BY expires_ms, blob_id LIMIT ?4"
                ))?;
                let rows =
                    stmt.query_map(params![now_ms, after_ms, after_id, limit], blob_from_row)?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    async fn known_keys(&self, keys: Vec<String>) -> Result<Vec<String>, StoreError> {
        self.db
            .read(move |conn| {
                let mut known = Vec::new();
                for chunk in keys.chunks(300) {
                    let marks = vec!["?"; chunk.len()].join(", ");
                    let sql = format!(
                        "SELECT blob_id FROM blobs WHERE blob_id IN ({marks}) \
                     UNION SELECT large_key FROM profile_photos WHERE large_key IN ({marks}) \
                     UNION SELECT small_key FROM profile_photos WHERE small_key IN ({marks})"
                    );
                    let mut stmt = conn.prepare(&sql)?;
                    let args = chunk.iter().chain(chunk).chain(chunk);
                    let rows = stmt.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
                    for row in rows {
                        known.push(row?);
                    }
                }
                Ok(known)
            })
            .await
    }

    async fn set_profile_photo(
        &self,
        photo: ProfilePhotoRecord,
    ) -> Result<Option<ProfilePhotoRecord>, StoreError> {
        self.db
            .write(move |conn, _| {
                let previous = photo_of(conn, &photo.user_id)?;
                conn.execute(
                "INSERT INTO profile_photos (user_id, version, large_key, small_key, updated_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (user_id) DO UPDATE SET \
                 version = excluded.version, large_key = excluded.large_key, \
                 small_key = excluded.small_key, updated_ms = excluded.updated_ms",
                params![
                    photo.user_id,
                    photo.version,
                    photo.large_key,
                    photo.small_key,
                    photo.updated_ms
                ],
            )?;
                Ok(previous)
            })
            .await
    }

    async fn profile_photo(&self, user_id: &str) -> Result<Option<ProfilePhotoRecord>, StoreError> {
        let user_id = user_id.to_owned();
        self.db
            .read(move |conn| Ok(photo_of(conn, &user_id)?))
            .await
    }

    async fn delete_profile_photo(
        &self,
        user_id: &str,
    ) -> Result<Option<ProfilePhotoRecord>, StoreError> {
        let user_id = user_id.to_owned();
        self.db
            .write(move |conn, _| {
                let previous = photo_of(conn, &user_id)?;
                conn.execute("DELETE FROM profile_photos WHERE user_id = ?1", [&user_id])?;
                Ok(previous)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use crate::store::media::suite;
    use crate::store::sqlite::tests::fresh;

    suite::blob_index_suite!(fresh());
}
