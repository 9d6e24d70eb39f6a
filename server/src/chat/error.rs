//! The chat service's errors, and how they look on the wire.

use std::collections::HashMap;
use std::time::Duration;

use juntos_proto::error::{reason, resource_exhausted, status, status_with_metadata};
use tonic::{Code, Status};

use super::directory::DirectoryError;
use super::store::StoreError;

/// A chat service failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The send is malformed; the text says which part (never a value).
    #[error("invalid send: {0}")]
    InvalidEnvelope(&'static str),
    /// An envelope's ciphertext is over the cap.
    #[error("an envelope is {size} bytes; the limit is {limit}")]
    EnvelopeTooLarge { size: usize, limit: usize },
    /// The send names more recipient devices than allowed.
    #[error("{count} recipient devices; the limit is {limit}")]
    TooManyRecipients { count: usize, limit: usize },
    /// The device list does not match the directory: each listed user's current device ids.
    #[error("the device list is out of date for {} user(s); update it and retry", .0.len())]
    StaleDevices(HashMap<String, Vec<String>>),
    /// A recipient user does not exist.
    #[error("no such user")]
    NoSuchUser { user_id: String },
    /// The user sends faster than allowed.
    #[error("sending too fast; retry later")]
    SendRate { retry_after: Duration },
    /// A request names more users than allowed.
    #[error("{count} users; the limit is {limit}")]
    TooManyUsers { count: usize, limit: usize },
    /// Presence (Redis) cannot be reached.
    #[error("presence is unavailable; retry shortly")]
    PresenceUnavailable(#[source] super::presence::PresenceError),
    /// login-service could not be asked for the device lists.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The chat service's result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidEnvelope(_) => {
                status(Code::InvalidArgument, reason::INVALID_ENVELOPE, message)
            }
            Error::EnvelopeTooLarge { .. } => {
                status(Code::InvalidArgument, reason::ENVELOPE_TOO_LARGE, message)
            }
            Error::TooManyRecipients { .. } => {
                status(Code::InvalidArgument, reason::TOO_MANY_RECIPIENTS, message)
            }
            Error::StaleDevices(users) => status_with_metadata(
                Code::FailedPrecondition,
                reason::STALE_DEVICES,
                message,
                users
                    .into_iter()
                    .map(|(user, devices)| (user, devices.join(",")))
                    .collect(),
            ),
            Error::NoSuchUser { user_id } => status_with_metadata(
                Code::NotFound,
                reason::NO_SUCH_USER,
                message,
                HashMap::from([("user_id".to_owned(), user_id)]),
            ),
            Error::SendRate { retry_after } => {
                resource_exhausted(reason::SEND_RATE, message, retry_after)
            }
            Error::TooManyUsers { .. } => {
                status(Code::InvalidArgument, reason::TOO_MANY_USERS, message)
            }
            Error::PresenceUnavailable(e) => {
                tracing::debug!(error = %e, "presence read failed");
                status(Code::Unavailable, reason::PRESENCE_UNAVAILABLE, message)
            }
            Error::Directory(e) => {
                tracing::warn!(error = %e, "device directory unavailable");
                status(
                    Code::Unavailable,
                    reason::UPSTREAM_UNAVAILABLE,
                    "the device directory is unavailable; retry shortly",
                )
            }
            Error::Store(StoreError::Mongo(e)) if mongo_unreachable(&e) => {
                tracing::warn!(error = %e, "mongodb unreachable");
                status(
                    Code::Unavailable,
                    reason::STORE_UNAVAILABLE,
                    "storage is unavailable; retry shortly",
                )
            }
            Error::Store(StoreError::WriterGone) => status(
                Code::Unavailable,
                reason::STORE_UNAVAILABLE,
                "storage is unavailable; retry shortly",
            ),
            Error::Store(e) => {
                tracing::error!(error = %e, "chat store failed");
                status(Code::Internal, reason::INTERNAL, "internal error")
            }
        }
    }
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
