//! Verifying a code: hash it under the server secret and let the store compare, count the
//! attempt and burn the code atomically.

use super::OtpService;
use crate::code::hash_code;
use crate::error::Result;
use crate::phone::{mask_phone, parse_phone};
use crate::store::VerifyOutcome;

/// The result of checking a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// What the check came to.
    pub outcome: VerifyOutcome,
    /// The number in normalised E.164 form.
    pub phone: String,
}

impl OtpService {
    /// Checks `code` for `phone`. Every outcome is an answer; only a malformed phone (or a
    /// store outage) is an error. The code is always hashed and compared the same way, whether
    /// or not one is pending.
    pub async fn verify_code(&self, phone: &str, code: &str) -> Result<Verification> {
        let phone = parse_phone(phone)?;
        let now = self.clock.now_ms();
        let code_hash = hash_code(&self.secret, &phone.e164, code);
        let outcome = self
            .store
            .verify_code(&phone.e164, &code_hash, now, self.config.max_attempts)
            .await?;
        tracing::info!(phone = %mask_phone(&phone.e164), ?outcome, "code checked");
        Ok(Verification {
            outcome,
            phone: phone.e164,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OtpConfig;
    use crate::service::tests::*;

    #[tokio::test]
    async fn fifth_wrong_code_burns_it() {
        let f = fixture(OtpConfig::default());
        f.service.request_code(US, None).await.expect("request");
        let code = f.sms.last_code(US);
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for left in [4, 3, 2, 1] {
            assert_eq!(
                f.outcome(US, wrong).await,
                VerifyOutcome::Wrong {
                    attempts_left: left
                }
            );
        }
        assert_eq!(f.outcome(US, wrong).await, VerifyOutcome::TooManyAttempts);
        assert_eq!(f.outcome(US, &code).await, VerifyOutcome::NoCode);
    }

    #[tokio::test]
    async fn codes_expire() {
        let f = fixture(OtpConfig::default());
        f.service.request_code(US, None).await.expect("request");
        let code = f.sms.last_code(US);
        f.clock.advance_ms(secs(300));
        assert_eq!(f.outcome(US, &code).await, VerifyOutcome::Expired);

        f.service.request_code(UK, None).await.expect("request");
        let code = f.sms.last_code(UK);
        f.clock.advance_ms(secs(300) - 1);
        assert_eq!(f.outcome(UK, &code).await, VerifyOutcome::Ok);
    }
}
