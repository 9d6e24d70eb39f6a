//! Storage of pending codes and rate-limit counters, behind one trait with two backends.
//!
//! Every operation is atomic on its own (one mutex section in [`MemoryStore`], one Lua script
//! in [`RedisStore`]), so concurrent requests for the same number or window cannot both pass a
//! limit. The per-number rules ([`IssuePolicy`]) are plain Rust here and mirrored in the Redis
//! Lua script; the shared test suite holds both to the same behaviour.

mod memory;
mod policy;
mod redis;
#[cfg(test)]
pub(crate) mod suite;

use async_trait::async_trait;

pub use self::memory::MemoryStore;
pub use self::policy::{IssuePolicy, PhoneState};
pub use self::redis::RedisStore;
use crate::error::Result;

/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The fixed window of a rate limit that a moment falls in; both backends count hits per
/// window [`index`](Self::index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedWindow {
    /// The window's length in milliseconds (at least 1).
    pub(crate) len_ms: i64,
    /// `now_ms / len_ms`, rounded down: which window of that length `now_ms` is in.
    pub(crate) index: i64,
    /// When the window ends and the next one starts, Unix milliseconds.
    pub(crate) ends_at_ms: i64,
}

impl FixedWindow {
    /// The window of `window_ms` (a length below 1 counts as 1) that `now_ms` falls in.
    pub(crate) fn at(window_ms: i64, now_ms: i64) -> Self {
        let len_ms = window_ms.max(1);
        let index = now_ms.div_euclid(len_ms);
        Self {
            len_ms,
            index,
            ends_at_ms: (index + 1) * len_ms,
        }
    }
}

/// The answer of [`OtpStore::hit_window`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowOutcome {
    /// Under the limit; the hit was counted.
    Allowed,
    /// The window is full; nothing was counted. The next window starts in `retry_after_ms`.
    Refused {
        /// Milliseconds until the window resets.
        retry_after_ms: i64,
    },
}

/// The answer of [`OtpStore::issue_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// The code is stored and replaces any earlier one; another may be issued after
    /// `resend_after_ms`.
    Issued {
        /// Milliseconds until the next code may be issued for this number.
        resend_after_ms: i64,
    },
    /// The resend schedule forbids a new code for `retry_after_ms` more.
    ResendTooSoon {
        /// Milliseconds to wait.
        retry_after_ms: i64,
    },
    /// The number has had its daily maximum; the day window ends in `retry_after_ms`.
    DailyLimit {
        /// Milliseconds to wait.
        retry_after_ms: i64,
    },
}

/// The answer of [`OtpStore::verify_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The code was right and is now consumed.
    Ok,
    /// The code was wrong; `attempts_left` more tries remain.
    Wrong {
        /// Tries left before the code is burned.
        attempts_left: u32,
    },
    /// The code was wrong and that was the last allowed try: the code is burned.
    TooManyAttempts,
    /// The pending code has expired (it stays expired until a new code is issued).
    Expired,
    /// No code is pending for this number.
    NoCode,
}

/// Where the OTP service keeps codes and counters. The only code that touches its data.
///
/// Times are Unix milliseconds passed in by the caller; backends never read a clock of their
/// own for decisions (Redis key TTLs only clean up, and are generous).
#[async_trait]
pub trait OtpStore: Send + Sync {
    /// Counts one hit against the fixed window `key` (the window is `now_ms / window_ms`), unless
    /// the window already holds `limit` hits: a refused hit is not counted, so a client that is
    /// refused does not push its own reset further away.
    async fn hit_window(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<WindowOutcome>;

    /// Reads the rate-limit state of `phone` without changing it, so the service can refuse a
    /// request early without spending other budgets. The default for an unknown number.
    async fn phone_state(&self, phone: &str, now_ms: i64) -> Result<PhoneState>;

    /// Atomically re-checks `policy` for `phone` and, when allowed, stores `code_hash` as the
    /// pending code (replacing any earlier one, resetting its attempt count, expiring at
    /// `now_ms + policy.code_ttl_ms`) and counts the send in the resend schedule and the day.
    async fn issue_code(
        &self,
        phone: &str,
        code_hash: &str,
        now_ms: i64,
        policy: &IssuePolicy,
    ) -> Result<IssueOutcome>;

    /// Atomically checks `code_hash` against the pending code of `phone`. A match consumes the
    /// code and resets the number's resend schedule (not its daily count); a miss counts an
    /// attempt and the `max_attempts`-th miss deletes the code. An expired code answers
    /// [`VerifyOutcome::Expired`] and counts nothing.
    async fn verify_code(
        &self,
        phone: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome>;
}
