//! The crate's error type and its conversion to a gRPC status.

use std::time::Duration;

use juntos_proto::error::{reason, resource_exhausted, status};
use tonic::{Code, Status};

/// What the message of an invalid phone number says.
pub const INVALID_PHONE_MESSAGE: &str =
    "phone number must be in E.164 form: + then country code and number, e.g. +12015550123";

/// Crate result type.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Which rate limit refused a code request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    /// The per-number resend schedule.
    ResendTooSoon,
    /// The per-number daily cap.
    DailyLimit,
    /// The per-client-address hourly limit.
    IpLimit,
    /// The per-country-calling-code hourly budget.
    CountryBudget,
}

impl RateLimit {
    /// The `ErrorInfo.reason` of this limit.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ResendTooSoon => reason::RESEND_TOO_SOON,
            Self::DailyLimit => reason::DAILY_LIMIT,
            Self::IpLimit => reason::IP_LIMIT,
            Self::CountryBudget => reason::COUNTRY_BUDGET,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::ResendTooSoon => {
                "a code was sent to this number recently; wait before asking again"
            }
            Self::DailyLimit => "this number has had its maximum of codes for today",
            Self::IpLimit => "too many code requests from this address; wait before asking again",
            Self::CountryBudget => {
                "too many codes were sent to this country recently; wait before asking again"
            }
        }
    }
}

/// Everything that can go wrong in the OTP service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The phone number is not E.164 or not a valid number.
    #[error("{INVALID_PHONE_MESSAGE}")]
    InvalidPhone,
    /// A rate limit refused the request; try again after `retry_after`.
    #[error("rate limited ({limit:?}); retry after {retry_after:?}")]
    RateLimited {
        /// Which limit.
        limit: RateLimit,
        /// When to try again (whole seconds, rounded up).
        retry_after: Duration,
    },
    /// The SMS provider refused to send to the number.
    #[error("the SMS provider refused the number")]
    SmsRejected,
    /// The SMS provider could not be reached.
    #[error("the SMS provider could not be reached")]
    SmsUnavailable,
    /// The SMS provider refused our credentials or configuration.
    #[error("the SMS provider is misconfigured")]
    SmsMisconfigured,
    /// The Redis store failed (down, timed out, or answered nonsense).
    #[error("code store unavailable")]
    Redis(#[source] redis::RedisError),
    /// A stored record could not be read back.
    #[error("code store holds a malformed record: {0}")]
    CorruptRecord(&'static str),
}

impl Error {
    /// A rate-limit refusal, with `retry_after_ms` rounded up to whole seconds (at least one).
    pub(crate) fn rate_limited(limit: RateLimit, retry_after_ms: i64) -> Self {
        let secs = retry_after_ms.max(1).unsigned_abs().div_ceil(1000);
        Self::RateLimited {
            limit,
            retry_after: Duration::from_secs(secs),
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Self {
        Self::Redis(e)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidPhone => status(
                Code::InvalidArgument,
                reason::INVALID_PHONE,
                INVALID_PHONE_MESSAGE,
            ),
            Error::RateLimited { limit, retry_after } => {
                resource_exhausted(limit.reason(), limit.message(), retry_after)
            }
            Error::SmsRejected => status(
                Code::InvalidArgument,
                reason::SMS_REJECTED,
                "the SMS provider refused to send to this number",
            ),
            Error::SmsUnavailable => status(
                Code::Unavailable,
                reason::SMS_UNAVAILABLE,
                "the SMS provider could not be reached; try again later",
            ),
            Error::SmsMisconfigured => status(
                Code::Internal,
                reason::INTERNAL,
                "the SMS sender is misconfigured",
            ),
            Error::Redis(_) => status(
                Code::Unavailable,
                reason::STORE_UNAVAILABLE,
                "the code store is unavailable; try again later",
            ),
            Error::CorruptRecord(_) => status(Code::Internal, reason::INTERNAL, "internal error"),
        }
    }
}

#[cfg(test)]
mod tests {
    use juntos_proto::error::{reason_of, retry_after_of};

    use super::*;

    #[test]
    fn rate_limit_maps_to_resource_exhausted_with_retry_in_whole_seconds() {
        let s = Status::from(Error::rate_limited(RateLimit::IpLimit, 1_500));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(reason_of(&s).as_deref(), Some(reason::IP_LIMIT));
        assert_eq!(retry_after_of(&s), Some(Duration::from_secs(2)));
    }

    #[test]
    fn sms_errors_map_to_their_codes() {
        let s = Status::from(Error::SmsRejected);
        assert_eq!(
            (s.code(), reason_of(&s).as_deref()),
            (Code::InvalidArgument, Some("SMS_REJECTED"))
        );
        let s = Status::from(Error::SmsUnavailable);
        assert_eq!(
            (s.code(), reason_of(&s).as_deref()),
            (Code::Unavailable, Some("SMS_UNAVAILABLE"))
        );
        assert_eq!(Status::from(Error::SmsMisconfigured).code(), Code::Internal);
        let s = Status::from(Error::InvalidPhone);
        assert_eq!(reason_of(&s).as_deref(), Some("INVALID_PHONE"));
        assert!(s.message().contains("E.164"));
    }
}
