//! SMS senders: how a code reaches the phone.

mod console;
mod twilio;

use async_trait::async_trait;

pub use self::console::ConsoleSender;
pub use self::twilio::{TwilioConfig, TwilioSender};

/// Why an SMS was not sent. Never carries the number or the text.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The provider refused the message (HTTP 4xx other than 401/403/429): usually a number
    /// it cannot deliver to. Not retried.
    #[error("the SMS provider refused the message (HTTP {status})")]
    Rejected {
        /// The provider's HTTP status.
        status: u16,
    },
    /// The provider could not be reached or kept failing (5xx after retries, network error,
    /// timeout, 429), or the outbox could not be written.
    #[error("the SMS provider is unavailable: {detail}")]
    Unavailable {
        /// What failed, without user data.
        detail: String,
    },
    /// The provider refused our credentials (HTTP 401/403): an operator must fix the config.
    #[error("the SMS provider refused our credentials (HTTP {status})")]
    Misconfigured {
        /// The provider's HTTP status.
        status: u16,
    },
}

/// Something that delivers a text message to a phone number.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `body` to `to_e164` (normalised E.164). Returns once the provider accepted the
    /// message (which is not delivery).
    async fn send(&self, to_e164: &str, body: &str) -> Result<(), SmsError>;
}
