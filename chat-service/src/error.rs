//! The chat service's errors, and how they look on the wire.

use std::collections::HashMap;
use std::time::Duration;

use juntos_proto::error::{reason, resource_exhausted, status, status_with_metadata};
use juntos_store::mongo::is_unreachable;
use tonic::{Code, Status};

use crate::directory::DirectoryError;
use crate::store::StoreError;

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
    PresenceUnavailable(#[source] PresenceError),
    /// A group request is malformed; the text says which part (never a value).
    #[error("invalid group request: {0}")]
    InvalidGroup(&'static str),
    /// A group would have more members than allowed.
    #[error("{count} members; the limit is {limit}")]
    TooManyMembers { count: usize, limit: usize },
    /// A user would be in more groups than allowed.
    #[error("a user is in too many groups (the limit is {limit})")]
    TooManyGroups { user_id: String, limit: u64 },
    /// The caller is not a member of the group, or there is no such group.
    #[error("you are not a member of this group")]
    NotAMember,
    /// Only admins may do this.
    #[error("only the group's admins may do this")]
    NotAnAdmin,
    /// The change would leave the group without an admin.
    #[error("the group must keep at least one admin")]
    LastAdmin,
    /// A group send named another set of member devices than the group has.
    #[error("the group's members or their devices changed; fetch the group and retry")]
    StaleGroup { version: u64 },
    /// Concurrent changes of one group kept conflicting.
    #[error("the group is changing too fast; retry shortly")]
    GroupBusy,
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
            Error::InvalidGroup(_) => status(Code::InvalidArgument, reason::INVALID_GROUP, message),
            Error::TooManyMembers { .. } => {
                status(Code::InvalidArgument, reason::TOO_MANY_MEMBERS, message)
            }
            Error::TooManyGroups { user_id, .. } => status_with_metadata(
                Code::InvalidArgument,
                reason::TOO_MANY_GROUPS,
                message,
                HashMap::from([("user_id".to_owned(), user_id)]),
            ),
            Error::NotAMember => status(Code::PermissionDenied, reason::NOT_A_MEMBER, message),
            Error::NotAnAdmin => status(Code::PermissionDenied, reason::NOT_AN_ADMIN, message),
            Error::LastAdmin => status(Code::FailedPrecondition, reason::LAST_ADMIN, message),
            Error::StaleGroup { version } => status_with_metadata(
                Code::FailedPrecondition,
                reason::STALE_GROUP,
                message,
                HashMap::from([("version".to_owned(), version.to_string())]),
            ),
            Error::GroupBusy => status(Code::Aborted, reason::GROUP_BUSY, message),
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
            Error::Store(StoreError::Mongo(e)) if is_unreachable(&e) => {
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

/// Presence could not be read or written (Redis unreachable).
#[derive(Debug, thiserror::Error)]
#[error("presence unavailable: {0}")]
pub struct PresenceError(String);

impl From<redis::RedisError> for PresenceError {
    fn from(e: redis::RedisError) -> Self {
        Self(e.to_string())
    }
}

impl From<redis::ParsingError> for PresenceError {
    fn from(e: redis::ParsingError) -> Self {
        Self(format!("unexpected answer: {e}"))
    }
}
