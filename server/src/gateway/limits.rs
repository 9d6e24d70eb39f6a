//! Token-bucket rate limits at the gateway: one bucket per client address for every routed call,
//! one per user for authenticated calls. Buckets live in this gateway's memory, so with N gateway
//! pods a client can reach at most N times the rate; the services behind keep their own limits
//! (otp-service's per-address and per-number limits live in Redis and are exact).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use juntos_proto::error::{reason, resource_exhausted};

/// A rate: `per_second` sustained with bursts up to `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let per_second = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst).unwrap_or(per_second);
        Quota::per_second(per_second).allow_burst(burst)
    }
}

/// The gateway's limiters.
pub struct Limits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_user: DefaultKeyedRateLimiter<String>,
}

impl Limits {
    pub fn new(per_ip: Rate, per_user: Rate) -> Self {
        Self {
            per_ip: RateLimiter::keyed(per_ip.quota()),
            per_user: RateLimiter::keyed(per_user.quota()),
        }
    }

    /// Takes one token from the address's bucket (an IPv6 address counts by its /64).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), tonic::Status> {
        let key = juntos_proto::meta::rate_limit_key(ip);
        check(&self.per_ip, &key, "too many requests from this address")
    }

    /// Takes one token from the user's bucket.
    pub fn check_user(&self, user_id: &str) -> Result<(), tonic::Status> {
        check(
            &self.per_user,
            &user_id.to_owned(),
            "too many requests from this account",
        )
    }

    /// Forgets buckets that are full again (call periodically to bound memory).
    pub fn forget_idle(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
        self.per_user.retain_recent();
        self.per_user.shrink_to_fit();
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    message: &str,
) -> Result<(), tonic::Status> {
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        // Round up so a client that waits exactly this long gets through.
        let wait = Duration::from_millis(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) + 1);
        resource_exhausted(reason::RATE_LIMITED, message, wait)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_per_key() {
        let limits = Limits::new(
            Rate {
                per_second: 1,
                burst: 2,
            },
            Rate {
                per_second: 1,
                burst: 1,
            },
        );
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        assert!(limits.check_ip(a).is_ok());
        assert!(limits.check_ip(a).is_ok());
        let refused = limits.check_ip(a).expect_err("burst of 2 spent");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(juntos_proto::error::retry_after_of(&refused).is_some());
        assert!(limits.check_ip(b).is_ok());
        assert!(limits.check_user("u1").is_ok());
        assert!(limits.check_user("u1").is_err());
        assert!(limits.check_user("u2").is_ok());
    }
}
