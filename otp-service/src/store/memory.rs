//! The in-memory store: the embedded default for `juntos all` and unit tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use subtle::ConstantTimeEq;

use super::{
    FixedWindow, IssueOutcome, IssuePolicy, OtpStore, PhoneState, VerifyOutcome, WindowOutcome,
};
use crate::error::Result;

/// How often (in store time) stale entries are swept.
const PRUNE_EVERY_MS: i64 = 60_000;

/// Codes and counters in a mutex-guarded map; lost on restart. Stale entries are pruned as
/// time passes.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    phones: HashMap<String, PhoneRecord>,
    windows: HashMap<String, Window>,
    last_prune_ms: i64,
}

#[derive(Debug, Default)]
struct PhoneRecord {
    state: PhoneState,
    code: Option<PendingCode>,
    keep_until_ms: i64,
}

#[derive(Debug)]
struct PendingCode {
    hash: String,
    expires_at_ms: i64,
    attempts: u32,
}

#[derive(Debug)]
struct Window {
    span: FixedWindow,
    count: u32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self, now_ms: i64) -> std::sync::MutexGuard<'_, Inner> {
        let mut inner = juntos_store::lock(&self.inner);
        if now_ms - inner.last_prune_ms >= PRUNE_EVERY_MS {
            inner.last_prune_ms = now_ms;
            inner.phones.retain(|_, r| r.keep_until_ms > now_ms);
            inner.windows.retain(|_, w| w.span.ends_at_ms > now_ms);
        }
        inner
    }
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn hit_window(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<WindowOutcome> {
        let current = FixedWindow::at(window_ms, now_ms);
        let mut inner = self.lock(now_ms);
        let window = inner.windows.entry(key.to_owned()).or_insert(Window {
            span: current,
            count: 0,
        });
        if window.span.index != current.index {
            window.span = current;
            window.count = 0;
        }
        if window.count >= limit {
            return Ok(WindowOutcome::Refused {
                retry_after_ms: current.ends_at_ms - now_ms,
            });
        }
        window.count += 1;
        Ok(WindowOutcome::Allowed)
    }

    async fn phone_state(&self, phone: &str, now_ms: i64) -> Result<PhoneState> {
        let inner = self.lock(now_ms);
        Ok(inner.phones.get(phone).map(|r| r.state).unwrap_or_default())
    }

    async fn issue_code(
        &self,
        phone: &str,
        code_hash: &str,
        now_ms: i64,
        policy: &IssuePolicy,
    ) -> Result<IssueOutcome> {
        let mut inner = self.lock(now_ms);
        let record = inner.phones.entry(phone.to_owned()).or_default();
        let outcome = policy.issue(&mut record.state, now_ms);
        if let IssueOutcome::Issued { .. } = outcome {
            record.code = Some(PendingCode {
                hash: code_hash.to_owned(),
                expires_at_ms: now_ms + policy.code_ttl_ms,
                attempts: 0,
            });
            record.keep_until_ms = now_ms + policy.retention_ms();
        }
        Ok(outcome)
    }

    async fn verify_code(
        &self,
        phone: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome> {
        let mut inner = self.lock(now_ms);
        let Some(record) = inner.phones.get_mut(phone) else {
            return Ok(VerifyOutcome::NoCode);
        };
        let Some(code) = record.code.as_mut() else {
            return Ok(VerifyOutcome::NoCode);
        };
        if now_ms >= code.expires_at_ms {
            return Ok(VerifyOutcome::Expired);
        }
        if bool::from(code.hash.as_bytes().ct_eq(code_hash.as_bytes())) {
            record.code = None;
            record.state.sends = 0;
            return Ok(VerifyOutcome::Ok);
        }
        code.attempts += 1;
        if code.attempts >= max_attempts {
            record.code = None;
            return Ok(VerifyOutcome::TooManyAttempts);
        }
        Ok(VerifyOutcome::Wrong {
            attempts_left: max_attempts - code.attempts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::HOUR_MS;
    use super::*;

    async fn fresh() -> (MemoryStore, ()) {
        (MemoryStore::new(), ())
    }

    crate::store_suite!(fresh);

    #[tokio::test]
    async fn prunes_stale_entries() {
        let store = MemoryStore::new();
        let policy = IssuePolicy::from_config(&crate::OtpConfig::default());
        store
            .issue_code("+12015550123", "h", 0, &policy)
            .await
            .expect("issue");
        store.hit_window("ip:a", 5, HOUR_MS, 0).await.expect("hit");
        let later = policy.retention_ms() + PRUNE_EVERY_MS;
        store
            .phone_state("+12015550124", later)
            .await
            .expect("peek");
        let inner = store.inner.lock().expect("lock");
        assert!(inner.phones.is_empty() && inner.windows.is_empty());
    }
}
