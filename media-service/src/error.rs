//! The media service's errors, and how they look on the wire.

use std::time::Duration;

use juntos_proto::error::{reason, resource_exhausted, status};
use tonic::{Code, Status};

use crate::store::StoreError;

/// A status service failure.
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
            Error::Store(StoreError::Mongo(e)) if mongo_unreachable(&e) => {
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

/// Whether a MongoDB error means the server could not be reached (worth a retry later), not
/// that it refused the operation.
fn mongo_unreachable(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    matches!(
        *e.kind,
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    )
}
