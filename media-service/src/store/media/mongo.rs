//! [`BlobIndex`] on MongoDB, beside the statuses:
//! * `blobs`: `_id` the blob id, `owner_user_id`, `kind` (Int32), `size`, `part_size`,
//!   `parts_done`, `created_ms`, `expires_ms` (Int64), `upload` (the blob store's handle; absent
//!   once complete), `capability_hash` (Binary). Indexes: `expires_ms` (the sweeper), partial
//!   `owner_user_id` where `upload` exists (an owner's unfinished uploads). A part is counted with
//!   a conditional update on `parts_done`, so two streams writing one upload count it once. The
//!   cap on unfinished uploads is a count before the insert, not a transaction: concurrent
//!   creates from one user on several pods can pass it by a few.
//! * `profile_photos`: `_id` the user id, `version`, `large_key`, `small_key`, `updated_ms`;
//!   unique indexes on both keys (the orphan sweep looks keys up).
//!
//! Shard keys: `blobs` by `{_id: "hashed"}`, `profile_photos` by `{_id: "hashed"}`.

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use juntos_store::mongo::{Fields as _, binary, corrupt, index, unique_index};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, Database, IndexModel};

use super::{BlobIndex, BlobRecord, ProfilePhotoRecord, StoreError, signed};
use crate::store::MongoStatusStore;

/// Creates the indexes of `blobs` and `profile_photos` (idempotently).
pub(in crate::store) async fn create_indexes(db: &Database) -> Result<(), StoreError> {
    let pending_by_owner = IndexModel::builder()
        .keys(doc! { "owner_user_id": 1 })
        .options(
            IndexOptions::builder()
                .name("pending_by_owner".to_owned())
                .partial_filter_expression(doc! { "upload": { "$exists": true } })
                .build(),
        )
        .build();
    blobs(db)
        .create_indexes([
            index(doc! { "expires_ms": 1 }, "by_expiry"),
            pending_by_owner,
            index(
                doc! { "owner_user_id": 1, "created_ms": 1 },
                "by_owner_time",
            ),
        ])
        .await?;
    let unique = |field: &str| unique_index(doc! { field: 1 }, &format!("{field}_unique"));
    photos(db)
        .create_indexes([unique("large_key"), unique("small_key")])
        .await?;
    Ok(())
}

fn blobs(db: &Database) -> Collection<Document> {
    db.collection("blobs")
}

fn photos(db: &Database) -> Collection<Document> {
    db.collection("profile_photos")
}

fn blob_from_doc(d: &Document) -> Result<BlobRecord, StoreError> {
    let upload = match d.get("upload") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(s)) => Some(s.clone()),
        other => return Err(corrupt("upload", format!("found {other:?}"))),
    };
    Ok(BlobRecord {
        blob_id: d.string_field("_id")?,
        owner_user_id: d.string_field("owner_user_id")?,
        kind: i32::try_from(d.i64_field("kind")?).map_err(|e| corrupt("kind", e))?,
        size: d.u64_field("size")?,
        part_size: d.u64_field("part_size")?,
        parts_done: d.u64_field("parts_done")?,
        upload,
        capability_hash: d.bytes_field("capability_hash")?,
        created_ms: d.i64_field("created_ms")?,
        expires_ms: d.i64_field("expires_ms")?,
    })
}

fn photo_from_doc(d: &Document) -> Result<ProfilePhotoRecord, StoreError> {
    Ok(ProfilePhotoRecord {
        user_id: d.string_field("_id")?,
        version: d.string_field("version")?,
        large_key: d.string_field("large_key")?,
        small_key: d.string_field("small_key")?,
        updated_ms: d.i64_field("updated_ms")?,
    })
}

#[async_trait]
impl BlobIndex for MongoStatusStore {
    async fn insert_blob(&self, record: BlobRecord, max_pending: u32) -> Result<bool, StoreError> {
        let pending = blobs(&self.db)
            .count_documents(doc! {
                "owner_user_id": &record.owner_user_id,
                "upload": { "$exists": true },
            })
            .await?;
        if pending >= u64::from(max_pending) {
            return Ok(false);
        }
        let mut d = doc! {
            "_id": &record.blob_id,
            "owner_user_id": &record.owner_user_id,
            "kind": record.kind,
            "size": signed(record.size),
            "part_size": signed(record.part_size),
            "parts_done": signed(record.parts_done),
            "capability_hash": binary(&record.capability_hash),
            "created_ms": record.created_ms,
            "expires_ms": record.expires_ms,
        };
        if let Some(upload) = &record.upload {
            d.insert("upload", upload);
        }
        blobs(&self.db).insert_one(d).await?;
        Ok(true)
    }

    async fn uploaded_since(
        &self,
        owner_user_id: &str,
        since_ms: i64,
    ) -> Result<(u64, Option<i64>), StoreError> {
        let mut cursor = blobs(&self.db)
            .aggregate([
                doc! { "$match": {
                    "owner_user_id": owner_user_id,
                    "created_ms": { "$gt": since_ms },
                } },
                doc! { "$group": {
                    "_id": Bson::Null,
                    "bytes": { "$sum": "$size" },
                    "oldest": { "$min": "$created_ms" },
                } },
            ])
            .await?;
        let Some(row) = cursor.try_next().await? else {
            return Ok((0, None));
        };
        let bytes = match row.get("bytes") {
            Some(Bson::Int64(v)) => *v,
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Double(v)) => *v as i64,
            other => return Err(corrupt("bytes", format!("found {other:?}"))),
        };
        Ok((
            u64::try_from(bytes).unwrap_or(0),
            row.i64_field("oldest").ok(),
        ))
    }

    async fn blob(&self, blob_id: &str) -> Result<Option<BlobRecord>, StoreError> {
        blobs(&self.db)
            .find_one(doc! { "_id": blob_id })
            .await?
            .as_ref()
            .map(blob_from_doc)
            .transpose()
    }

    async fn commit_part(&self, blob_id: &str, before: u64) -> Result<bool, StoreError> {
        let updated = blobs(&self.db)
            .update_one(
                doc! {
                    "_id": blob_id,
                    "parts_done": signed(before),
                    "upload": { "$exists": true },
                },
                doc! { "$inc": { "parts_done": 1_i64 } },
            )
            .await?;
        Ok(updated.modified_count == 1)
    }

    async fn complete_blob(&self, blob_id: &str, expires_ms: i64) -> Result<bool, StoreError> {
        let updated = blobs(&self.db)
            .update_one(
                doc! { "_id": blob_id, "upload": { "$exists": true } },
                doc! { "$unset": { "upload": "" }, "$set": { "expires_ms": expires_ms } },
            )
            .await?;
        Ok(updated.modified_count == 1)
    }

    async fn expire_blobs_at(
        &self,
        owner_user_id: &str,
        blob_ids: &[String],
        expires_ms: i64,
    ) -> Result<u64, StoreError> {
        let updated = blobs(&self.db)
            .update_many(
                doc! {
                    "_id": { "$in": blob_ids.to_vec() },
                    "owner_user_id": owner_user_id,
                    "upload": { "$exists": false },
                    "expires_ms": { "$gt": expires_ms },
                },
                doc! { "$set": { "expires_ms": expires_ms } },
            )
            .await?;
        Ok(updated.modified_count)
    }

    async fn remove_blob(&self, seen: &BlobRecord) -> Result<bool, StoreError> {
        let deleted = blobs(&self.db)
            .delete_one(doc! {
                "_id": &seen.blob_id,
                "expires_ms": seen.expires_ms,
                "upload": { "$exists": !seen.complete() },
            })
            .await?;
        Ok(deleted.deleted_count == 1)
    }

    async fn expired_blobs(
        &self,
        now_ms: i64,
        after: Option<&(i64, String)>,
        limit: u32,
    ) -> Result<Vec<BlobRecord>, StoreError> {
        let mut filter = doc! { "expires_ms": { "$lte": now_ms } };
        if let Some((after_ms, after_id)) = after {
            filter.insert(
                "$or",
                vec![
                    doc! { "expires_ms": { "$gt": after_ms } },
                    doc! { "expires_ms": after_ms, "_id": { "$gt": after_id } },
                ],
            );
        }
        let docs: Vec<Document> = blobs(&self.db)
            .find(filter)
            .sort(doc! { "expires_ms": 1, "_id": 1 })
            .limit(i64::from(limit))
            .await?
            .try_collect()
            .await?;
        docs.iter().map(blob_from_doc).collect()
    }

    async fn known_keys(&self, keys: Vec<String>) -> Result<Vec<String>, StoreError> {
        let mut known = Vec::new();
        for chunk in keys.chunks(1_000) {
            let found: Vec<Document> = blobs(&self.db)
                .find(doc! { "_id": { "$in": chunk.to_vec() } })
                .projection(doc! { "_id": 1 })
                .await?
                .try_collect()
                .await?;
            for d in &found {
                known.push(d.string_field("_id")?);
            }
            let found: Vec<Document> = photos(&self.db)
                .find(doc! { "$or": [
                    { "large_key": { "$in": chunk.to_vec() } },
                    { "small_key": { "$in": chunk.to_vec() } },
                ] })
                .await?
                .try_collect()
                .await?;
            for d in &found {
                let photo = photo_from_doc(d)?;
                for key in [photo.large_key, photo.small_key] {
                    if chunk.contains(&key) {
                        known.push(key);
                    }
                }
            }
        }
        Ok(known)
    }

    async fn set_profile_photo(
        &self,
        photo: ProfilePhotoRecord,
    ) -> Result<Option<ProfilePhotoRecord>, StoreError> {
        let previous = photos(&self.db)
            .find_one_and_replace(
                doc! { "_id": &photo.user_id },
                doc! {
                    "_id": &photo.user_id,
                    "version": &photo.version,
                    "large_key": &photo.large_key,
                    "small_key": &photo.small_key,
                    "updated_ms": photo.updated_ms,
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::Before)
            .await?;
        previous.as_ref().map(photo_from_doc).transpose()
    }

    async fn profile_photo(&self, user_id: &str) -> Result<Option<ProfilePhotoRecord>, StoreError> {
        photos(&self.db)
            .find_one(doc! { "_id": user_id })
            .await?
            .as_ref()
            .map(photo_from_doc)
            .transpose()
    }

    async fn delete_profile_photo(
        &self,
        user_id: &str,
    ) -> Result<Option<ProfilePhotoRecord>, StoreError> {
        photos(&self.db)
            .find_one_and_delete(doc! { "_id": user_id })
            .await?
            .as_ref()
            .map(photo_from_doc)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use crate::store::media::suite;
    use crate::store::mongo::tests::fresh;

    suite::blob_index_suite!(fresh().await);
}
