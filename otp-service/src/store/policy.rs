//! The per-number issuing rules: resend schedule and daily cap.

use std::time::Duration;

use super::{DAY_MS, HOUR_MS, IssueOutcome};
use crate::config::OtpConfig;

/// What [`super::OtpStore::issue_code`] enforces for one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuePolicy {
    /// Lifetime of a code, in milliseconds.
    pub code_ttl_ms: i64,
    /// Wait after the 1st, 2nd, ... code before the next one; the last entry repeats.
    pub resend_schedule_ms: Vec<i64>,
    /// Codes per number per day window.
    pub max_codes_per_day: u32,
    /// Length of the day window, which starts at the first code sent in it.
    pub day_ms: i64,
}

/// The rate-limit state of one number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneState {
    /// Codes sent since the resend schedule was last reset (by a successful verification or a
    /// new day window).
    pub sends: u32,
    /// When the last code was sent.
    pub last_sent_ms: Option<i64>,
    /// When the current day window started.
    pub day_start_ms: Option<i64>,
    /// Codes sent in the current day window.
    pub day_count: u32,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl IssuePolicy {
    /// The policy of a service configuration.
    pub fn from_config(config: &OtpConfig) -> Self {
        Self {
            code_ttl_ms: millis(config.code_ttl),
            resend_schedule_ms: config.resend_schedule.iter().copied().map(millis).collect(),
            max_codes_per_day: config.max_codes_per_day,
            day_ms: DAY_MS,
        }
    }

    /// How long a store keeps a number's record after a code is issued: everything in it
    /// matters at most this long (day window, code life, resend wait), plus a day of slack.
    pub fn retention_ms(&self) -> i64 {
        let longest_wait = self.resend_schedule_ms.iter().copied().max().unwrap_or(0);
        self.day_ms.max(self.code_ttl_ms).max(longest_wait) + DAY_MS + HOUR_MS
    }

    /// The wait after the `sends`-th code (1-based).
    fn wait_after(&self, sends: u32) -> i64 {
        let index = (sends.max(1) - 1) as usize;
        self.resend_schedule_ms
            .get(index)
            .or(self.resend_schedule_ms.last())
            .copied()
            .unwrap_or(0)
    }

    /// `state` as it stands at `now_ms`: a finished day window starts afresh, which also resets
    /// the resend schedule.
    pub fn current(&self, state: PhoneState, now_ms: i64) -> PhoneState {
        match state.day_start_ms {
            Some(start) if now_ms < start.saturating_add(self.day_ms) => state,
            _ => PhoneState::default(),
        }
    }

    /// Why no code may be issued for `state` at `now_ms`, if one may not.
    pub fn refusal(&self, state: PhoneState, now_ms: i64) -> Option<IssueOutcome> {
        let state = self.current(state, now_ms);
        if let Some(start) = state.day_start_ms
            && state.day_count >= self.max_codes_per_day
        {
            return Some(IssueOutcome::DailyLimit {
                retry_after_ms: start + self.day_ms - now_ms,
            });
        }
        if let Some(last) = state.last_sent_ms
            && state.sends > 0
        {
            let next = last.saturating_add(self.wait_after(state.sends));
            if now_ms < next {
                return Some(IssueOutcome::ResendTooSoon {
                    retry_after_ms: next - now_ms,
                });
            }
        }
        None
    }

    /// Checks and, when allowed, records one send in `state`.
    pub fn issue(&self, state: &mut PhoneState, now_ms: i64) -> IssueOutcome {
        if let Some(refusal) = self.refusal(*state, now_ms) {
            return refusal;
        }
        let mut next = self.current(*state, now_ms);
        let start = *next.day_start_ms.get_or_insert(now_ms);
        next.sends += 1;
        next.day_count += 1;
        next.last_sent_ms = Some(now_ms);
        *state = next;
        let mut resend_after_ms = self.wait_after(next.sends);
        if next.day_count >= self.max_codes_per_day {
            resend_after_ms = resend_after_ms.max(start + self.day_ms - now_ms);
        }
        IssueOutcome::Issued { resend_after_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_repeats_its_last_entry() {
        let policy = IssuePolicy::from_config(&OtpConfig::default());
        let waits: Vec<i64> = (1..=6).map(|n| policy.wait_after(n)).collect();
        assert_eq!(waits, [30_000, 60_000, 300_000, 600_000, 600_000, 600_000]);
    }

    #[test]
    fn new_day_window_resets_count_and_schedule() {
        let policy = IssuePolicy::from_config(&OtpConfig::default());
        let state = PhoneState {
            sends: 4,
            last_sent_ms: Some(1000),
            day_start_ms: Some(0),
            day_count: 10,
        };
        assert!(policy.refusal(state, DAY_MS - 1).is_some());
        assert_eq!(policy.current(state, DAY_MS), PhoneState::default());
        assert_eq!(policy.refusal(state, DAY_MS), None);
    }
}
