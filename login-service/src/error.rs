//! The login service's errors, and how they look on the wire.

use std::collections::HashMap;

use juntos_proto::error::{reason, status, status_with_metadata};
use tonic::{Code, Status};

use crate::store::StoreError;

/// A login service failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device description is unusable; the text says which part (never its value).
    #[error("invalid device: {0}")]
    InvalidDevice(&'static str),
    /// The phone number is empty or too long to be E.164.
    #[error("the phone number must be in E.164 form, e.g. +15551234567")]
    InvalidPhone,
    /// The code is not six digits (no try is spent on it).
    #[error("the code is the 6 digits from the text message")]
    MalformedCode,
    /// The code is wrong; `attempts_left` more tries remain.
    #[error("wrong code")]
    WrongCode {
        /// Tries left before the code is burned.
        attempts_left: u32,
    },
    /// The code was wrong too many times and is burned.
    #[error("too many wrong codes; request a new code")]
    TooManyAttempts,
    /// The code expired.
    #[error("the code expired; request a new code")]
    CodeExpired,
    /// No code is pending for the number.
    #[error("no code is pending for this number; request one")]
    NoCode,
    /// otp-service refused the request or could not be reached; passed through as it is.
    #[error("code verification failed: {}", .0.message())]
    CodeVerification(#[source] Status),
    /// The account has its maximum number of devices.
    #[error("this account has the maximum number of devices; sign one out first")]
    TooManyDevices,
    /// The refresh token is unknown, expired or revoked.
    #[error("invalid refresh token; sign in again")]
    InvalidRefreshToken,
    /// A rotated refresh token was presented again; its session is now revoked.
    #[error("refresh token reused; the session is revoked, sign in again")]
    RefreshTokenReused,
    /// The caller's session is revoked (signed out).
    #[error("this session is signed out")]
    SessionRevoked,
    /// An uploaded prekey is unusable or its signature does not verify; the text says which
    /// (never the key).
    #[error("invalid prekey: {0}")]
    InvalidPrekey(&'static str),
    /// A profile text is unusable; the text says which rule it breaks (never its value).
    #[error("invalid profile: {0}")]
    InvalidProfile(&'static str),
    /// A privacy setting is not a known visibility.
    #[error("invalid privacy setting: visibility must be CONTACTS or NOBODY")]
    InvalidPrivacy,
    /// The user asked about does not exist.
    #[error("no such user")]
    NoSuchUser,
    /// A request lists more items than allowed.
    #[error("at most {max} {what} per call")]
    BatchTooLarge {
        /// What is listed ("user ids", "phone numbers").
        what: &'static str,
        /// The most allowed.
        max: usize,
    },
    /// The storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// Something that cannot happen did (a dangling reference, an unknown answer).
    #[error("internal: {0}")]
    Internal(&'static str),
}

/// The crate's result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::InvalidDevice(_) => {
                status(Code::InvalidArgument, reason::INVALID_DEVICE, message)
            }
            Error::InvalidPhone => status(Code::InvalidArgument, reason::INVALID_PHONE, message),
            Error::MalformedCode => status(Code::InvalidArgument, reason::INVALID_CODE, message),
            Error::WrongCode { attempts_left } => status_with_metadata(
                Code::InvalidArgument,
                reason::WRONG_CODE,
                message,
                HashMap::from([("attempts_left".to_owned(), attempts_left.to_string())]),
            ),
            Error::TooManyAttempts => {
                status(Code::FailedPrecondition, reason::TOO_MANY_ATTEMPTS, message)
            }
            Error::CodeExpired => status(Code::FailedPrecondition, reason::CODE_EXPIRED, message),
            Error::NoCode => status(Code::FailedPrecondition, reason::NO_CODE, message),
            Error::CodeVerification(s) => s,
            Error::TooManyDevices => {
                status(Code::ResourceExhausted, reason::TOO_MANY_DEVICES, message)
            }
            Error::InvalidRefreshToken => status(
                Code::Unauthenticated,
                reason::INVALID_REFRESH_TOKEN,
                message,
            ),
            Error::RefreshTokenReused => {
                status(Code::Unauthenticated, reason::REFRESH_TOKEN_REUSED, message)
            }
            Error::SessionRevoked => {
                status(Code::Unauthenticated, reason::SESSION_REVOKED, message)
            }
            Error::InvalidPrekey(_) => {
                status(Code::InvalidArgument, reason::INVALID_PREKEY, message)
            }
            Error::InvalidProfile(_) => {
                status(Code::InvalidArgument, reason::INVALID_PROFILE, message)
            }
            Error::InvalidPrivacy => {
                status(Code::InvalidArgument, reason::INVALID_PRIVACY, message)
            }
            Error::NoSuchUser => status(Code::NotFound, reason::NO_SUCH_USER, message),
            Error::BatchTooLarge { .. } => {
                status(Code::InvalidArgument, reason::BATCH_TOO_LARGE, message)
            }
            Error::Store(e) => {
                tracing::error!(error = %e, "login store failed");
                status(Code::Internal, reason::INTERNAL, "internal error")
            }
            Error::Internal(what) => {
                tracing::error!(what, "login service invariant broken");
                status(Code::Internal, reason::INTERNAL, "internal error")
            }
        }
    }
}
