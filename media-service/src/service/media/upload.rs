//! Uploads: `CreateUpload` (the kind's cap, the daily quota, the cap on unfinished uploads), the
//! resumable `Upload` stream stored part by part, `GetUpload`, `AbortUpload`, and
//! `CompleteUpload` for a direct upload (one presigned PUT).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _};
use juntos_proto::meta::Caller;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use super::{MediaService, check_blob_id, ms, new_blob_id, next_data};
use crate::blob::{part_count, part_len};
use crate::error::{Error, Result};
use crate::store::BlobRecord;

/// The upload handle of a direct (presigned PUT) upload: not a blob store upload at all.
const DIRECT: &str = "direct";
/// How long a direct upload's URL works.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A new upload, as `CreateUpload` answers it.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub blob_id: String,
    pub capability: Vec<u8>,
    pub part_size: u64,
    pub upload_expires_ms: i64,
    /// For a direct upload: the presigned PUT.
    pub url: Option<crate::blob::PresignedUrl>,
}

impl std::fmt::Debug for NewUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the capability or the URL's signature.
        f.debug_struct("NewUpload")
            .field("blob_id", &self.blob_id)
            .finish_non_exhaustive()
    }
}

/// How far an upload got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadProgress {
    pub committed_bytes: u64,
    pub size: u64,
    pub complete: bool,
}

/// Marks an upload as having a stream here until dropped.
struct ActiveUpload<'a> {
    active: &'a std::sync::Mutex<std::collections::HashSet<String>>,
    blob_id: String,
}

impl Drop for ActiveUpload<'_> {
    fn drop(&mut self) {
        juntos_store::lock(self.active).remove(&self.blob_id);
    }
}

impl MediaService {
    /// `CreateUpload`; with `direct`, by presigned PUT.
    pub async fn create_upload(
        &self,
        caller: &Caller,
        kind: i32,
        size: u64,
        direct: bool,
    ) -> Result<NewUpload> {
        let cap = self
            .config
            .cap(kind)
            .ok_or(Error::InvalidMedia("unknown media kind"))?;
        if size == 0 {
            return Err(Error::InvalidMedia("an upload has at least one byte"));
        }
        if size > cap {
            return Err(Error::MediaTooLarge { limit: cap });
        }
        // The daily quota: counted before the upload exists (concurrent creates of one user can
        // pass it by a few uploads).
        let now = self.clock.now_ms();
        let (today, oldest) = self
            .index
            .uploaded_since(&caller.user_id, now.saturating_sub(DAY_MS))
            .await?;
        if today.saturating_add(size) > self.config.max_bytes_per_day {
            let frees = oldest.map_or(DAY_MS, |t| t.saturating_add(DAY_MS) - now);
            return Err(Error::UploadQuota {
                limit: self.config.max_bytes_per_day,
                retry_after: Duration::from_millis(
                    u64::try_from(frees.max(1_000)).unwrap_or(1_000),
                ),
            });
        }
        let blob_id = new_blob_id();
        let mut capability = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut capability);
        let (upload, url) = if direct {
            let url = self
                .blobs
                .presign_put(&blob_id, size, UPLOAD_URL_TTL)
                .await?
                .ok_or(Error::NoDirectUrls)?;
            (DIRECT.to_owned(), Some(url))
        } else {
            (self.blobs.begin_upload(&blob_id).await?, None)
        };
        let record = BlobRecord {
            blob_id: blob_id.clone(),
            owner_user_id: caller.user_id.clone(),
            kind,
            size,
            part_size: self.blobs.part_size(),
            parts_done: 0,
            upload: Some(upload.clone()),
            capability_hash: Sha256::digest(&capability).to_vec(),
            created_ms: now,
            expires_ms: now.saturating_add(ms(self.config.upload_grace)),
        };
        let upload_expires_ms = record.expires_ms;
        match self
            .index
            .insert_blob(record, self.config.max_pending_uploads)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.abandon(&blob_id, &upload).await;
                return Err(Error::TooManyUploads {
                    limit: self.config.max_pending_uploads,
                });
            }
            Err(e) => {
                // Not recorded: nothing would ever sweep it.
                self.abandon(&blob_id, &upload).await;
                return Err(e.into());
            }
        }
        Ok(NewUpload {
            blob_id,
            capability,
            part_size: self.blobs.part_size(),
            upload_expires_ms,
            url,
        })
    }

    /// `AbortUpload`: the caller gives up one of its unfinished uploads (freeing its slot).
    pub async fn abort_upload(&self, caller: &Caller, blob_id: &str) -> Result<()> {
        let record = self.own_blob(caller, blob_id).await?;
        let Some(upload) = &record.upload else {
            return Err(Error::UploadIncomplete("the upload is complete"));
        };
        if self.abandon(&record.blob_id, upload).await {
            self.index.remove_blob(&record).await?;
        }
        Ok(())
    }

    /// `CompleteUpload`: a direct upload whose PUT arrived becomes a complete blob.
    pub async fn complete_direct(&self, caller: &Caller, blob_id: &str) -> Result<UploadProgress> {
        let record = self.own_blob(caller, blob_id).await?;
        match record.upload.as_deref() {
            None => return Ok(progress(&record)),
            Some(DIRECT) => {}
            Some(_) => return Err(Error::UploadIncomplete("this upload is sent with Upload")),
        }
        if record.expires_ms <= self.clock.now_ms() {
            return Err(Error::NoSuchBlob);
        }
        match self.blobs.head(&record.blob_id).await? {
            None => Err(Error::UploadIncomplete(
                "nothing was uploaded to the URL yet",
            )),
            Some(size) if size != record.size => {
                // The signed length makes this unlikely; never keep what was not declared.
                self.blobs.delete(&record.blob_id).await?;
                Err(Error::MediaTooLarge { limit: record.size })
            }
            Some(_) => {
                let expires = self
                    .clock
                    .now_ms()
                    .saturating_add(ms(self.config.retention));
                self.index.complete_blob(&record.blob_id, expires).await?;
                Ok(UploadProgress {
                    committed_bytes: record.size,
                    size: record.size,
                    complete: true,
                })
            }
        }
    }

    /// Aborts an upload in the blob store; false (logged) when that failed.
    pub(super) async fn abandon(&self, blob_id: &str, upload: &str) -> bool {
        if upload == DIRECT {
            // Whatever the PUT left is an object of its own.
            return match self.blobs.delete(blob_id).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "deleting an abandoned direct upload failed");
                    false
                }
            };
        }
        match self.blobs.abort_upload(blob_id, upload).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "aborting an upload failed");
                false
            }
        }
    }

    /// The caller's own blob.
    async fn own_blob(&self, caller: &Caller, blob_id: &str) -> Result<BlobRecord> {
        let blob_id = check_blob_id(blob_id)?;
        match self.index.blob(blob_id).await? {
            Some(record) if record.owner_user_id == caller.user_id => Ok(record),
            _ => Err(Error::NoSuchBlob),
        }
    }

    /// `GetUpload`.
    pub async fn upload_progress(&self, caller: &Caller, blob_id: &str) -> Result<UploadProgress> {
        Ok(progress(&self.own_blob(caller, blob_id).await?))
    }

    /// `Upload`: stores `data` (the stream of the messages' data fields, the first message's
    /// included) from `offset` into the caller's upload `blob_id`.
    pub async fn upload(
        &self,
        caller: &Caller,
        blob_id: &str,
        offset: u64,
        mut data: BoxStream<'_, Result<Bytes, tonic::Status>>,
    ) -> Result<UploadProgress, tonic::Status> {
        let record = self.own_blob(caller, blob_id).await?;
        if !record.complete() && record.expires_ms <= self.clock.now_ms() {
            // Abandoned: the sweeper is (or will be) deleting it.
            return Err(Error::NoSuchBlob.into());
        }
        let _permit = self.streams.try_acquire().map_err(|_| {
            tonic::Status::unavailable("too many uploads in progress here; retry shortly")
        })?;
        let _active = {
            let mut active = juntos_store::lock(&self.active);
            if !active.insert(record.blob_id.clone()) {
                return Err(
                    Error::UploadIncomplete("another stream is sending this upload").into(),
                );
            }
            ActiveUpload {
                active: &self.active,
                blob_id: record.blob_id.clone(),
            }
        };
        let progress_now = progress(&record);
        if offset != progress_now.committed_bytes {
            return Err(Error::UploadOffset {
                committed: progress_now.committed_bytes,
            }
            .into());
        }
        if record.upload.as_deref() == Some(DIRECT) {
            return Err(Error::UploadIncomplete("this upload goes to its URL").into());
        }
        let Some(upload) = record.upload.clone() else {
            // Complete already: only an empty resume at the end is right.
            return match next_data(&mut data).await? {
                None => Ok(progress_now),
                Some(_) => Err(Error::MediaTooLarge { limit: record.size }.into()),
            };
        };
        let parts = part_count(record.size, record.part_size);
        let mut leftover = Bytes::new();
        if record.parts_done >= parts {
            // Every part was stored but the upload was not finished: finish it now.
            if next_data(&mut data).await?.is_some() {
                return Err(Error::MediaTooLarge { limit: record.size }.into());
            }
            return self.finish(&record, &upload).await.map_err(Into::into);
        }
        for number in record.parts_done + 1..=parts {
            let len = part_len(record.size, record.part_size, number);
            let stored = self
                .put_part(&record, &upload, number, len, &mut leftover, &mut data)
                .await?;
            if !stored {
                // The client stopped within this part: what it sent of it is dropped.
                return Ok(progress(&self.own_blob(caller, blob_id).await?));
            }
            if !self
                .index
                .commit_part(blob_id, number - 1)
                .await
                .map_err(Error::from)?
            {
                // Another stream of the same upload got there first.
                let now = progress(&self.own_blob(caller, blob_id).await?);
                return Err(Error::UploadOffset {
                    committed: now.committed_bytes,
                }
                .into());
            }
        }
        // Every declared byte is in: anything more is over the size the caps were checked on.
        // A client that lies about the size loses the upload.
        if !leftover.is_empty() || next_data(&mut data).await?.is_some() {
            if self.abandon(blob_id, &upload).await
                && let Ok(Some(now)) = self.index.blob(blob_id).await
            {
                drop(self.index.remove_blob(&now).await);
            }
            return Err(Error::MediaTooLarge { limit: record.size }.into());
        }
        self.finish(&record, &upload).await.map_err(Into::into)
    }

    /// Makes an upload whose every part is stored a complete blob.
    async fn finish(&self, record: &BlobRecord, upload: &str) -> Result<UploadProgress> {
        if record.expires_ms <= self.clock.now_ms() {
            // The grace period ran out while the last part came: the sweeper owns it now.
            return Err(Error::NoSuchBlob);
        }
        match self
            .blobs
            .finish_upload(&record.blob_id, upload, record.part_size, record.size)
            .await
        {
            Ok(()) => {}
            // Finished before, but not recorded (a crash or a failed write in between).
            Err(crate::BlobError::NotFound)
                if self.blobs.head(&record.blob_id).await? == Some(record.size) => {}
            Err(e) => return Err(e.into()),
        }
        let expires = self
            .clock
            .now_ms()
            .saturating_add(ms(self.config.retention));
        if !self.index.complete_blob(&record.blob_id, expires).await? {
            // Swept meanwhile; its object goes with the next orphan sweep.
            return Err(Error::NoSuchBlob);
        }
        Ok(UploadProgress {
            committed_bytes: record.size,
            size: record.size,
            complete: true,
        })
    }

    /// Streams part `number` (`len` bytes) from `leftover` and `data` into the blob store.
    /// Returns `false` when the client's stream ended before the part was whole.
    async fn put_part(
        &self,
        record: &BlobRecord,
        upload: &str,
        number: u64,
        len: u64,
        leftover: &mut Bytes,
        data: &mut BoxStream<'_, Result<Bytes, tonic::Status>>,
    ) -> Result<bool, tonic::Status> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        let number_u32 =
            u32::try_from(number).map_err(|_| Error::InvalidMedia("too many parts"))?;
        let put = self.blobs.put_part(
            &record.blob_id,
            upload,
            record.part_size,
            number_u32,
            len,
            body,
        );
        // Owns the sender: the blob store sees the body end when the pump is done.
        let pump = async move {
            let mut need = len;
            while need > 0 {
                let mut chunk = if leftover.is_empty() {
                    match next_data(data).await {
                        Ok(Some(chunk)) => chunk,
                        Ok(None) => {
                            drop(tx.send(Err(std::io::ErrorKind::UnexpectedEof.into())).await);
                            return Ok(false);
                        }
                        Err(e) => {
                            drop(
                                tx.send(Err(std::io::Error::other("client stream failed")))
                                    .await,
                            );
                            return Err(e);
                        }
                    }
                } else {
                    std::mem::take(leftover)
                };
                let take = usize::try_from(need).map_or(chunk.len(), |n| n.min(chunk.len()));
                let piece = chunk.split_to(take);
                *leftover = chunk;
                need -= piece.len() as u64;
                if tx.send(Ok(piece)).await.is_err() {
                    // The blob store gave up; its error is the answer.
                    break;
                }
            }
            Ok(true)
        };
        let (put, pump) = tokio::join!(put, pump);
        let whole = pump?;
        if !whole {
            return Ok(false);
        }
        put.map_err(Error::from)?;
        Ok(true)
    }
}

fn progress(record: &BlobRecord) -> UploadProgress {
    let committed = if record.complete() {
        record.size
    } else {
        record
            .parts_done
            .saturating_mul(record.part_size)
            .min(record.size)
    };
    UploadProgress {
        committed_bytes: committed,
        size: record.size,
        complete: record.complete(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::stream::StreamExt as _;
    use juntos_proto::error::{metadata_of, reason};
    use tonic::{Code, Status};

    use super::{NewUpload, UploadProgress};
    use crate::service::media::test_support::{
        FILE, Fixture, GRACE_MS, IMAGE, KIB, MIB, ODD_CHUNK, PART, T0, bytes, caller, no_such_blob,
        refused,
    };

    // Regression: `put_part`'s pump once borrowed the body's sender instead of owning it, so the
    // blob store never saw a part's body end and every upload that stored a whole part hung.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_upload_answers_once_its_last_part_is_stored() {
        let f = Fixture::new().await;
        let new = f.create("alice", FILE, 1_000).await.expect("create");
        let done = f
            .send("alice", &new.blob_id, 0, &bytes(1_000), 1_000)
            .await
            .expect("a one-part upload");
        assert!(done.complete, "{done:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_stream_of_odd_chunks_uploads_and_downloads() {
        let f = Fixture::new().await;
        let (data, new) = f.new_upload("alice", 300_000).await;
        assert_eq!(new.part_size, PART);
        assert_eq!(new.capability.len(), 32);
        assert_eq!(new.upload_expires_ms, T0 + GRACE_MS);
        assert!(new.blob_id.starts_with("m-") && new.blob_id.len() == 34);
        assert_eq!(f.upload_files().len(), 1, "the upload's hidden file");

        let done = f
            .send("alice", &new.blob_id, 0, &data, ODD_CHUNK)
            .await
            .expect("upload");
        let whole = UploadProgress {
            committed_bytes: 300_000,
            size: 300_000,
            complete: true,
        };
        assert_eq!(done, whole);
        assert_eq!(
            f.progress("alice", &new.blob_id).await.expect("progress"),
            whole
        );
        assert_eq!(
            f.files(),
            vec![new.blob_id.clone()],
            "only the blob is left"
        );

        let (size, body) = f
            .fetch("alice", &new.blob_id, &[], 0)
            .await
            .expect("download");
        assert_eq!(size, 300_000);
        assert!(body == data, "the download differs from the upload");

        let (size, tail) = f
            .fetch("alice", &new.blob_id, &[], 250_001)
            .await
            .expect("download the tail");
        assert_eq!(size, 300_000, "the size is the whole blob's");
        assert!(tail == data[250_001..], "the tail differs");
        let (_, nothing) = f
            .fetch("alice", &new.blob_id, &[], 300_000)
            .await
            .expect("download from the end");
        assert!(nothing.is_empty());
        refused(
            f.fetch("alice", &new.blob_id, &[], 300_001).await,
            Code::InvalidArgument,
            reason::INVALID_MEDIA,
        );

        // A complete upload takes an empty resume at its end, nothing more.
        let again = f
            .send("alice", &new.blob_id, 300_000, &[], ODD_CHUNK)
            .await
            .expect("empty resume");
        assert_eq!(again, whole);
        refused(
            f.send("alice", &new.blob_id, 300_000, b"x", ODD_CHUNK)
                .await,
            Code::InvalidArgument,
            reason::MEDIA_TOO_LARGE,
        );
        refused(
            f.send("alice", &new.blob_id, 0, &data, ODD_CHUNK).await,
            Code::FailedPrecondition,
            reason::UPLOAD_OFFSET,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_upload_resumes_from_the_last_whole_part() {
        let f = Fixture::new().await;
        let (data, new) = f.new_upload("alice", 300_000).await;

        let first = f
            .send("alice", &new.blob_id, 0, &data[..150_000], ODD_CHUNK)
            .await
            .expect("first stream");
        let halfway = UploadProgress {
            committed_bytes: 2 * PART,
            size: 300_000,
            complete: false,
        };
        assert_eq!(
            first, halfway,
            "two whole parts; the third one's start is dropped"
        );
        assert_eq!(
            f.progress("alice", &new.blob_id).await.expect("progress"),
            halfway
        );
        no_such_blob(f.fetch("alice", &new.blob_id, &[], 0).await);

        for wrong in [0, 150_000, 3 * PART] {
            let status = refused(
                f.send_from("alice", &new.blob_id, &data, wrong, ODD_CHUNK)
                    .await,
                Code::FailedPrecondition,
                reason::UPLOAD_OFFSET,
            );
            assert_eq!(
                metadata_of(&status, "committed_bytes").as_deref(),
                Some("131072"),
                "{status:?}"
            );
        }
        assert_eq!(
            f.progress("alice", &new.blob_id).await.expect("progress"),
            halfway,
            "refused resumes change nothing"
        );

        let done = f
            .send_from("alice", &new.blob_id, &data, 2 * PART, 7_001)
            .await
            .expect("resume");
        assert!(done.complete, "{done:?}");
        assert_eq!(done.committed_bytes, 300_000);
        let (size, body) = f
            .fetch("alice", &new.blob_id, &[], 0)
            .await
            .expect("download");
        assert_eq!(size, 300_000);
        assert!(body == data, "the resumed upload differs from the original");
        assert!(f.upload_files().is_empty(), "{:?}", f.files());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resume_that_stops_again_keeps_what_was_whole() {
        let f = Fixture::new().await;
        let (data, new) = f.new_upload("alice", 200_000).await;
        // Less than one part: nothing is kept.
        let p = f
            .send("alice", &new.blob_id, 0, &data[..50_000], ODD_CHUNK)
            .await
            .expect("short stream");
        assert_eq!((p.committed_bytes, p.complete), (0, false));
        // An empty stream changes nothing either.
        let p = f
            .send("alice", &new.blob_id, 0, &[], ODD_CHUNK)
            .await
            .expect("empty stream");
        assert_eq!((p.committed_bytes, p.complete), (0, false));
        let p = f
            .send("alice", &new.blob_id, 0, &data[..PART as usize], 4_096)
            .await
            .expect("exactly one part");
        assert_eq!((p.committed_bytes, p.complete), (PART, false));
        let p = f
            .send(
                "alice",
                &new.blob_id,
                PART,
                &data[PART as usize..190_000],
                ODD_CHUNK,
            )
            .await
            .expect("one more part and a bit");
        assert_eq!((p.committed_bytes, p.complete), (2 * PART, false));
        let p = f
            .send_from("alice", &new.blob_id, &data, 2 * PART, 999)
            .await
            .expect("the rest");
        assert!(p.complete, "{p:?}");
        let (_, body) = f
            .fetch("alice", &new.blob_id, &[], 0)
            .await
            .expect("download");
        assert!(body == data, "the download differs from the upload");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_are_capped_by_kind_and_by_their_declared_size() {
        let f = Fixture::new().await;
        let status = refused(
            f.create("alice", IMAGE, 256 * KIB + 1).await,
            Code::InvalidArgument,
            reason::MEDIA_TOO_LARGE,
        );
        assert_eq!(
            metadata_of(&status, "max_bytes").as_deref(),
            Some("262144"),
            "{status:?}"
        );
        refused(
            f.create("alice", FILE, MIB + 1).await,
            Code::InvalidArgument,
            reason::MEDIA_TOO_LARGE,
        );
        for (kind, size) in [(0, 10), (99, 10), (-1, 10), (FILE, 0), (IMAGE, 0)] {
            refused(
                f.create("alice", kind, size).await,
                Code::InvalidArgument,
                reason::INVALID_MEDIA,
            );
        }
        assert!(
            f.files().is_empty(),
            "refused uploads leave nothing: {:?}",
            f.files()
        );
        f.create("bob", IMAGE, 256 * KIB)
            .await
            .expect("exactly the image cap");
        f.create("bob", FILE, MIB)
            .await
            .expect("exactly the file cap");

        // A stream with one byte more than declared, within the last part.
        let before = f.upload_files();
        let new = one_byte_too_many(&f, 100_000, ODD_CHUNK, &before).await;
        no_such_blob(f.fetch("alice", &new.blob_id, &new.capability, 0).await);
        no_such_blob(f.fetch("bob", &new.blob_id, &new.capability, 0).await);

        // Whole parts exactly, then another chunk.
        let new = one_byte_too_many(&f, 2 * PART, PART as usize, &before).await;
        no_such_blob(f.fetch("alice", &new.blob_id, &[], 0).await);
    }

    /// Creates alice's upload of `size` bytes and streams it one byte more in `chunk`-byte
    /// pieces: refused, and the lying upload is deleted altogether (no record, no parts: the
    /// upload files are `before` again, no blob).
    async fn one_byte_too_many(
        f: &Fixture,
        size: u64,
        chunk: usize,
        before: &[String],
    ) -> NewUpload {
        let data = bytes(size as usize + 1);
        let new = f.create("alice", FILE, size).await.expect("create");
        refused(
            f.send("alice", &new.blob_id, 0, &data, chunk).await,
            Code::InvalidArgument,
            reason::MEDIA_TOO_LARGE,
        );
        no_such_blob(f.progress("alice", &new.blob_id).await);
        assert_eq!(
            f.upload_files(),
            before,
            "the lying upload's parts are gone"
        );
        assert!(!f.has_file(&new.blob_id));
        new
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chunk_over_one_mib_is_refused() {
        let f = Fixture::new().await;
        let new = f.create("alice", FILE, MIB).await.expect("create");
        let data = bytes(MIB as usize + 1);
        refused(
            f.send("alice", &new.blob_id, 0, &data, data.len()).await,
            Code::InvalidArgument,
            reason::INVALID_MEDIA,
        );
        let p = f.progress("alice", &new.blob_id).await.expect("progress");
        assert!(!p.complete, "{p:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nobody_else_may_touch_an_upload() {
        let f = Fixture::new().await;
        let (data, new) = f.new_upload("alice", 100_000).await;

        no_such_blob(f.progress("bob", &new.blob_id).await);
        no_such_blob(f.send("bob", &new.blob_id, 0, &data, ODD_CHUNK).await);
        // Not even with the capability, and not downloadable before it is complete.
        no_such_blob(f.fetch("bob", &new.blob_id, &new.capability, 0).await);
        no_such_blob(f.fetch("alice", &new.blob_id, &[], 0).await);
        let p = f.progress("alice", &new.blob_id).await.expect("progress");
        assert_eq!(
            (p.committed_bytes, p.complete),
            (0, false),
            "bob changed nothing"
        );

        let done = f
            .send("alice", &new.blob_id, 0, &data, ODD_CHUNK)
            .await
            .expect("alice's own upload");
        assert!(done.complete);
        no_such_blob(f.progress("bob", &new.blob_id).await);
        no_such_blob(f.send("bob", &new.blob_id, 100_000, &[], ODD_CHUNK).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unfinished_uploads_are_capped_per_user() {
        let f = Fixture::new().await;
        let pending = f.fill_pending("alice", 1_000).await;
        refused(
            f.create("alice", FILE, 1_000).await,
            Code::ResourceExhausted,
            reason::TOO_MANY_UPLOADS,
        );
        assert_eq!(
            f.upload_files().len(),
            3,
            "the refused upload's file is gone: {:?}",
            f.files()
        );
        f.create("bob", FILE, 1_000)
            .await
            .expect("another user is not affected");

        // Finishing one frees a slot.
        let done = f
            .send("alice", &pending[0].blob_id, 0, &bytes(1_000), 333)
            .await
            .expect("finish");
        assert!(done.complete);
        f.create("alice", FILE, 1_000).await.expect("a freed slot");
        refused(
            f.create("alice", FILE, 1_000).await,
            Code::ResourceExhausted,
            reason::TOO_MANY_UPLOADS,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_aborted_upload_frees_its_slot_and_its_parts() {
        let f = Fixture::new().await;
        let ids: Vec<String> = f
            .fill_pending("alice", 3 * PART)
            .await
            .into_iter()
            .map(|new| new.blob_id)
            .collect();
        // Part of the first one is stored.
        let data = bytes(PART as usize + 10);
        f.send("alice", &ids[0], 0, &data, ODD_CHUNK)
            .await
            .expect("first part");
        refused(
            f.create("alice", FILE, 10).await,
            Code::ResourceExhausted,
            reason::TOO_MANY_UPLOADS,
        );
        // Only the owner may abort it.
        no_such_blob(f.service.abort_upload(&caller("bob"), &ids[0]).await);
        f.service
            .abort_upload(&caller("alice"), &ids[0])
            .await
            .expect("abort");
        no_such_blob(f.progress("alice", &ids[0]).await);
        assert_eq!(f.upload_files().len(), 2, "{:?}", f.files());
        f.create("alice", FILE, 10)
            .await
            .expect("a slot is free again");
        // A complete blob is not an upload to abort.
        let done = f.uploaded("bob", &bytes(100)).await;
        refused(
            f.service.abort_upload(&caller("bob"), &done.blob_id).await,
            Code::FailedPrecondition,
            reason::UPLOAD_INCOMPLETE,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_stream_at_a_time_per_upload() {
        let f = Fixture::new().await;
        let new = f.create("alice", FILE, 3 * PART).await.expect("create");
        // A first stream that sends a little and then waits.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<Bytes, Status>>(1);
        tx.send(Ok(Bytes::from(bytes(1000)))).await.expect("send");
        let body = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        let service = Arc::clone(&f.service);
        let blob_id = new.blob_id.clone();
        let first = tokio::spawn(async move {
            service
                .upload(&caller("alice"), &blob_id, 0, body)
                .await
                .map(|p| p.committed_bytes)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        refused(
            f.send("alice", &new.blob_id, 0, &bytes(10), ODD_CHUNK)
                .await,
            Code::FailedPrecondition,
            reason::UPLOAD_INCOMPLETE,
        );
        // Once the first ends (it stored no whole part), the upload can be sent again.
        drop(tx);
        assert_eq!(first.await.expect("join").expect("first"), 0);
        let done = f
            .send(
                "alice",
                &new.blob_id,
                0,
                &bytes(3 * PART as usize),
                ODD_CHUNK,
            )
            .await
            .expect("second stream");
        assert!(done.complete);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_user_uploads_at_most_the_daily_quota() {
        let f = Fixture::new().await;
        // 4 MiB a day: four uploads of 1 MiB, then a fifth is refused until the first is a day old.
        for i in 0..4 {
            let new = f
                .create("alice", FILE, MIB)
                .await
                .expect("within the quota");
            if i < 3 {
                // Finished, so the pending cap (3) is not what stops the fifth.
                f.send("alice", &new.blob_id, 0, &bytes(MIB as usize), ODD_CHUNK)
                    .await
                    .expect("upload");
            }
            f.clock.advance_ms(60_000);
        }
        let refused = refused(
            f.create("alice", FILE, 10).await,
            Code::ResourceExhausted,
            reason::MEDIA_QUOTA,
        );
        let wait = juntos_proto::error::retry_after_of(&refused).expect("retry info");
        // The first upload leaves the window 24 h after it was made, 4 minutes ago.
        assert_eq!(wait.as_secs(), 24 * 60 * 60 - 4 * 60);
        // Someone else is not held up.
        f.create("bob", FILE, MIB).await.expect("bob's own quota");
        f.clock
            .advance_ms(i64::try_from(wait.as_millis()).expect("ms") + 1);
        f.create("alice", FILE, MIB).await.expect("a day later");
    }
}
