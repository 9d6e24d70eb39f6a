//! The OTP logic: validate, rate-limit, issue, send, verify. This file holds [`OtpService`] and
//! its constructor; each feature is an `impl OtpService` block of its own: `request_code.rs`
//! (validate, rate-limit, issue and send a code) and `verify_code.rs` (check a code).

use std::sync::Arc;

use juntos_clock::SharedClock;

use crate::config::OtpConfig;
use crate::sms::SmsSender;
use crate::store::{IssuePolicy, OtpStore};

mod request_code;
mod verify_code;

pub use request_code::CodeSent;
pub use verify_code::Verification;

/// Issues and verifies sign-in codes. Knows nothing about accounts, so its answers cannot
/// reveal whether a number has one.
pub struct OtpService {
    config: OtpConfig,
    policy: IssuePolicy,
    store: Arc<dyn OtpStore>,
    sms: Arc<dyn SmsSender>,
    secret: Vec<u8>,
    clock: SharedClock,
}

impl std::fmt::Debug for OtpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtpService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OtpService {
    /// A service with `config` (check it with [`OtpConfig::validate`] first), keeping codes in
    /// `store`, sending them with `sms`, hashing them under `secret` (see
    /// [`crate::load_or_create_secret`]) and reading time from `clock`.
    pub fn new(
        config: OtpConfig,
        store: Arc<dyn OtpStore>,
        sms: Arc<dyn SmsSender>,
        secret: Vec<u8>,
        clock: SharedClock,
    ) -> Self {
        let policy = IssuePolicy::from_config(&config);
        Self {
            config,
            policy,
            store,
            sms,
            secret,
            clock,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &OtpConfig {
        &self.config
    }
}

#[cfg(test)]
mod tests {
    //! The fixtures every feature's tests share, and the tests that cover both features.

    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use juntos_clock::ManualClock;
    use juntos_proto::error::{reason_of, retry_after_of};
    use tonic::{Code, Status};

    use super::*;
    use crate::error::Result;
    use crate::sms::SmsError;
    use crate::store::{MemoryStore, VerifyOutcome};

    pub(super) const US: &str = "+12015550123";
    pub(super) const US2: &str = "+12015550124";
    pub(super) const US3: &str = "+12015550125";
    pub(super) const UK: &str = "+447400123456";
    pub(super) const T0: i64 = 1_700_000_000_000;

    pub(super) type MakeError = fn() -> SmsError;

    /// Records what it was asked to send; fails with `fail` when set.
    #[derive(Default)]
    pub(super) struct FakeSms {
        pub(super) sent: Mutex<Vec<(String, String)>>,
        pub(super) fail: Mutex<Option<MakeError>>,
    }

    #[async_trait]
    impl SmsSender for FakeSms {
        async fn send(&self, to_e164: &str, body: &str) -> Result<(), SmsError> {
            if let Some(fail) = *self.fail.lock().expect("lock") {
                return Err(fail());
            }
            self.sent
                .lock()
                .expect("lock")
                .push((to_e164.to_owned(), body.to_owned()));
            Ok(())
        }
    }

    impl FakeSms {
        /// The code in the last message sent to `phone`.
        pub(super) fn last_code(&self, phone: &str) -> String {
            let sent = self.sent.lock().expect("lock");
            let (_, body) = sent
                .iter()
                .rev()
                .find(|(to, _)| to == phone)
                .expect("a message");
            body.split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .expect("a 6-digit code")
                .to_owned()
        }

        pub(super) fn count(&self) -> usize {
            self.sent.lock().expect("lock").len()
        }
    }

    pub(super) struct Fixture {
        pub(super) service: OtpService,
        pub(super) clock: Arc<ManualClock>,
        pub(super) sms: Arc<FakeSms>,
    }

    impl Fixture {
        /// What checking `code` for `phone` comes to.
        pub(super) async fn outcome(&self, phone: &str, code: &str) -> VerifyOutcome {
            self.service
                .verify_code(phone, code)
                .await
                .expect("verify")
                .outcome
        }
    }

    pub(super) fn fixture(config: OtpConfig) -> Fixture {
        let clock = ManualClock::new(T0);
        let sms = Arc::new(FakeSms::default());
        let service = OtpService::new(
            config,
            Arc::new(MemoryStore::new()),
            sms.clone(),
            b"test secret".to_vec(),
            clock.clone(),
        );
        Fixture {
            service,
            clock,
            sms,
        }
    }

    /// Asserts `result` is RESOURCE_EXHAUSTED for `reason` with `retry` seconds.
    pub(super) fn assert_limited<T: std::fmt::Debug>(result: Result<T>, reason: &str, retry: u64) {
        let status = Status::from(result.expect_err("rate limited"));
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some(reason));
        assert_eq!(retry_after_of(&status), Some(Duration::from_secs(retry)));
    }

    pub(super) fn secs(s: i64) -> i64 {
        s * 1000
    }

    #[tokio::test]
    async fn refuses_invalid_phones() {
        let f = fixture(OtpConfig::default());
        for phone in ["5551234567", "+1 555 123 4567", "+1555", "+99912345678", ""] {
            for err in [
                f.service
                    .request_code(phone, Some("10.0.0.1"))
                    .await
                    .expect_err("request"),
                f.service
                    .verify_code(phone, "123456")
                    .await
                    .expect_err("verify"),
            ] {
                let status = Status::from(err);
                assert_eq!(status.code(), Code::InvalidArgument);
                assert_eq!(reason_of(&status).as_deref(), Some("INVALID_PHONE"));
                assert!(status.message().contains("E.164"), "{}", status.message());
            }
        }
        assert_eq!(f.sms.count(), 0);
    }
}
