//! The media service's logic: resumable uploads of encrypted blobs with per-kind caps, downloads
//! behind capabilities, profile photos, and the sweeper that deletes what nobody may fetch any
//! more.
//!
//! Choices:
//! * **Capabilities, not access lists.** The server does not know who a message went to (the
//!   message is end-to-end encrypted, and the same blob may be in a chat, a group and a status).
//!   Each blob gets a 256-bit random capability at upload; the uploader puts it in the encrypted
//!   message, next to the blob's key, so exactly the recipients of the message hold it. A
//!   download needs an access token *and* the capability (or to be the uploader). Only the
//!   capability's SHA-256 is stored, and it is compared in constant time.
//! * **Caps while streaming.** An upload declares its exact size, which must be within its kind's
//!   cap; the stream is cut off at the first byte beyond it, so nothing over the cap is ever
//!   stored or buffered.
//! * **Resumable by part.** Bytes are stored in parts of the blob store's part size (8 MiB by
//!   default), each durable once whole; an interrupted upload resumes from the first part not
//!   stored, on any pod. A part cut short is dropped (re-sent on resume). The server holds one
//!   part in memory per upload stream on S3 (S3 wants a part's length before its body), none
//!   beyond a chunk on the folder; a pod runs at most [`MAX_UPLOAD_STREAMS`] streams, one per
//!   upload, and ends a stream silent for [`STREAM_IDLE`]. A client that sends more than it
//!   declared loses the whole upload.
//! * **What "unreferenced" means.** A complete blob is referenced until its retention ends (30
//!   days by default: long enough for an offline recipient to come back) or, for a status's
//!   blobs, until the status expires; an unfinished upload until the upload grace period ends
//!   (24 hours); a profile photo while it is the user's photo. The sweeper deletes blobs past
//!   that, and also any object in the blob store the index does not know (left by a crash
//!   between writing a blob and recording it) once it is older than the upload grace period.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _};
use juntos_clock::SharedClock;
use juntos_proto::media::v1::MediaKind;
use juntos_proto::meta::Caller;
use juntos_store::Tasks;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::sync::Semaphore;

use crate::blob::{BlobStore, ByteChunks, part_count, part_len, validate_key};
use crate::error::{Error, Result};
use crate::photo::{self, MAX_PHOTO_BYTES};
use crate::store::{BlobIndex, BlobRecord, ProfilePhotoRecord};

/// The upload handle of a direct (presigned PUT) upload: not a blob store upload at all.
const DIRECT: &str = "direct";
/// How long a direct upload's URL works.
pub const UPLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Upload streams one pod serves at once (on S3 each holds up to one part in memory).
pub const MAX_UPLOAD_STREAMS: usize = 64;
/// How long an upload stream may go without a message before it is ended.
pub const STREAM_IDLE: Duration = Duration::from_secs(60);

/// Largest data field of one `Upload` or `SetProfilePhoto` message.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
/// How long a presigned download URL works.
pub const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);
/// Most blobs one status may name.
pub const MAX_STATUS_BLOBS: usize = 10;
/// Blobs looked at per sweeper step.
const SWEEP_PAGE: u32 = 100;
/// Keys listed per step of the orphan sweep.
const ORPHAN_PAGE: usize = 1_000;
/// Profile photos decoded at once (each may take ~200 MiB and a core for a moment).
const PHOTO_DECODERS: usize = 2;

/// How the media service is tuned.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub max_image_bytes: u64,
    pub max_video_bytes: u64,
    pub max_audio_bytes: u64,
    pub max_file_bytes: u64,
    /// How long a complete blob is kept.
    pub retention: Duration,
    /// How long an upload may stay unfinished, and how old an unknown object must be before the
    /// sweeper deletes it.
    pub upload_grace: Duration,
    /// Most unfinished uploads per user.
    pub max_pending_uploads: u32,
    /// Most bytes one user may upload (declare) in any rolling 24 hours.
    pub max_bytes_per_day: u64,
    /// How often the sweeper runs (the orphan sweep every 60th time).
    pub sweep_interval: Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            max_image_bytes: 16 * MIB,
            max_video_bytes: 100 * MIB,
            max_audio_bytes: 100 * MIB,
            max_file_bytes: 100 * MIB,
            retention: Duration::from_secs(30 * 24 * 60 * 60),
            upload_grace: Duration::from_secs(24 * 60 * 60),
            max_pending_uploads: 20,
            max_bytes_per_day: 2 * 1024 * MIB,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl MediaConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        for (name, cap) in [
            ("image", self.max_image_bytes),
            ("video", self.max_video_bytes),
            ("audio", self.max_audio_bytes),
            ("file", self.max_file_bytes),
        ] {
            // The client's chunked encryption handles up to 4 GiB.
            if cap == 0 || cap > 4 << 30 {
                return Err(format!("the {name} cap must be 1 byte to 4 GiB"));
            }
        }
        if self.retention < Duration::from_secs(60) || self.upload_grace < Duration::from_secs(60) {
            return Err("media retention and upload grace must be at least a minute".into());
        }
        if self.max_pending_uploads == 0
            || self.sweep_interval.is_zero()
            || self.max_bytes_per_day == 0
        {
            return Err("pending uploads and the media sweep interval must be positive".into());
        }
        Ok(())
    }

    /// The cap of `kind`, or `None` for an unknown kind.
    pub fn cap(&self, kind: i32) -> Option<u64> {
        match MediaKind::try_from(kind).ok()? {
            MediaKind::Image => Some(self.max_image_bytes),
            MediaKind::Video => Some(self.max_video_bytes),
            MediaKind::Audio => Some(self.max_audio_bytes),
            MediaKind::File => Some(self.max_file_bytes),
            MediaKind::Unspecified => None,
        }
    }
}

/// Who may see whose profile (login's `VisibleTo`, aspect PROFILE).
#[async_trait]
pub trait ProfileVisibility: Send + Sync {
    /// Whether `viewer` may see `owner`'s profile (never asked for `viewer == owner`).
    async fn may_see(&self, viewer: &str, owner: &str) -> Result<bool, String>;
}

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

/// A download's body.
pub struct Download {
    pub size: u64,
    pub body: ByteChunks,
}

/// The media service.
pub struct MediaService {
    config: MediaConfig,
    index: Arc<dyn BlobIndex>,
    blobs: Arc<dyn BlobStore>,
    visibility: Arc<dyn ProfileVisibility>,
    clock: SharedClock,
    decoders: Semaphore,
    /// Upload streams running in this process.
    streams: Semaphore,
    /// The uploads with a stream running in this process: one stream per upload at a time.
    active: std::sync::Mutex<std::collections::HashSet<String>>,
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

impl std::fmt::Debug for MediaService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Blob ids as clients send them: exactly what [`new_blob_id`] makes.
fn check_blob_id(blob_id: &str) -> Result<&str> {
    let ok = blob_id.len() == 34
        && blob_id.starts_with("m-")
        && blob_id[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    ok.then_some(blob_id)
        .ok_or(Error::InvalidMedia("not a blob id"))
}

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

/// A new blob id: `m-` and 128 random bits in hex (a valid blob store key).
pub fn new_blob_id() -> String {
    format!("m-{}", random_hex(16))
}

impl MediaService {
    pub fn new(
        config: MediaConfig,
        index: Arc<dyn BlobIndex>,
        blobs: Arc<dyn BlobStore>,
        visibility: Arc<dyn ProfileVisibility>,
        clock: SharedClock,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            index,
            blobs,
            visibility,
            clock,
            decoders: Semaphore::new(PHOTO_DECODERS),
            streams: Semaphore::new(MAX_UPLOAD_STREAMS),
            active: std::sync::Mutex::default(),
        })
    }

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
    async fn abandon(&self, blob_id: &str, upload: &str) -> bool {
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

    /// The caller's complete blob, if the capability opens it (or the caller uploaded it).
    async fn fetchable(
        &self,
        caller: &Caller,
        blob_id: &str,
        capability: &[u8],
    ) -> Result<BlobRecord> {
        let blob_id = check_blob_id(blob_id)?;
        let record = match self.index.blob(blob_id).await? {
            Some(record) if record.complete() && record.expires_ms > self.clock.now_ms() => record,
            _ => return Err(Error::NoSuchBlob),
        };
        let opens = bool::from(
            Sha256::digest(capability)
                .as_slice()
                .ct_eq(&record.capability_hash),
        );
        if opens || record.owner_user_id == caller.user_id {
            Ok(record)
        } else {
            Err(Error::NoCapability)
        }
    }

    /// `Download`.
    pub async fn download(
        &self,
        caller: &Caller,
        blob_id: &str,
        capability: &[u8],
        offset: u64,
    ) -> Result<Download> {
        let record = self.fetchable(caller, blob_id, capability).await?;
        if offset > record.size {
            return Err(Error::InvalidMedia("the offset is beyond the blob"));
        }
        let read = self.blobs.get(&record.blob_id, offset, None).await?;
        Ok(Download {
            size: read.size,
            body: read.body,
        })
    }

    /// `GetDownloadUrl`: the URL and when it stops working.
    pub async fn download_url(
        &self,
        caller: &Caller,
        blob_id: &str,
        capability: &[u8],
    ) -> Result<(String, i64)> {
        let record = self.fetchable(caller, blob_id, capability).await?;
        let url = self
            .blobs
            .presign_get(&record.blob_id, DOWNLOAD_URL_TTL)
            .await?
            .ok_or(Error::NoDirectUrls)?;
        let expires = SystemTime::now()
            .checked_add(DOWNLOAD_URL_TTL)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(i64::MAX, ms);
        Ok((url.url, expires))
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

    /// `SetProfilePhoto`: `data` is the image file, in chunks.
    pub async fn set_profile_photo(
        &self,
        caller: &Caller,
        mut data: BoxStream<'_, Result<Bytes, tonic::Status>>,
    ) -> Result<String, tonic::Status> {
        // At most PHOTO_DECODERS photos are read (10 MiB each) and decoded at once.
        let permit = self
            .decoders
            .acquire()
            .await
            .map_err(|_| tonic::Status::unavailable("shutting down"))?;
        let mut image = Vec::new();
        while let Some(chunk) = next_data(&mut data).await? {
            if image.len() + chunk.len() > MAX_PHOTO_BYTES {
                return Err(Error::MediaTooLarge {
                    limit: MAX_PHOTO_BYTES as u64,
                }
                .into());
            }
            image.extend_from_slice(&chunk);
        }
        let processed = tokio::task::spawn_blocking(move || photo::process_profile_photo(&image))
            .await
            .map_err(|_| tonic::Status::internal("the photo decoder failed"))?
            .map_err(|e| Error::InvalidPhoto(e.to_string()))?;
        drop(permit);
        let version = random_hex(8);
        let record = ProfilePhotoRecord {
            user_id: caller.user_id.clone(),
            version: version.clone(),
            large_key: format!("pl-{}", random_hex(16)),
            small_key: format!("ps-{}", random_hex(16)),
            updated_ms: self.clock.now_ms(),
        };
        for (key, jpeg) in [
            (&record.large_key, processed.large),
            (&record.small_key, processed.small),
        ] {
            let body = futures_util::stream::iter([Ok(Bytes::from(jpeg))]).boxed();
            self.blobs.put(key, body).await.map_err(Error::from)?;
        }
        let previous = self
            .index
            .set_profile_photo(record)
            .await
            .map_err(Error::from)?;
        if let Some(previous) = previous {
            self.delete_photo_blobs(&previous).await;
        }
        Ok(version)
    }

    async fn delete_photo_blobs(&self, photo: &ProfilePhotoRecord) {
        for key in [&photo.large_key, &photo.small_key] {
            if let Err(e) = self.blobs.delete(key).await {
                // The orphan sweep removes it later.
                tracing::warn!(error = %e, "deleting an old profile photo failed");
            }
        }
    }

    /// `GetProfilePhoto`: the JPEG and its version.
    pub async fn profile_photo(
        &self,
        caller: &Caller,
        user_id: &str,
        small: bool,
    ) -> Result<(Vec<u8>, String)> {
        if user_id.is_empty() || user_id.len() > 128 {
            return Err(Error::NoSuchPhoto);
        }
        if user_id != caller.user_id
            && !self
                .visibility
                .may_see(&caller.user_id, user_id)
                .await
                .map_err(Error::Login)?
        {
            return Err(Error::NoSuchPhoto);
        }
        let photo = self
            .index
            .profile_photo(user_id)
            .await?
            .ok_or(Error::NoSuchPhoto)?;
        let key = if small {
            &photo.small_key
        } else {
            &photo.large_key
        };
        let mut read = match self.blobs.get(key, 0, None).await {
            Ok(read) => read,
            Err(crate::BlobError::NotFound) => return Err(Error::NoSuchPhoto),
            Err(e) => return Err(e.into()),
        };
        // Our own JPEGs: a few hundred KiB at most.
        let mut jpeg = Vec::with_capacity(usize::try_from(read.size).unwrap_or(0).min(4 << 20));
        while let Some(chunk) = read.body.next().await {
            jpeg.extend_from_slice(&chunk.map_err(crate::BlobError::from)?);
        }
        Ok((jpeg, photo.version))
    }

    /// `DeleteProfilePhoto`.
    pub async fn delete_profile_photo(&self, caller: &Caller) -> Result<()> {
        if let Some(previous) = self.index.delete_profile_photo(&caller.user_id).await? {
            self.delete_photo_blobs(&previous).await;
        }
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

/// The next non-empty data field, `None` at the end of the stream.
async fn next_data(
    data: &mut BoxStream<'_, Result<Bytes, tonic::Status>>,
) -> Result<Option<Bytes>, tonic::Status> {
    loop {
        let Some(chunk) = tokio::time::timeout(STREAM_IDLE, data.next())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("the stream stalled; resume it"))?
        else {
            return Ok(None);
        };
        let chunk = chunk?;
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(Error::InvalidMedia("a chunk is over 1 MiB").into());
        }
        if !chunk.is_empty() {
            return Ok(Some(chunk));
        }
    }
}

#[cfg(test)]
mod s3_tests;
#[cfg(test)]
mod tests;
