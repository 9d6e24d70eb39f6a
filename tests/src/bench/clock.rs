//! Time stamps: nanoseconds on a run's monotonic clock (send and delivery times, latencies) and
//! Unix milliseconds (what the ratchet and heartbeats take).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the run's clock started.
pub(crate) fn nanos_since(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Unix milliseconds (the ratchet expires skipped keys by it).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
