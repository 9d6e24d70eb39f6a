//! Time, passed into every service so tests control it.
//!
//! Production uses [`SystemClock`]. Tests run the `juntos` binary with `--test-clock-file PATH`
//! (hidden; env `JUNTOS_TEST_CLOCK_FILE`): the clock is then the system time plus a signed
//! offset in milliseconds read from that file, so a test can move every role of a system
//! forward (code expiry, resend schedule, token expiry) without sleeping.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

fn system_now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// System time plus an offset (milliseconds, decimal text) read from a file on every call; a
/// missing or unreadable file means no offset. For tests only.
#[derive(Debug, Clone)]
pub struct OffsetFileClock {
    path: PathBuf,
}

impl OffsetFileClock {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Writes `offset_ms` to `path` atomically (for the test harness).
    pub fn set_offset(path: &std::path::Path, offset_ms: i64) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, offset_ms.to_string())?;
        std::fs::rename(tmp, path)
    }
}

impl Clock for OffsetFileClock {
    fn now_ms(&self) -> i64 {
        let offset = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        system_now_ms().saturating_add(offset)
    }
}

/// A clock the test itself sets, for unit tests inside one process.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: std::sync::atomic::AtomicI64,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now_ms: now_ms.into(),
        })
    }

    pub fn advance_ms(&self, ms: i64) {
        self.now_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}
