//! Configuration of the OTP service: code lifetime and rate limits.

use std::time::Duration;

/// The longest a code may stay valid.
pub const MAX_CODE_TTL: Duration = Duration::from_secs(10 * 60);

/// Code lifetime and rate limits. [`OtpConfig::default`] holds the production defaults; call
/// [`OtpConfig::validate`] on anything read from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpConfig {
    /// How long a code stays valid (default 5 minutes, at most [`MAX_CODE_TTL`]).
    pub code_ttl: Duration,
    /// Wrong tries per code; the last one burns the code (default 5).
    pub max_attempts: u32,
    /// Wait before the 1st, 2nd, ... resend to a number; after the last entry the last repeats
    /// (default 30 s, 1 min, 5 min, 10 min). Reset by a successful verification.
    pub resend_schedule: Vec<Duration>,
    /// Codes per number per day, the day being 24 h from the first code of the window
    /// (default 10).
    pub max_codes_per_day: u32,
    /// Code requests per client IP per fixed hour window, counting every request with a valid
    /// number (default 60).
    pub ip_limit_per_hour: u32,
    /// Codes sent per country calling code per fixed hour window, against SMS pumping
    /// (default 1000).
    pub country_budget_per_hour: u32,
}

impl Default for OtpConfig {
    fn default() -> Self {
        Self {
            code_ttl: Duration::from_secs(5 * 60),
            max_attempts: 5,
            resend_schedule: [30, 60, 300, 600].map(Duration::from_secs).to_vec(),
            max_codes_per_day: 10,
            ip_limit_per_hour: 60,
            country_budget_per_hour: 1000,
        }
    }
}

impl OtpConfig {
    /// Checks the limits make sense; the error says which one does not.
    pub fn validate(&self) -> Result<(), String> {
        if self.code_ttl.is_zero() || self.code_ttl > MAX_CODE_TTL {
            return Err(format!(
                "code TTL must be between 1 ms and {MAX_CODE_TTL:?}"
            ));
        }
        if self.code_ttl.as_millis() == 0 {
            return Err("code TTL must be at least 1 ms".into());
        }
        if self.max_attempts == 0 {
            return Err("max attempts must be at least 1".into());
        }
        if self.resend_schedule.is_empty() {
            return Err("the resend schedule needs at least one entry".into());
        }
        if self
            .resend_schedule
            .iter()
            .any(|d| *d > Duration::from_secs(24 * 3600))
        {
            return Err("resend waits must not exceed one day".into());
        }
        for (name, value) in [
            ("codes per day", self.max_codes_per_day),
            ("IP limit per hour", self.ip_limit_per_hour),
            ("country budget per hour", self.country_budget_per_hour),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(OtpConfig::default().validate(), Ok(()));
    }

    #[test]
    fn refuses_bad_ttls_and_zero_limits() {
        let bad = [
            OtpConfig {
                code_ttl: Duration::ZERO,
                ..Default::default()
            },
            OtpConfig {
                code_ttl: MAX_CODE_TTL + Duration::from_secs(1),
                ..Default::default()
            },
            OtpConfig {
                max_attempts: 0,
                ..Default::default()
            },
            OtpConfig {
                resend_schedule: vec![],
                ..Default::default()
            },
            OtpConfig {
                max_codes_per_day: 0,
                ..Default::default()
            },
            OtpConfig {
                ip_limit_per_hour: 0,
                ..Default::default()
            },
            OtpConfig {
                country_budget_per_hour: 0,
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?} accepted");
        }
        let max = OtpConfig {
            code_ttl: MAX_CODE_TTL,
            ..Default::default()
        };
        assert_eq!(max.validate(), Ok(()));
    }
}
