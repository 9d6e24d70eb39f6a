//! The media service's logic: resumable uploads of encrypted blobs with per-kind caps, downloads
//! behind capabilities, profile photos, and the sweeper that deletes what nobody may fetch any
//! more.
//!
//! This module holds [`MediaService`], its config and constructor, and what its features share
//! (blob ids, reading a client's chunk stream); each feature is a file of its own: `upload`
//! (creating, streaming, resuming, aborting and completing uploads), `download` (by capability,
//! streamed or by presigned URL), `profile_photos` and `sweep` (what expires when, and the
//! sweeper).
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

mod download;
mod profile_photos;
mod sweep;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _};
use juntos_clock::SharedClock;
use juntos_proto::media::v1::MediaKind;
use rand::RngCore as _;
use tokio::sync::Semaphore;

pub use self::download::{DOWNLOAD_URL_TTL, Download};
pub use self::profile_photos::ProfileVisibility;
pub use self::sweep::{MAX_STATUS_BLOBS, check_status_blobs};
pub use self::upload::{NewUpload, UPLOAD_URL_TTL, UploadProgress};
use crate::blob::BlobStore;
use crate::error::{Error, Result};
use crate::store::BlobIndex;

/// Upload streams one pod serves at once (on S3 each holds up to one part in memory).
pub const MAX_UPLOAD_STREAMS: usize = 64;
/// How long an upload stream may go without a message before it is ended.
pub const STREAM_IDLE: Duration = Duration::from_secs(60);

/// Largest data field of one `Upload` or `SetProfilePhoto` message.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;
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
mod test_support;
