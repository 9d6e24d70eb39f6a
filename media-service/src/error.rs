//! The media service's errors, and how they look on the wire.

use std::time::Duration;

use std::collections::HashMap;

use juntos_proto::error::{reason, resource_exhausted, status, status_with_metadata};
use juntos_store::mongo::is_unreachable;
use tonic::{Code, Status};

use crate::blob::BlobError;
use crate::store::StoreError;

/// A media service failure (statuses, blobs, profile photos).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the text says which part (never a value).
    #[error("invalid status: {0}")]
    InvalidStatus(&'static str),
    /// The ciphertext is over the cap.
    #[error("the status is {size} bytes; the limit is {limit}")]
    StatusTooLarge { size: usize, limit: usize },
    /// The audience names more users than allowed.
    #[error("{count} users in the audience; the limit is {limit}")]
    TooManyUsers { count: usize, limit: usize },
    /// The poster has its maximum of statuses in the rolling window.
    #[error("{limit} statuses were posted in the last 24 hours; retry when the oldest expires")]
    StatusLimit { limit: u32, retry_after: Duration },
    /// The caller has no such status (never posted, someone else's, expired or deleted).
    #[error("no such status")]
    NoSuchStatus,
    /// A media request is malformed; the text says which part.
    #[error("invalid media request: {0}")]
    InvalidMedia(&'static str),
    /// An upload is over its kind's cap, or sent more bytes than it declared.
    #[error("the upload is over {limit} bytes")]
    MediaTooLarge { limit: u64 },
    /// The caller uploaded its daily quota of bytes.
    #[error("{limit} bytes were uploaded in the last 24 hours; retry later")]
    UploadQuota { limit: u64, retry_after: Duration },
    /// The caller has its maximum of unfinished uploads.
    #[error("{limit} uploads are unfinished; finish or abort one first")]
    TooManyUploads { limit: u32 },
    /// An upload resumed at another offset than what is stored.
    #[error("the upload has {committed} bytes stored; resume there")]
    UploadOffset { committed: u64 },
    /// A direct upload's PUT has not arrived (or an upload goes the other way).
    #[error("{0}")]
    UploadIncomplete(&'static str),
    /// There is no such blob or upload for the caller.
    #[error("no such blob")]
    NoSuchBlob,
    /// The capability does not open the blob.
    #[error("the capability does not open this blob")]
    NoCapability,
    /// The blob store has no direct URLs.
    #[error("this server has no direct download URLs; use Download")]
    NoDirectUrls,
    /// A profile photo was refused; the text is for the user.
    #[error("{0}")]
    InvalidPhoto(String),
    /// No profile photo the caller may see.
    #[error("no such profile photo")]
    NoSuchPhoto,
    /// The blob store failed.
    #[error("blob store: {0}")]
    Blob(#[from] BlobError),
    /// The login service (visibility) could not be asked.
    #[error("login service: {0}")]
    Login(String),
    /// The storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The media service's result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidStatus(_) => {
                status(Code::InvalidArgument, reason::INVALID_STATUS, message)
            }
            Error::StatusTooLarge { .. } => {
                status(Code::InvalidArgument, reason::STATUS_TOO_LARGE, message)
            }
            Error::TooManyUsers { .. } => {
                status(Code::InvalidArgument, reason::TOO_MANY_USERS, message)
            }
            Error::StatusLimit { retry_after, .. } => {
                resource_exhausted(reason::STATUS_LIMIT, message, retry_after)
            }
            Error::NoSuchStatus => status(Code::NotFound, reason::NO_SUCH_STATUS, message),
            Error::InvalidMedia(_) => status(Code::InvalidArgument, reason::INVALID_MEDIA, message),
            Error::MediaTooLarge { limit } => status_with_metadata(
                Code::InvalidArgument,
                reason::MEDIA_TOO_LARGE,
                message,
                HashMap::from([("max_bytes".to_owned(), limit.to_string())]),
            ),
            Error::UploadQuota { retry_after, .. } => {
                resource_exhausted(reason::MEDIA_QUOTA, message, retry_after)
            }
            Error::TooManyUploads { .. } => {
                status(Code::ResourceExhausted, reason::TOO_MANY_UPLOADS, message)
            }
            Error::UploadOffset { committed } => status_with_metadata(
                Code::FailedPrecondition,
                reason::UPLOAD_OFFSET,
                message,
                HashMap::from([("committed_bytes".to_owned(), committed.to_string())]),
            ),
            Error::NoSuchBlob => status(Code::NotFound, reason::NO_SUCH_BLOB, message),
            Error::UploadIncomplete(_) => {
                status(Code::FailedPrecondition, reason::UPLOAD_INCOMPLETE, message)
            }
            Error::NoCapability => status(Code::PermissionDenied, reason::NO_CAPABILITY, message),
            Error::NoDirectUrls => {
                status(Code::FailedPrecondition, reason::NO_DIRECT_URLS, message)
            }
            Error::InvalidPhoto(_) => status(Code::InvalidArgument, reason::INVALID_PHOTO, message),
            Error::NoSuchPhoto => status(Code::NotFound, reason::NO_SUCH_PHOTO, message),
            Error::Blob(BlobError::InvalidKey) => status(
                Code::InvalidArgument,
                reason::INVALID_MEDIA,
                "invalid blob id",
            ),
            Error::Blob(BlobError::NotFound) => {
                status(Code::NotFound, reason::NO_SUCH_BLOB, "no such blob")
            }
            Error::Blob(BlobError::InvalidRange { .. }) => status(
                Code::OutOfRange,
                reason::INVALID_MEDIA,
                "the offset is beyond the blob",
            ),
            Error::Blob(BlobError::Upload(why)) => {
                // A state the caller can look at (GetUpload) rather than retry blindly.
                tracing::warn!(why = %why, "an upload's parts do not add up");
                status(
                    Code::FailedPrecondition,
                    reason::UPLOAD_INCOMPLETE,
                    "the upload's stored parts do not add up; check it with GetUpload",
                )
            }
            Error::Blob(e) => {
                tracing::error!(error = %e, "blob store failed");
                status(
                    Code::Unavailable,
                    reason::STORE_UNAVAILABLE,
                    "media storage is unavailable; retry shortly",
                )
            }
            Error::Login(e) => {
                tracing::warn!(error = %e, "login service unreachable");
                status(
                    Code::Unavailable,
                    reason::UPSTREAM_UNAVAILABLE,
                    "the login service is unavailable; retry shortly",
                )
            }
            Error::Store(StoreError::Mongo(e)) if is_unreachable(&e) => {
                tracing::warn!(error = %e, "mongodb unreachable");
                store_unavailable()
            }
            Error::Store(StoreError::WriterGone) => store_unavailable(),
            Error::Store(e) => {
                tracing::error!(error = %e, "status store failed");
                status(Code::Internal, reason::INTERNAL, "internal error")
            }
        }
    }
}

fn store_unavailable() -> Status {
    status(
        Code::Unavailable,
        reason::STORE_UNAVAILABLE,
        "storage is unavailable; retry shortly",
    )
}
