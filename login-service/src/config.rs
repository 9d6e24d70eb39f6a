//! The login service's tunables.

use std::time::Duration;

/// Tunables of the login service. `Default` gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginConfig {
    /// How long an access token is valid (15 minutes).
    pub access_ttl: Duration,
    /// How long a refresh token is valid after it was issued (30 days); every refresh issues a
    /// new one, so an active device stays signed in.
    pub refresh_ttl: Duration,
    /// How many active devices one account may have (8).
    pub max_devices_per_account: u32,
    /// Shortest device name, in characters after trimming (1).
    pub device_name_min_chars: usize,
    /// Longest device name, in characters after trimming (64).
    pub device_name_max_chars: usize,
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 60 * 60),
            max_devices_per_account: 8,
            device_name_min_chars: 1,
            device_name_max_chars: 64,
        }
    }
}

impl LoginConfig {
    /// `access_ttl` in milliseconds.
    pub(crate) fn access_ttl_ms(&self) -> i64 {
        duration_ms(self.access_ttl)
    }

    /// `refresh_ttl` in milliseconds.
    pub(crate) fn refresh_ttl_ms(&self) -> i64 {
        duration_ms(self.refresh_ttl)
    }
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config() {
        let config = LoginConfig::default();
        assert_eq!(config.access_ttl, Duration::from_secs(900));
        assert_eq!(config.refresh_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(config.max_devices_per_account, 8);
        assert_eq!(
            (config.device_name_min_chars, config.device_name_max_chars),
            (1, 64)
        );
    }
}
