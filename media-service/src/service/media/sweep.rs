//! Expiry and the sweeper: a status's blobs expire with it (`expire_with_status`); the sweeper
//! deletes blobs past their time and abandoned uploads, and, now and then, objects in the blob
//! store that the index does not know.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use juntos_proto::meta::Caller;
use juntos_store::Tasks;

use super::{MediaService, check_blob_id};
use crate::blob::validate_key;
use crate::error::{Error, Result};

/// Most blobs one status may name.
pub const MAX_STATUS_BLOBS: usize = 10;
/// Blobs looked at per sweeper step.
const SWEEP_PAGE: u32 = 100;
/// Keys listed per step of the orphan sweep.
const ORPHAN_PAGE: usize = 1_000;

/// Checks the blob ids a status names: at most [`MAX_STATUS_BLOBS`], each a blob id.
pub fn check_status_blobs(blob_ids: &[String]) -> Result<()> {
    if blob_ids.len() > MAX_STATUS_BLOBS {
        return Err(Error::InvalidMedia("a status shows at most 10 blobs"));
    }
    for id in blob_ids {
        check_blob_id(id)?;
    }
    Ok(())
}

impl MediaService {
    /// Starts the sweeper (at once, then every `sweep_interval`; the orphan sweep on every 60th
    /// run, the first an hour in by default), which stops when the returned tasks are dropped.
    pub fn start(self: &Arc<Self>) -> Tasks {
        let mut tasks = Tasks::default();
        let this = Arc::clone(self);
        tasks.spawn(async move {
            for run in 0u64.. {
                this.sweep_once().await;
                // Not at start-up: listing a large bucket on every pod start is wasted work.
                if run % 60 == 59 {
                    this.sweep_orphans_once().await;
                }
                tokio::time::sleep(this.config.sweep_interval).await;
            }
        });
        tasks
    }

    /// After a status was posted: its blobs (the poster's) expire with it.
    pub async fn expire_with_status(
        &self,
        caller: &Caller,
        blob_ids: &[String],
        expires_ms: i64,
    ) -> Result<()> {
        check_status_blobs(blob_ids)?;
        if blob_ids.is_empty() {
            return Ok(());
        }
        self.index
            .expire_blobs_at(&caller.user_id, blob_ids, expires_ms)
            .await?;
        Ok(())
    }

    /// Deletes blobs past their time and abandoned uploads; returns how many (failures are
    /// logged and retried on the next run).
    pub async fn sweep_once(&self) -> u64 {
        let mut swept = 0;
        // Past the rows that failed, so they never hold up the rest.
        let mut after: Option<(i64, String)> = None;
        loop {
            let due = match self
                .index
                .expired_blobs(self.clock.now_ms(), after.as_ref(), SWEEP_PAGE)
                .await
            {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "media sweep: listing expired blobs failed");
                    return swept;
                }
            };
            let page_len = due.len();
            if let Some(last) = due.last() {
                after = Some((last.expires_ms, last.blob_id.clone()));
            }
            for record in due {
                let gone = match &record.upload {
                    // Kept (and tried again next run) when the abort failed.
                    Some(upload) => self.abandon(&record.blob_id, upload).await,
                    None => match self.blobs.delete(&record.blob_id).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "media sweep: deleting a blob failed");
                            false
                        }
                    },
                };
                if !gone {
                    continue;
                }
                match self.index.remove_blob(&record).await {
                    Ok(removed) => swept += u64::from(removed),
                    Err(e) => tracing::warn!(error = %e, "media sweep: forgetting a blob failed"),
                }
            }
            if page_len < SWEEP_PAGE as usize {
                break;
            }
        }
        if swept > 0 {
            tracing::info!(swept, "removed expired media");
        }
        swept
    }

    /// Deletes objects in the blob store that the index does not know and that are older than
    /// the upload grace period; returns how many.
    pub async fn sweep_orphans_once(&self) -> u64 {
        let grace = self.config.upload_grace;
        let now =
            UNIX_EPOCH + Duration::from_millis(u64::try_from(self.clock.now_ms()).unwrap_or(0));
        let mut after: Option<String> = None;
        let mut deleted = 0;
        loop {
            let page = match self.blobs.list(after.as_deref(), ORPHAN_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "orphan sweep: listing blobs failed");
                    return deleted;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let old: Vec<String> = page
                .iter()
                .filter(|b| now.duration_since(b.modified).is_ok_and(|age| age >= grace))
                .map(|b| b.key.clone())
                .collect();
            let known = match self.index.known_keys(old.clone()).await {
                Ok(known) => known,
                Err(e) => {
                    tracing::warn!(error = %e, "orphan sweep: looking keys up failed");
                    return deleted;
                }
            };
            for key in old
                .iter()
                .filter(|k| !known.contains(k) && validate_key(k).is_ok())
            {
                match self.blobs.delete(key).await {
                    Ok(()) => deleted += 1,
                    Err(e) => tracing::warn!(error = %e, "orphan sweep: deleting failed"),
                }
            }
            if page.len() < ORPHAN_PAGE {
                break;
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "removed unreferenced blobs");
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use bytes::Bytes;
    use futures_util::stream::StreamExt as _;
    use juntos_proto::error::reason;
    use tonic::Code;

    use super::MAX_STATUS_BLOBS;
    use crate::blob::BlobStore as _;
    use crate::service::media::test_support::{
        DAY_MS, FILE, Fixture, GRACE_MS, HOUR_MS, ODD_CHUNK, PART, RETENTION_MS, T0, bytes, caller,
        no_such_blob, png, refused, within,
    };

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweeper_abandons_uploads_after_the_grace_period() {
        let f = Fixture::new().await;
        let (data, new) = f.new_upload("alice", 200_000).await;
        let p = f
            .send("alice", &new.blob_id, 0, &data[..70_000], ODD_CHUNK)
            .await
            .expect("one part");
        assert_eq!(p.committed_bytes, PART);
        let complete = f.uploaded("alice", &bytes(1_000)).await;
        let up_files = f.upload_files();
        assert_eq!(up_files.len(), 1, "{:?}", f.files());

        f.clock.advance_ms(GRACE_MS - 1_000);
        assert_eq!(f.sweep().await, 0, "within the grace period");
        f.progress("alice", &new.blob_id)
            .await
            .expect("still there");

        f.clock.advance_ms(2_000);
        assert_eq!(f.sweep().await, 1);
        no_such_blob(f.progress("alice", &new.blob_id).await);
        no_such_blob(
            f.send_from("alice", &new.blob_id, &data, PART, ODD_CHUNK)
                .await,
        );
        assert!(!f.has_file(&up_files[0]), "{:?}", f.files());
        assert!(f.upload_files().is_empty(), "{:?}", f.files());
        assert_eq!(f.files(), vec![complete.blob_id.clone()]);
        f.fetch("alice", &complete.blob_id, &[], 0)
            .await
            .expect("the complete blob survives");
        assert_eq!(f.sweep().await, 0, "nothing more to sweep");

        // The slot is free again.
        f.fill_pending("alice", 10).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sweeper_deletes_complete_blobs_after_retention() {
        let f = Fixture::new().await;
        let data = bytes(100_000);
        let new = f.uploaded("alice", &data).await;
        assert!(f.has_file(&new.blob_id));

        f.clock.advance_ms(RETENTION_MS - 1_000);
        assert_eq!(f.sweep().await, 0);
        let (_, body) = f
            .fetch("bob", &new.blob_id, &new.capability, 0)
            .await
            .expect("within retention");
        assert!(body == data);

        f.clock.advance_ms(2_000);
        // Gone for downloads as soon as it expires, before any sweep.
        no_such_blob(f.fetch("alice", &new.blob_id, &[], 0).await);
        assert_eq!(f.sweep().await, 1);
        no_such_blob(f.fetch("bob", &new.blob_id, &new.capability, 0).await);
        no_such_blob(f.progress("alice", &new.blob_id).await);
        assert!(!f.has_file(&new.blob_id));
        assert!(f.files().is_empty(), "{:?}", f.files());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_status_brings_its_blobs_expiry_forward() {
        let f = Fixture::new().await;
        let data = bytes(5_000);
        let status_blob = f.uploaded("alice", &data).await;
        let other = f.uploaded("alice", &data).await;
        let status_ends = T0 + HOUR_MS;

        // Someone else's status cannot shorten alice's blob.
        within(
            "expire_with_status",
            f.service.expire_with_status(
                &caller("bob"),
                std::slice::from_ref(&other.blob_id),
                T0 + 60_000,
            ),
        )
        .await
        .expect("bob's status");
        within(
            "expire_with_status",
            f.service.expire_with_status(
                &caller("alice"),
                std::slice::from_ref(&status_blob.blob_id),
                status_ends,
            ),
        )
        .await
        .expect("alice's status");
        // Never later than it was.
        within(
            "expire_with_status",
            f.service.expire_with_status(
                &caller("alice"),
                std::slice::from_ref(&status_blob.blob_id),
                T0 + 60 * DAY_MS,
            ),
        )
        .await
        .expect("a later status");

        refused(
            f.service
                .expire_with_status(&caller("alice"), &["../x".to_owned()], status_ends)
                .await,
            Code::InvalidArgument,
            reason::INVALID_MEDIA,
        );
        let eleven = vec![status_blob.blob_id.clone(); MAX_STATUS_BLOBS + 1];
        refused(
            f.service
                .expire_with_status(&caller("alice"), &eleven, status_ends)
                .await,
            Code::InvalidArgument,
            reason::INVALID_MEDIA,
        );
        f.service
            .expire_with_status(&caller("alice"), &[], status_ends)
            .await
            .expect("no blobs");

        f.clock.advance_ms(HOUR_MS - 1_000);
        assert_eq!(f.sweep().await, 0);
        f.fetch("bob", &status_blob.blob_id, &status_blob.capability, 0)
            .await
            .expect("while the status lives");

        f.clock.advance_ms(2_000);
        assert_eq!(f.sweep().await, 1, "only the status's blob");
        no_such_blob(
            f.fetch("bob", &status_blob.blob_id, &status_blob.capability, 0)
                .await,
        );
        assert!(!f.has_file(&status_blob.blob_id));
        let (_, body) = f
            .fetch("bob", &other.blob_id, &other.capability, 0)
            .await
            .expect("the other blob keeps its retention");
        assert!(body == data);
        assert_eq!(f.files(), vec![other.blob_id.clone()]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_orphan_sweep_deletes_only_old_unknown_objects() {
        let real_now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_millis(),
        )
        .expect("ms");
        let f = Fixture::at(real_now).await;
        let orphan = format!("m-{}", "0123456789abcdef".repeat(2));
        let orphan_photo = format!("pl-{}", "fedcba9876543210".repeat(2));
        for key in [&orphan, &orphan_photo] {
            within(
                "put",
                f.blobs.put(
                    key,
                    futures_util::stream::iter([Ok(Bytes::from(bytes(1_000)))]).boxed(),
                ),
            )
            .await
            .expect("put an orphan");
        }
        let data = bytes(100_000);
        let blob = f.uploaded("alice", &data).await;
        let unfinished = f.create("alice", FILE, 100_000).await.expect("create");
        f.set_photo("alice", &png(120, 80)).await.expect("photo");
        let before = f.files();
        assert_eq!(before.len(), 6, "{before:?}");

        assert_eq!(f.sweep_orphans().await, 0, "everything is young");
        assert_eq!(f.files(), before);

        f.clock.advance_ms(GRACE_MS + 60_000);
        assert_eq!(f.sweep_orphans().await, 2, "the two unknown objects");
        assert!(!f.has_file(&orphan) && !f.has_file(&orphan_photo));
        let after = f.files();
        assert_eq!(after.len(), 4, "{after:?}");
        let (_, body) = f
            .fetch("alice", &blob.blob_id, &[], 0)
            .await
            .expect("the known blob stays");
        assert!(body == data);
        f.photo("alice", "alice", false)
            .await
            .expect("the photo stays");
        f.photo("alice", "alice", true)
            .await
            .expect("the small photo stays");
        f.progress("alice", &unfinished.blob_id)
            .await
            .expect("the unfinished upload stays");
        assert_eq!(f.upload_files().len(), 1);
        assert_eq!(f.sweep_orphans().await, 0, "nothing more");
    }
}
