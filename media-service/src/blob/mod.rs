//! Media blobs: opaque ciphertext the clients encrypted, stored under ids the service chose.
//!
//! [`BlobStore`] has two backends passing one suite (`blob/suite.rs`): [`FolderBlobStore`], the
//! embedded default (one file per blob in a folder, written atomically), and [`S3BlobStore`]
//! (any S3-compatible server; multipart uploads for large blobs, presigned URLs). Bodies move
//! as streams of chunks in both directions, so no blob is ever held in memory whole.
//!
//! Besides one-shot [`BlobStore::put`], a blob can be written as a resumable upload: begun once,
//! then written part by part (each part durable on its own, so an interrupted upload goes on
//! from the first missing part, possibly on another pod), then finished, which makes it visible
//! under its key at once. On S3 this is a multipart upload; on the folder, a hidden file written
//! at offsets and renamed into place.

mod folder;
mod key;
pub(crate) mod s3;
#[cfg(test)]
pub(crate) mod suite;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt as _};

pub use self::folder::FolderBlobStore;
pub use self::key::{MAX_KEY_LEN, validate_key};
pub use self::s3::{DEFAULT_PART_SIZE, MAX_PART_SIZE, S3BlobStore, S3Config};

/// The largest chunk a [`BlobStore::get`] body yields.
pub const READ_CHUNK: usize = 64 * 1024;

/// A blob's bytes as they arrive or leave: chunks, in order, or an I/O error that ends it.
pub type ByteChunks = BoxStream<'static, std::io::Result<Bytes>>;

/// The number of parts of a resumable upload of `size` bytes in parts of `part_size`.
pub fn part_count(size: u64, part_size: u64) -> u64 {
    size.div_ceil(part_size.max(1)).max(1)
}

/// The length of part `number` (1-based) of an upload of `size` bytes.
pub fn part_len(size: u64, part_size: u64, number: u64) -> u64 {
    let start = (number.saturating_sub(1)).saturating_mul(part_size);
    size.saturating_sub(start).min(part_size)
}

/// Part `number`'s `body` as [`BlobStore::put_part`] takes it: exactly `len` bytes. A chunk that
/// goes past `len` is not yielded but fails the stream, and so does a body that ends short of it,
/// both with [`BlobError::Upload`]; the body's own error fails it with [`BlobError::Io`].
pub(crate) fn exact_part(
    body: ByteChunks,
    number: u32,
    len: u64,
) -> BoxStream<'static, Result<Bytes, BlobError>> {
    futures_util::stream::try_unfold((body, 0u64), move |(mut body, written)| async move {
        let Some(chunk) = body.next().await else {
            if written != len {
                return Err(BlobError::Upload(format!(
                    "part {number} has {written} of {len} bytes"
                )));
            }
            return Ok(None);
        };
        let chunk = chunk?;
        let written = written + chunk.len() as u64;
        if written > len {
            return Err(BlobError::Upload(format!(
                "part {number} is over {len} bytes"
            )));
        }
        Ok(Some((chunk, (body, written))))
    })
    .boxed()
}

/// What [`BlobStore::get`] returns.
pub struct BlobRead {
    /// The size of the whole blob (not of the range read).
    pub size: u64,
    /// The requested bytes, in chunks of at most [`READ_CHUNK`].
    pub body: ByteChunks,
}

/// One blob as [`BlobStore::list`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    /// When it was written: a sweeper leaves young blobs alone, as their message may still be
    /// on its way.
    pub modified: SystemTime,
}

/// A URL a client uses directly against the backend, without the service in the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    pub url: String,
    /// Headers the request must carry as they are (they are part of the signature).
    pub headers: Vec<(String, String)>,
}

/// Blob storage. Keys are ids the service chose (see [`validate_key`]); every method refuses
/// any other key with [`BlobError::InvalidKey`] before touching storage.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `body` under `key`, replacing any blob there, and returns its size. The blob
    /// becomes visible only once the whole body is stored: if `body` yields an error, or the
    /// future is dropped, nothing under `key` changes. Memory use is bounded (one chunk on the
    /// folder, one part on S3), whatever the size of the blob.
    async fn put(&self, key: &str, body: ByteChunks) -> Result<u64, BlobError>;

    /// Reads the blob from `offset` (resumed downloads start where they stopped), at most `len`
    /// bytes when given, else to the end. An `offset` equal to the size reads nothing; beyond
    /// it is [`BlobError::InvalidRange`].
    async fn get(&self, key: &str, offset: u64, len: Option<u64>) -> Result<BlobRead, BlobError>;

    /// The size of the blob, or `None` when there is none under `key`.
    async fn head(&self, key: &str) -> Result<Option<u64>, BlobError>;

    /// Deletes the blob; deleting a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;

    /// Up to `limit` blobs with keys after `after` (all when `None`), in key order: a sweeper
    /// pages through everything by passing the last key it saw.
    async fn list(&self, after: Option<&str>, limit: usize) -> Result<Vec<BlobInfo>, BlobError>;

    /// The size of every part of a resumable upload but the last (which is shorter or equal).
    fn part_size(&self) -> u64;

    /// Starts a resumable upload of `key` and returns its handle (at most 1,024 characters),
    /// which the caller keeps to continue it. Nothing is visible under `key` until
    /// [`finish_upload`](Self::finish_upload).
    async fn begin_upload(&self, key: &str) -> Result<String, BlobError>;

    /// Stores part `number` (1-based) of an upload in parts of `part_size` bytes (the
    /// [`part_size`](Self::part_size) when the upload began: the caller keeps it, so a changed
    /// setting never moves the parts of an upload in progress): exactly `len` bytes of `body`,
    /// which is `part_size` for every part but the last. Durable once it returns; a failed or
    /// dropped call leaves the part to be sent again (a body longer or shorter than `len`
    /// fails). Storing a part again replaces it.
    async fn put_part(
        &self,
        key: &str,
        upload: &str,
        part_size: u64,
        number: u32,
        len: u64,
        body: ByteChunks,
    ) -> Result<(), BlobError>;

    /// Makes the upload, every part of a blob of `size` bytes in parts of `part_size` stored,
    /// the blob under `key`. [`BlobError::NotFound`] when the upload is unknown (S3 also fails
    /// when a part is missing; the folder only checks the length, so the caller must track
    /// which parts were stored).
    async fn finish_upload(
        &self,
        key: &str,
        upload: &str,
        part_size: u64,
        size: u64,
    ) -> Result<(), BlobError>;

    /// Drops an unfinished upload and its parts. An upload the backend reports as unknown is no
    /// error (AWS S3's NoSuchUpload; some S3-compatible servers answer AccessDenied instead,
    /// which is an error).
    async fn abort_upload(&self, key: &str, upload: &str) -> Result<(), BlobError>;

    /// A URL that downloads the blob for `expires_in`, or `None` when the backend has no URLs
    /// of its own (the folder: downloads go through the service).
    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<PresignedUrl>, BlobError>;

    /// A URL that uploads the blob of exactly `len` bytes with one PUT for `expires_in` (the
    /// length is part of the signature: a body of another length is refused by the backend),
    /// or `None` when the backend has no URLs of its own.
    async fn presign_put(
        &self,
        key: &str,
        len: u64,
        expires_in: Duration,
    ) -> Result<Option<PresignedUrl>, BlobError>;
}

/// A blob store failure.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The key is not a service id (wrong length or a character outside `[a-z0-9_-]`).
    #[error("invalid blob key")]
    InvalidKey,
    /// There is no blob under the key.
    #[error("no such blob")]
    NotFound,
    /// The read starts beyond the end of the blob.
    #[error("offset {offset} is beyond the blob's {size} bytes")]
    InvalidRange { offset: u64, size: u64 },
    /// A resumable upload's part or size does not add up (a missing part, a body of another
    /// length than announced).
    #[error("upload: {0}")]
    Upload(String),
    /// The body given to `put` failed, or the file system did.
    #[error("blob i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The S3 server refused or could not be reached; the text is the SDK's (no blob content).
    #[error("s3 {operation}: {message}")]
    S3 {
        operation: &'static str,
        message: String,
    },
}
