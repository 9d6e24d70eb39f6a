//! The one error type the client library hands to apps, and how server statuses map onto it.

use juntos_proto::error::{metadata_of, reason, reason_of, retry_after_of};
use tonic::{Code, Status};

/// What went wrong, in terms an app can act on. Every message is one line and free of phone
/// numbers, codes, keys and tokens.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum ClientError {
    /// The phone number is not a valid E.164 number (or the SMS provider refused it).
    #[error("invalid phone number: {message}")]
    InvalidPhoneNumber { message: String },
    /// The code is wrong; `attempts_left` more tries remain before it is burned.
    #[error("wrong code: {attempts_left} {} left", attempts_word(*attempts_left))]
    WrongCode { attempts_left: u32 },
    /// The code expired before it was used.
    #[error("code expired: request a new one")]
    CodeExpired,
    /// No code is pending for this number (never requested, already used or burned).
    #[error("no code pending: request a code first")]
    NoCodePending,
    /// The code was wrong too many times and is burned.
    #[error("too many wrong codes: request a new one")]
    TooManyAttempts,
    /// A rate limit: try again after `retry_after_seconds`. `reason` is the server's reason name
    /// (`RESEND_TOO_SOON`, `DAILY_LIMIT`, `IP_LIMIT`, `COUNTRY_BUDGET`, `RATE_LIMITED`, ...).
    #[error("rate limited: try again in {retry_after_seconds} s")]
    RateLimited {
        retry_after_seconds: u64,
        reason: String,
    },
    /// The call needs a signed-in device and there is none.
    #[error("not signed in")]
    NotSignedIn,
    /// The session was signed out or revoked elsewhere; the local session is cleared.
    #[error("session ended: sign in again")]
    SessionEnded,
    /// The server could not be reached, or did not answer in time.
    #[error("network error: {message}")]
    Network { message: String },
    /// An argument was refused (by this library or the server).
    #[error("invalid input: {message}")]
    InvalidInput { message: String },
    /// The server refused: this account may not do that (not a member of the group, not one
    /// of its admins, ...).
    #[error("not allowed: {message}")]
    NotAllowed { message: String },
    /// The server has no such thing (user, status, ...) for this account.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// Any other server error.
    #[error("server error: {message}")]
    Server { message: String },
    /// The local database failed.
    #[error("storage error: {message}")]
    Storage { message: String },
}

/// `Result` with [`ClientError`].
pub(crate) type Result<T, E = ClientError> = std::result::Result<T, E>;

fn attempts_word(n: u32) -> &'static str {
    if n == 1 { "attempt" } else { "attempts" }
}

/// A status message as one line (the server's messages are for humans and carry no user data).
fn one_line(message: &str) -> String {
    let line = message
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if line.is_empty() {
        "no details".to_owned()
    } else {
        line
    }
}

impl ClientError {
    /// Whether this error means the server-side session is gone, so the local one must be cleared.
    pub(crate) fn ends_session(&self) -> bool {
        matches!(self, Self::SessionEnded)
    }
}

impl From<&Status> for ClientError {
    fn from(status: &Status) -> Self {
        let reason = reason_of(status);
        let message = one_line(status.message());
        match (status.code(), reason.as_deref()) {
            (_, Some(reason::INVALID_PHONE)) => Self::InvalidPhoneNumber { message },
            (_, Some(reason::SMS_REJECTED)) => Self::InvalidPhoneNumber {
                message: "the SMS provider refused this number".to_owned(),
            },
            (_, Some(reason::WRONG_CODE)) => {
                let attempts_left = metadata_of(status, "attempts_left")
                    .and_then(|n| n.trim().parse::<u32>().ok())
                    .unwrap_or(0);
                Self::WrongCode { attempts_left }
            }
            (_, Some(reason::CODE_EXPIRED)) => Self::CodeExpired,
            (_, Some(reason::NO_CODE)) => Self::NoCodePending,
            (_, Some(reason::TOO_MANY_ATTEMPTS)) => Self::TooManyAttempts,
            (
                _,
                Some(
                    reason::INVALID_REFRESH_TOKEN
                    | reason::REFRESH_TOKEN_REUSED
                    | reason::SESSION_REVOKED,
                ),
            ) => Self::SessionEnded,
            (_, Some(reason::MISSING_TOKEN)) => Self::NotSignedIn,
            (Code::ResourceExhausted, reason) => match retry_after_of(status) {
                Some(delay) => Self::RateLimited {
                    // Round up: "try again in 0 s" would invite an immediate, refused retry.
                    retry_after_seconds: delay.as_secs() + u64::from(delay.subsec_nanos() > 0),
                    reason: reason.unwrap_or("RESOURCE_EXHAUSTED").to_owned(),
                },
                // Not a timed limit (e.g. TOO_MANY_DEVICES): waiting will not help.
                None => Self::Server { message },
            },
            // Without a reason the status came from the transport, not from a Juntos server.
            (Code::Unavailable, None) => Self::Network {
                message: format!("cannot reach the server ({message})"),
            },
            (Code::DeadlineExceeded, _) => Self::Network {
                message: "the server did not answer in time".to_owned(),
            },
            (Code::Unavailable | Code::Cancelled, _) => Self::Network { message },
            (Code::InvalidArgument, _) => Self::InvalidInput { message },
            (Code::PermissionDenied, _) => Self::NotAllowed { message },
            (Code::NotFound, _) => Self::NotFound { message },
            _ => Self::Server { message },
        }
    }
}

impl From<Status> for ClientError {
    fn from(status: Status) -> Self {
        Self::from(&status)
    }
}

impl From<rusqlite::Error> for ClientError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Storage {
            message: one_line(&error.to_string()),
        }
    }
}

impl From<std::io::Error> for ClientError {
    fn from(error: std::io::Error) -> Self {
        Self::Storage {
            message: one_line(&error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use juntos_proto::error::{resource_exhausted, status, status_with_metadata};

    use super::*;

    #[test]
    fn invalid_phone() {
        let s = status(
            Code::InvalidArgument,
            reason::INVALID_PHONE,
            "expected E.164: + then digits",
        );
        let e = ClientError::from(s);
        assert!(
            matches!(&e, ClientError::InvalidPhoneNumber { message } if message.contains("E.164"))
        );
        assert_eq!(
            e.to_string(),
            "invalid phone number: expected E.164: + then digits"
        );
    }

    #[test]
    fn wrong_code_carries_attempts_left() {
        let meta = HashMap::from([("attempts_left".to_owned(), "3".to_owned())]);
        let e = ClientError::from(status_with_metadata(
            Code::InvalidArgument,
            reason::WRONG_CODE,
            "wrong",
            meta,
        ));
        assert!(matches!(e, ClientError::WrongCode { attempts_left: 3 }));
        assert_eq!(e.to_string(), "wrong code: 3 attempts left");

        let meta = HashMap::from([("attempts_left".to_owned(), "1".to_owned())]);
        let e = ClientError::from(status_with_metadata(
            Code::InvalidArgument,
            reason::WRONG_CODE,
            "wrong",
            meta,
        ));
        assert_eq!(e.to_string(), "wrong code: 1 attempt left");
    }

    #[test]
    fn code_states() {
        let e = ClientError::from(status(
            Code::FailedPrecondition,
            reason::CODE_EXPIRED,
            "expired",
        ));
        assert!(matches!(e, ClientError::CodeExpired));
        assert_eq!(e.to_string(), "code expired: request a new one");
        let e = ClientError::from(status(Code::FailedPrecondition, reason::NO_CODE, "none"));
        assert!(matches!(e, ClientError::NoCodePending));
        let e = ClientError::from(status(
            Code::FailedPrecondition,
            reason::TOO_MANY_ATTEMPTS,
            "burned",
        ));
        assert!(matches!(e, ClientError::TooManyAttempts));
    }

    #[test]
    fn rate_limited_rounds_retry_up() {
        let s = resource_exhausted(
            reason::RESEND_TOO_SOON,
            "wait",
            Duration::from_millis(29_001),
        );
        let e = ClientError::from(s);
        assert!(matches!(
            &e,
            ClientError::RateLimited { retry_after_seconds: 30, reason } if reason == "RESEND_TOO_SOON"
        ));
        assert_eq!(e.to_string(), "rate limited: try again in 30 s");

        let s = resource_exhausted(reason::DAILY_LIMIT, "tomorrow", Duration::from_secs(3600));
        assert!(matches!(
            ClientError::from(s),
            ClientError::RateLimited {
                retry_after_seconds: 3600,
                ..
            }
        ));
    }

    #[test]
    fn resource_exhausted_without_retry_info_is_not_a_rate_limit() {
        let s = status(
            Code::ResourceExhausted,
            reason::TOO_MANY_DEVICES,
            "too many devices",
        );
        assert!(
            matches!(ClientError::from(s), ClientError::Server { message } if message == "too many devices")
        );
    }

    #[test]
    fn session_end_reasons() {
        for r in [
            reason::INVALID_REFRESH_TOKEN,
            reason::REFRESH_TOKEN_REUSED,
            reason::SESSION_REVOKED,
        ] {
            let e = ClientError::from(status(Code::Unauthenticated, r, "gone"));
            assert!(e.ends_session(), "{r}");
        }
        let e = ClientError::from(status(
            Code::Unauthenticated,
            reason::TOKEN_EXPIRED,
            "expired",
        ));
        assert!(!e.ends_session());
        assert!(matches!(e, ClientError::Server { .. }));
        let e = ClientError::from(status(
            Code::Unauthenticated,
            reason::MISSING_TOKEN,
            "no token",
        ));
        assert!(matches!(e, ClientError::NotSignedIn));
    }

    #[test]
    fn transport_failures_are_network_errors() {
        let e = ClientError::from(Status::unavailable("tcp connect error\nconnection refused"));
        assert!(matches!(&e, ClientError::Network { message }
                if message == "cannot reach the server (tcp connect error connection refused)"));
        assert!(!e.to_string().contains('\n'));
        let e = ClientError::from(Status::deadline_exceeded("timeout"));
        assert!(matches!(e, ClientError::Network { .. }));
        let e = ClientError::from(status(
            Code::Unavailable,
            reason::SMS_UNAVAILABLE,
            "SMS provider down",
        ));
        assert!(matches!(&e, ClientError::Network { message } if message == "SMS provider down"));
    }

    #[test]
    fn other_codes() {
        let e = ClientError::from(status(
            Code::InvalidArgument,
            reason::INVALID_DEVICE,
            "name too long",
        ));
        assert!(matches!(&e, ClientError::InvalidInput { message } if message == "name too long"));
        let e = ClientError::from(Status::internal(""));
        assert!(matches!(&e, ClientError::Server { message } if message == "no details"));
    }
}
