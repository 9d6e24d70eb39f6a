//! Media blobs: opaque ciphertext the clients encrypted, stored under ids the service chose.
//!
//! [`BlobStore`] has two backends passing one suite (`blob/suite.rs`): [`FolderBlobStore`], the
//! embedded default (one file per blob in a folder, written atomically), and [`S3BlobStore`]
//! (any S3-compatible server; multipart uploads for large blobs, presigned URLs). Bodies move
//! as streams of chunks in both directions, so no blob is ever held in memory whole.

mod folder;
mod key;
mod s3;
#[cfg(test)]
pub(crate) mod suite;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use self::folder::FolderBlobStore;
pub use self::key::{MAX_KEY_LEN, validate_key};
pub use self::s3::{DEFAULT_PART_SIZE, S3BlobStore, S3Config};

/// The largest chunk a [`BlobStore::get`] body yields.
pub const READ_CHUNK: usize = 64 * 1024;

/// A blob's bytes as they arrive or leave: chunks, in order, or an I/O error that ends it.
pub type ByteChunks = BoxStream<'static, std::io::Result<Bytes>>;

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

    /// A URL that downloads the blob for `expires_in`, or `None` when the backend has no URLs
    /// of its own (the folder: downloads go through the service).
    async fn presign_get(
        &self,
        key: &str,
        expires_in: Duration,
    ) -> Result<Option<PresignedUrl>, BlobError>;

    /// A URL that uploads the blob with one PUT for `expires_in`, or `None` when the backend has
    /// no URLs of its own.
    async fn presign_put(
        &self,
        key: &str,
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
