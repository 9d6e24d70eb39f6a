//! The Redis store: production backend, shared by every otp-service replica.
//!
//! Keys (all under [`PREFIX`], all with an expiry that only cleans up):
//! * `juntos:otp:phone:<E.164>`: a hash with the pending code (`h` hash, `x` expiry ms, `a`
//!   attempts) and the number's rate-limit state (`n` sends, `l` last send ms, `d` day start ms,
//!   `c` day count);
//! * `juntos:otp:win:<key>:<window index>`: a fixed-window counter.
//!
//! Every read-modify-write is one Lua script, so it is atomic across replicas. The scripts
//! mirror [`IssuePolicy`] and [`super::MemoryStore`]; the shared suite holds them to it. Codes
//! are compared inside Redis with plain string equality: what is compared is an HMAC under a
//! secret Redis never sees, so the timing of that comparison tells an attacker nothing useful.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{
    FixedWindow, IssueOutcome, IssuePolicy, OtpStore, PhoneState, VerifyOutcome, WindowOutcome,
};
use crate::error::{Error, Result};

/// Prefix of every key this store writes.
pub const PREFIX: &str = "juntos:otp:";

/// KEYS[1] window counter. ARGV: limit, retry_after_ms, expire_ms.
/// Returns {0, 0} when counted, {1, retry_after_ms} when refused (not counted).
const WINDOW_LUA: &str = r"
local count = tonumber(redis.call('GET', KEYS[1])) or 0
if count >= tonumber(ARGV[1]) then
  return {1, tonumber(ARGV[2])}
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {0, 0}
";

/// KEYS[1] phone hash. ARGV: now, code_hash, code_ttl_ms, max_per_day, day_ms, retention_ms,
/// then the resend schedule in ms. Returns {0, resend_after_ms} when issued, {1, retry} when
/// too soon, {2, retry} at the daily limit. Mirrors `IssuePolicy::issue`.
const ISSUE_LUA: &str = r"
local now = tonumber(ARGV[1])
local max_day = tonumber(ARGV[4])
local day_ms = tonumber(ARGV[5])
local sched = {}
for i = 7, #ARGV do sched[#sched + 1] = tonumber(ARGV[i]) end
local function wait_after(n)
  if n < 1 then n = 1 end
  if n > #sched then n = #sched end
  return sched[n] or 0
end
local f = redis.call('HMGET', KEYS[1], 'n', 'l', 'd', 'c')
local n = tonumber(f[1]) or 0
local l = tonumber(f[2])
local d = tonumber(f[3])
local c = tonumber(f[4]) or 0
if d == nil or now >= d + day_ms then
  n = 0; l = nil; d = nil; c = 0
end
if d ~= nil and c >= max_day then
  return {2, d + day_ms - now}
end
if l ~= nil and n > 0 and now < l + wait_after(n) then
  return {1, l + wait_after(n) - now}
end
if d == nil then d = now end
n = n + 1
c = c + 1
redis.call('HSET', KEYS[1], 'h', ARGV[2], 'x', now + tonumber(ARGV[3]), 'a', 0,
  'n', n, 'l', now, 'd', d, 'c', c)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
local resend = wait_after(n)
if c >= max_day and d + day_ms - now > resend then resend = d + day_ms - now end
return {0, resend}
";

/// KEYS[1] phone hash. ARGV: now, code_hash, max_attempts.
/// Returns {0,0} ok, {1, left} wrong, {2,0} too many attempts, {3,0} no code, {4,0} expired.
const VERIFY_LUA: &str = r"
local f = redis.call('HMGET', KEYS[1], 'h', 'x', 'a')
if not f[1] then return {3, 0} end
if tonumber(ARGV[1]) >= tonumber(f[2]) then return {4, 0} end
if f[1] == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'h', 'x', 'a')
  redis.call('HSET', KEYS[1], 'n', 0)
  return {0, 0}
end
local a = (tonumber(f[3]) or 0) + 1
local max = tonumber(ARGV[3])
if a >= max then
  redis.call('HDEL', KEYS[1], 'h', 'x', 'a')
  return {2, 0}
end
redis.call('HSET', KEYS[1], 'a', a)
return {1, max - a}
";

/// Codes and counters in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    window: Script,
    issue: Script,
    verify: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379/0`). The connection reconnects by itself
    /// afterwards; while Redis is down, operations fail with [`Error::Redis`] (UNAVAILABLE).
    pub async fn connect(url: &str) -> Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            conn,
            window: Script::new(WINDOW_LUA),
            issue: Script::new(ISSUE_LUA),
            verify: Script::new(VERIFY_LUA),
        })
    }

    fn phone_key(phone: &str) -> String {
        format!("{PREFIX}phone:{phone}")
    }
}

/// Reads a `{kind, value}` script answer.
fn pair(reply: &[i64]) -> Result<(i64, i64)> {
    match reply {
        [kind, value] => Ok((*kind, *value)),
        _ => Err(Error::CorruptRecord("script answer is not a pair")),
    }
}

#[async_trait]
impl OtpStore for RedisStore {
    async fn hit_window(
        &self,
        key: &str,
        limit: u32,
        window_ms: i64,
        now_ms: i64,
    ) -> Result<WindowOutcome> {
        let window = FixedWindow::at(window_ms, now_ms);
        let reply: Vec<i64> = self
            .window
            .key(format!("{PREFIX}win:{key}:{}", window.index))
            .arg(limit)
            .arg(window.ends_at_ms - now_ms)
            .arg(window.len_ms.saturating_mul(2))
            .invoke_async(&mut self.conn.clone())
            .await?;
        match pair(&reply)? {
            (0, _) => Ok(WindowOutcome::Allowed),
            (1, retry_after_ms) => Ok(WindowOutcome::Refused { retry_after_ms }),
            _ => Err(Error::CorruptRecord("unknown window answer")),
        }
    }

    async fn phone_state(&self, phone: &str, _now_ms: i64) -> Result<PhoneState> {
        let fields: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(Self::phone_key(phone))
            .arg(&["n", "l", "d", "c"])
            .query_async(&mut self.conn.clone())
            .await?;
        let [n, l, d, c] = fields[..] else {
            return Err(Error::CorruptRecord("HMGET answer has the wrong length"));
        };
        let count = |v: Option<i64>| u32::try_from(v.unwrap_or(0)).unwrap_or(u32::MAX);
        Ok(PhoneState {
            sends: count(n),
            last_sent_ms: l,
            day_start_ms: d,
            day_count: count(c),
        })
    }

    async fn issue_code(
        &self,
        phone: &str,
        code_hash: &str,
        now_ms: i64,
        policy: &IssuePolicy,
    ) -> Result<IssueOutcome> {
        let mut invocation = self.issue.key(Self::phone_key(phone));
        invocation
            .arg(now_ms)
            .arg(code_hash)
            .arg(policy.code_ttl_ms)
            .arg(policy.max_codes_per_day)
            .arg(policy.day_ms)
            .arg(policy.retention_ms());
        for wait in &policy.resend_schedule_ms {
            invocation.arg(*wait);
        }
        let reply: Vec<i64> = invocation.invoke_async(&mut self.conn.clone()).await?;
        match pair(&reply)? {
            (0, resend_after_ms) => Ok(IssueOutcome::Issued { resend_after_ms }),
            (1, retry_after_ms) => Ok(IssueOutcome::ResendTooSoon { retry_after_ms }),
            (2, retry_after_ms) => Ok(IssueOutcome::DailyLimit { retry_after_ms }),
            _ => Err(Error::CorruptRecord("unknown issue answer")),
        }
    }

    async fn verify_code(
        &self,
        phone: &str,
        code_hash: &str,
        now_ms: i64,
        max_attempts: u32,
    ) -> Result<VerifyOutcome> {
        let reply: Vec<i64> = self
            .verify
            .key(Self::phone_key(phone))
            .arg(now_ms)
            .arg(code_hash)
            .arg(max_attempts)
            .invoke_async(&mut self.conn.clone())
            .await?;
        match pair(&reply)? {
            (0, _) => Ok(VerifyOutcome::Ok),
            (1, left) => Ok(VerifyOutcome::Wrong {
                attempts_left: u32::try_from(left)
                    .map_err(|_| Error::CorruptRecord("negative attempts left"))?,
            }),
            (2, _) => Ok(VerifyOutcome::TooManyAttempts),
            (3, _) => Ok(VerifyOutcome::NoCode),
            (4, _) => Ok(VerifyOutcome::Expired),
            _ => Err(Error::CorruptRecord("unknown verify answer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use juntos_testkit::RedisServer;

    async fn fresh() -> (RedisStore, RedisServer) {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url())
            .await
            .expect("connect to redis-server");
        (store, server)
    }

    crate::store_suite!(fresh);

    #[tokio::test]
    async fn every_key_is_prefixed_and_expires() {
        let (store, _server) = fresh().await;
        let policy = IssuePolicy::from_config(&crate::OtpConfig::default());
        let now = 1_700_000_000_000;
        store
            .issue_code("+12015550123", "h", now, &policy)
            .await
            .expect("issue");
        store
            .hit_window("ip:127.0.0.1", 5, super::super::HOUR_MS, now)
            .await
            .expect("hit");
        let mut conn = store.conn.clone();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        assert_eq!(keys.len(), 2, "{keys:?}");
        for key in keys {
            assert!(key.starts_with(PREFIX), "{key}");
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("PTTL");
            assert!(ttl > 0, "{key} has no expiry");
        }
    }

    #[tokio::test]
    async fn outage_is_an_unavailable_error() {
        let (store, mut server) = fresh().await;
        server.kill();
        let err = store
            .verify_code("+12015550123", "h", 0, 5)
            .await
            .expect_err("redis is down");
        assert!(matches!(err, Error::Redis(_)), "{err:?}");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unavailable);
        let err = RedisStore::connect(&server.url())
            .await
            .expect_err("nothing listens");
        assert_eq!(tonic::Status::from(err).code(), tonic::Code::Unavailable);
    }
}
