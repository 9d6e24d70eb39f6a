//! Requesting a code: validate the number, apply the per-IP limit, the number's resend schedule
//! and daily cap and the country calling code's budget, then issue the code and send the SMS.

use std::time::Duration;

use super::OtpService;
use crate::code::{CODE_LENGTH, generate_code, hash_code};
use crate::error::{Error, RateLimit, Result};
use crate::phone::{mask_phone, parse_phone};
use crate::sms::SmsError;
use crate::store::{HOUR_MS, IssueOutcome, WindowOutcome};

/// What a successful code request answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeSent {
    /// Digits in the code (6).
    pub code_length: u32,
    /// How long the code stays valid.
    pub expires_in: Duration,
    /// When another code may be requested for this number (whole seconds, rounded up).
    pub resend_after: Duration,
}

/// Rounds milliseconds up to whole seconds.
fn whole_seconds(ms: i64) -> Duration {
    Duration::from_secs(ms.max(0).unsigned_abs().div_ceil(1000))
}

impl OtpService {
    /// Sends a fresh code to `phone` (E.164), replacing any earlier one.
    ///
    /// Checks in order: the number's form and validity; the per-IP hourly limit (when
    /// `client_ip` is known; counts every request with a valid number); the number's resend
    /// schedule and daily cap (read only, so a refused request spends no other budget); the
    /// country calling code's hourly budget; then issues the code atomically (re-checking the
    /// number's limits) and sends the SMS. If the SMS then fails the code stays issued and the
    /// resend wait applies.
    pub async fn request_code(&self, phone: &str, client_ip: Option<&str>) -> Result<CodeSent> {
        let phone = parse_phone(phone)?;
        let now = self.clock.now_ms();

        if let Some(ip) = client_ip {
            // An IPv6 client counts by its /64 (see `rate_limit_key`).
            let ip = ip
                .parse::<std::net::IpAddr>()
                .map(|a| juntos_proto::meta::rate_limit_key(a).to_string())
                .unwrap_or_else(|_| ip.to_owned());
            let key = format!("ip:{ip}");
            let outcome = self
                .store
                .hit_window(&key, self.config.ip_limit_per_hour, HOUR_MS, now)
                .await?;
            if let WindowOutcome::Refused { retry_after_ms } = outcome {
                tracing::info!("code request refused: IP limit");
                return Err(Error::rate_limited(RateLimit::IpLimit, retry_after_ms));
            }
        }

        let state = self.store.phone_state(&phone.e164, now).await?;
        if let Some(refusal) = self.policy.refusal(state, now) {
            return Err(refused(refusal, &phone.e164));
        }

        let key = format!("cc:{}", phone.country_code);
        let outcome = self
            .store
            .hit_window(&key, self.config.country_budget_per_hour, HOUR_MS, now)
            .await?;
        if let WindowOutcome::Refused { retry_after_ms } = outcome {
            tracing::warn!(
                country_code = phone.country_code,
                "code request refused: country budget"
            );
            return Err(Error::rate_limited(
                RateLimit::CountryBudget,
                retry_after_ms,
            ));
        }

        let code = generate_code();
        let code_hash = hash_code(&self.secret, &phone.e164, &code);
        let resend_after_ms = match self
            .store
            .issue_code(&phone.e164, &code_hash, now, &self.policy)
            .await?
        {
            IssueOutcome::Issued { resend_after_ms } => resend_after_ms,
            refusal => return Err(refused(refusal, &phone.e164)),
        };

        let body = self.sms_body(&code);
        if let Err(e) = self.sms.send(&phone.e164, &body).await {
            return Err(match e {
                SmsError::Rejected { .. } => {
                    tracing::info!(phone = %mask_phone(&phone.e164), error = %e, "SMS rejected");
                    Error::SmsRejected
                }
                SmsError::Unavailable { .. } => {
                    tracing::warn!(error = %e, "SMS provider unavailable");
                    Error::SmsUnavailable
                }
                SmsError::Misconfigured { .. } => {
                    tracing::error!(error = %e, "SMS sender misconfigured");
                    Error::SmsMisconfigured
                }
            });
        }
        tracing::info!(phone = %mask_phone(&phone.e164), "code sent");
        Ok(CodeSent {
            code_length: CODE_LENGTH,
            expires_in: self.config.code_ttl,
            resend_after: whole_seconds(resend_after_ms),
        })
    }

    fn sms_body(&self, code: &str) -> String {
        let minutes = self.config.code_ttl.as_secs().div_ceil(60).max(1);
        let unit = if minutes == 1 { "minute" } else { "minutes" };
        format!("Your Juntos code is {code}. It expires in {minutes} {unit}. Do not share it.")
    }
}

/// The error of a per-number refusal.
fn refused(outcome: IssueOutcome, phone: &str) -> Error {
    let (limit, retry_after_ms) = match outcome {
        IssueOutcome::ResendTooSoon { retry_after_ms } => {
            (RateLimit::ResendTooSoon, retry_after_ms)
        }
        IssueOutcome::DailyLimit { retry_after_ms } => (RateLimit::DailyLimit, retry_after_ms),
        IssueOutcome::Issued { .. } => unreachable!("an issued code is not a refusal"),
    };
    tracing::info!(phone = %mask_phone(phone), ?limit, "code request refused");
    Error::rate_limited(limit, retry_after_ms)
}

#[cfg(test)]
mod tests {
    use juntos_proto::error::reason_of;
    use tonic::{Code, Status};

    use super::*;
    use crate::config::OtpConfig;
    use crate::service::Verification;
    use crate::service::tests::*;
    use crate::store::VerifyOutcome;

    #[tokio::test]
    async fn sends_a_code_that_verifies_once() {
        let f = fixture(OtpConfig::default());
        let sent = f
            .service
            .request_code(US, Some("10.0.0.1"))
            .await
            .expect("request");
        assert_eq!(
            sent,
            CodeSent {
                code_length: 6,
                expires_in: Duration::from_secs(300),
                resend_after: Duration::from_secs(30)
            }
        );
        let code = f.sms.last_code(US);
        let (to, body) = f.sms.sent.lock().expect("lock")[0].clone();
        assert_eq!(to, US);
        assert_eq!(
            body,
            format!("Your Juntos code is {code}. It expires in 5 minutes. Do not share it.")
        );

        let ok = f.service.verify_code(US, &code).await.expect("verify");
        assert_eq!(
            ok,
            Verification {
                outcome: VerifyOutcome::Ok,
                phone: US.into()
            }
        );
        let again = f.service.verify_code(US, &code).await.expect("verify");
        assert_eq!(again.outcome, VerifyOutcome::NoCode);
    }

    #[tokio::test]
    async fn resend_schedule_is_30s_1m_5m_10m_then_10m() {
        let f = fixture(OtpConfig::default());
        f.service.request_code(US, None).await.expect("first");
        for (wait, next) in [
            (30i64, 60u64),
            (60, 300),
            (300, 600),
            (600, 600),
            (600, 600),
        ] {
            assert_limited(
                f.service.request_code(US, None).await,
                "RESEND_TOO_SOON",
                wait as u64,
            );
            f.clock.advance_ms(secs(wait) - 1);
            assert_limited(f.service.request_code(US, None).await, "RESEND_TOO_SOON", 1);
            f.clock.advance_ms(1);
            let sent = f.service.request_code(US, None).await.expect("resend");
            assert_eq!(sent.resend_after, Duration::from_secs(next));
        }
        assert_eq!(f.sms.count(), 6);
        // Each resend replaces the code: only the latest verifies.
        let latest = f.sms.last_code(US);
        assert_eq!(f.outcome(US, &latest).await, VerifyOutcome::Ok);
    }

    #[tokio::test]
    async fn at_most_ten_codes_a_day() {
        let f = fixture(OtpConfig::default());
        let mut elapsed = 0;
        for i in 1..=10 {
            let sent = f
                .service
                .request_code(US, None)
                .await
                .expect("within the cap");
            let wait = if i == 10 {
                assert_eq!(
                    sent.resend_after.as_secs() as i64,
                    24 * 3600 - elapsed / 1000
                );
                0
            } else {
                secs(sent.resend_after.as_secs() as i64)
            };
            f.clock.advance_ms(wait);
            elapsed += wait;
        }
        f.clock.advance_ms(secs(600));
        elapsed += secs(600);
        let left = (24 * 3600 * 1000 - elapsed) / 1000;
        assert_limited(
            f.service.request_code(US, None).await,
            "DAILY_LIMIT",
            left as u64,
        );
        assert_eq!(f.sms.count(), 10);
        // A day after the first code, the number may have codes again.
        f.clock.advance_ms(secs(left));
        f.service.request_code(US, None).await.expect("next day");
    }

    #[tokio::test]
    async fn ipv6_clients_count_by_their_slash_64() {
        let config = OtpConfig {
            ip_limit_per_hour: 2,
            ..Default::default()
        };
        let f = fixture(config);
        f.service
            .request_code(US, Some("2001:db8:0:1::1"))
            .await
            .expect("1");
        f.service
            .request_code(UK, Some("2001:db8:0:1::2"))
            .await
            .expect("2");
        let refused = f
            .service
            .request_code(US2, Some("2001:db8:0:1:ffff::3"))
            .await;
        assert!(
            matches!(refused, Err(Error::RateLimited { .. })),
            "{refused:?}"
        );
        // Another /64 has its own window.
        f.service
            .request_code(US2, Some("2001:db8:0:2::1"))
            .await
            .expect("other network");
    }

    #[tokio::test]
    async fn per_ip_limit() {
        let config = OtpConfig {
            ip_limit_per_hour: 3,
            ..Default::default()
        };
        let f = fixture(config);
        // Malformed numbers are refused before the IP window and do not count.
        for _ in 0..5 {
            let err = f
                .service
                .request_code("12345", Some("10.0.0.1"))
                .await
                .expect_err("invalid");
            assert!(matches!(err, Error::InvalidPhone));
        }
        f.service
            .request_code(US, Some("10.0.0.1"))
            .await
            .expect("1");
        // A refused resend still counts against the address.
        assert_limited(
            f.service.request_code(US, Some("10.0.0.1")).await,
            "RESEND_TOO_SOON",
            30,
        );
        f.service
            .request_code(UK, Some("10.0.0.1"))
            .await
            .expect("3");
        f.clock.advance_ms(1000);
        let window_left = 3600 - (T0 / 1000 + 1) % 3600;
        assert_limited(
            f.service.request_code(US2, Some("10.0.0.1")).await,
            "IP_LIMIT",
            window_left as u64,
        );
        f.service
            .request_code(US2, Some("10.0.0.2"))
            .await
            .expect("another address");
        f.service
            .request_code(US3, None)
            .await
            .expect("unknown address");
        f.clock.advance_ms(secs(window_left));
        f.service
            .request_code(US, Some("10.0.0.1"))
            .await
            .expect("next hour");
    }

    #[tokio::test]
    async fn per_country_budget() {
        let config = OtpConfig {
            country_budget_per_hour: 2,
            ..Default::default()
        };
        let f = fixture(config);
        f.service.request_code(US, None).await.expect("1st +1");
        // Refused early by the resend schedule: spends no country budget.
        assert_limited(
            f.service.request_code(US, None).await,
            "RESEND_TOO_SOON",
            30,
        );
        f.service.request_code(US2, None).await.expect("2nd +1");
        let window_left = 3600 - (T0 / 1000) % 3600;
        assert_limited(
            f.service.request_code(US3, None).await,
            "COUNTRY_BUDGET",
            window_left as u64,
        );
        f.service
            .request_code(UK, None)
            .await
            .expect("+44 has its own budget");
        assert_eq!(f.sms.count(), 3);
    }

    #[tokio::test]
    async fn configured_ttl_shows_in_the_text_and_answer() {
        let f = fixture(OtpConfig {
            code_ttl: Duration::from_secs(60),
            ..Default::default()
        });
        let sent = f.service.request_code(US, None).await.expect("request");
        assert_eq!(sent.expires_in, Duration::from_secs(60));
        let body = f.sms.sent.lock().expect("lock")[0].1.clone();
        assert!(
            body.ends_with("It expires in 1 minute. Do not share it."),
            "{body}"
        );
        let code = f.sms.last_code(US);
        f.clock.advance_ms(secs(60));
        assert_eq!(f.outcome(US, &code).await, VerifyOutcome::Expired);
    }

    #[tokio::test]
    async fn answers_do_not_depend_on_history() {
        let f = fixture(OtpConfig::default());
        let first = f.service.request_code(US, None).await.expect("request");
        let code = f.sms.last_code(US);
        f.service.verify_code(US, &code).await.expect("verify");
        // A number that has signed in before gets exactly the answer of a never-seen one.
        let known = f.service.request_code(US, None).await.expect("request");
        let unknown = f.service.request_code(UK, None).await.expect("request");
        assert_eq!(known, unknown);
        assert_eq!(first, unknown);
    }

    #[tokio::test]
    async fn sms_failures_map_to_statuses() {
        let cases: [(MakeError, Code, &str); 3] = [
            (
                || SmsError::Rejected { status: 400 },
                Code::InvalidArgument,
                "SMS_REJECTED",
            ),
            (
                || SmsError::Unavailable { detail: "x".into() },
                Code::Unavailable,
                "SMS_UNAVAILABLE",
            ),
            (
                || SmsError::Misconfigured { status: 401 },
                Code::Internal,
                "INTERNAL",
            ),
        ];
        for (fail, code, reason) in cases {
            let f = fixture(OtpConfig::default());
            *f.sms.fail.lock().expect("lock") = Some(fail);
            let status = Status::from(f.service.request_code(US, None).await.expect_err("fails"));
            assert_eq!(status.code(), code);
            assert_eq!(reason_of(&status).as_deref(), Some(reason));
            assert!(!status.message().contains("555"), "{}", status.message());
        }
    }
}
