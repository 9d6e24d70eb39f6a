//! Presence: which users are online, and when each was last seen.
//!
//! A device is online while it has a `Connect` stream: the stream marks it online when it opens
//! and again every heartbeat (an entry lives [`Presence::ttl`], three heartbeats, so a pod that
//! dies without a word lets its devices go offline by themselves), and offline when it ends. A
//! user is online while any device is. Each mark also records the user's last seen time, so
//! after a crash "last seen" is the last heartbeat.
//!
//! Entries carry the id of the stream that wrote them: a stream that ends only removes its own
//! entry, never the one of a newer stream of the same device (on this pod or another).
//!
//! Storage is a [`PresenceStore`]: [`MemoryPresence`] for a single pod, [`RedisPresence`] when
//! pods share Redis. Who may see whom is not decided here: callers ask the directory first.
//! When a user goes online or offline, the store tells every pod (in process, or over the Redis
//! channel [`PRESENCE_CHANNEL`]), and [`PresenceHub`] wakes the streams that follow that user.
//! Presence is soft state: when Redis is unreachable, marks are dropped (and logged once per
//! outage), reads fail with [`PresenceError`], and nothing else in chat is affected.
//!
//! The service's side is here too: `Chat.GetPresence` ([`ChatService::get_presence`]) and the
//! visibility check a `Connect` stream makes before each look.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;

use juntos_proto::meta::Caller;
use juntos_store::Tasks;

use super::ChatService;
use crate::delivery::routes::{self, Subscriber};
use crate::error::{Error, Result};

/// Most users one `GetPresence` call, or one presence subscription, may name.
pub const MAX_PRESENCE_USERS: usize = 256;

/// The Redis channel on which every pod hears that a user went online or offline.
pub const PRESENCE_CHANNEL: &str = "juntos:presence";

/// A user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceState {
    /// Some device of the user has a live stream.
    pub online: bool,
    /// When the user was last seen online, Unix milliseconds (0: never).
    pub last_seen_ms: i64,
}

pub use crate::error::PresenceError;

/// Where presence lives.
#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    /// Marks `device_id` of `user_id` online (written by stream `stream_id`) until
    /// `now_ms + ttl_ms`, and records `now_ms` as last seen. `true` when the user was offline
    /// before (the store has then told every pod).
    async fn mark_online(
        &self,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, PresenceError>;

    /// Removes `device_id`'s entry if stream `stream_id` wrote it, and records `now_ms` as last
    /// seen. `true` when the user is offline now and was not before (every pod has been told).
    async fn mark_offline(
        &self,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
    ) -> Result<bool, PresenceError>;

    /// The presence of each of `user_ids` at `now_ms`, in order.
    async fn get(
        &self,
        user_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<PresenceState>, PresenceError>;
}

/// Presence for the chat service: a store, the local watchers, and the marks' bookkeeping.
pub struct Presence {
    store: Arc<dyn PresenceStore>,
    hub: Arc<PresenceHub>,
    ttl: Duration,
    /// Whether the last mark failed (logs once per outage).
    failing: AtomicBool,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presence")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Presence {
    /// Presence kept in this process (a single chat pod), entries living `ttl`.
    pub fn memory(ttl: Duration) -> Arc<Self> {
        Self::new(Arc::new(MemoryPresence::default()), Arc::default(), ttl)
    }

    fn new(store: Arc<dyn PresenceStore>, hub: Arc<PresenceHub>, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            hub,
            ttl,
            failing: AtomicBool::new(false),
        })
    }

    /// Presence in Redis at `url`, shared by every pod, entries living `ttl`; the returned
    /// tasks (the channel subscriber) stop when dropped. Fails only when `url` is invalid or
    /// Redis cannot be reached now.
    pub async fn redis(url: &str, ttl: Duration) -> redis::RedisResult<(Arc<Self>, Tasks)> {
        let hub = Arc::new(PresenceHub::default());
        let (client, conn) = routes::connect(url).await?;
        let mut tasks = Tasks::default();
        tasks.spawn(routes::subscribe(
            client,
            PRESENCE_CHANNEL.to_owned(),
            Arc::clone(&hub) as Arc<dyn Subscriber>,
        ));
        let presence = Self::new(Arc::new(RedisPresence { conn }), hub, ttl);
        Ok((presence, tasks))
    }

    /// How long an online mark lives without a refresh.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks a device online in the background (never delays the stream).
    pub fn online(self: &Arc<Self>, user_id: &str, device_id: &str, stream_id: &str, now_ms: i64) {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        self.mark(user_id, device_id, stream_id, now_ms, Some(ttl_ms));
    }

    /// Marks a device's stream gone in the background.
    pub fn offline(self: &Arc<Self>, user_id: &str, device_id: &str, stream_id: &str, now_ms: i64) {
        self.mark(user_id, device_id, stream_id, now_ms, None);
    }

    /// Marks a device's stream online for `ttl_ms` (`None`: gone) in the background.
    fn mark(
        self: &Arc<Self>,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
        ttl_ms: Option<i64>,
    ) {
        let (this, user, device, stream) = (
            Arc::clone(self),
            user_id.to_owned(),
            device_id.to_owned(),
            stream_id.to_owned(),
        );
        tokio::spawn(async move {
            let result = match ttl_ms {
                Some(ttl_ms) => {
                    this.store
                        .mark_online(&user, &device, &stream, now_ms, ttl_ms)
                        .await
                }
                None => {
                    this.store
                        .mark_offline(&user, &device, &stream, now_ms)
                        .await
                }
            };
            this.after_mark(&user, result);
        });
    }

    fn after_mark(&self, user_id: &str, result: Result<bool, PresenceError>) {
        match result {
            Ok(changed) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("presence marks work again");
                }
                if changed {
                    // The store told every pod; waking local watchers at once saves the trip.
                    self.hub.changed(user_id);
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "recording presence failed");
                }
            }
        }
    }

    /// The presence of each of `user_ids` now, in order.
    pub async fn get(
        &self,
        user_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<PresenceState>, PresenceError> {
        if user_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.store.get(user_ids, now_ms).await
    }

    /// Wakes the returned watch whenever one of `user_ids` goes online or offline.
    pub fn watch(&self, user_ids: &[String]) -> Watch {
        self.hub.watch(user_ids)
    }
}

// === watchers ===

/// The watches following one user: (watch id, its wake-up).
type Watchers = Vec<(u64, Arc<Notify>)>;

/// The streams of this pod that follow users' presence, by followed user.
#[derive(Debug, Default)]
pub struct PresenceHub {
    next_id: AtomicU64,
    watchers: Mutex<HashMap<String, Watchers>>,
}

impl PresenceHub {
    /// Wakes every watch that follows `user_id`.
    pub fn changed(&self, user_id: &str) {
        let watchers = juntos_store::lock(&self.watchers);
        for (_, notify) in watchers.get(user_id).into_iter().flatten() {
            notify.notify_one();
        }
    }

    fn watch(self: &Arc<Self>, user_ids: &[String]) -> Watch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut users: Vec<String> = user_ids.to_vec();
        users.sort();
        users.dedup();
        let mut watchers = juntos_store::lock(&self.watchers);
        for user in &users {
            watchers
                .entry(user.clone())
                .or_default()
                .push((id, Arc::clone(&notify)));
        }
        Watch {
            hub: Arc::clone(self),
            id,
            users,
            notify,
        }
    }

    fn wake_all(&self) {
        let watchers = juntos_store::lock(&self.watchers);
        for (_, notify) in watchers.values().flatten() {
            notify.notify_one();
        }
    }
}

impl Subscriber for PresenceHub {
    fn message(&self, payload: &str) {
        self.changed(payload);
    }

    fn resubscribed(&self) {
        // Changes announced while the channel was down are lost: everyone looks again.
        self.wake_all();
    }
}

/// A stream's interest in some users' presence; dropping it stops the wake-ups.
#[derive(Debug)]
pub struct Watch {
    hub: Arc<PresenceHub>,
    id: u64,
    users: Vec<String>,
    notify: Arc<Notify>,
}

impl Watch {
    /// Resolves when a followed user went online or offline since the last call.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watchers = juntos_store::lock(&self.hub.watchers);
        for user in &self.users {
            if let Some(list) = watchers.get_mut(user) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    watchers.remove(user);
                }
            }
        }
    }
}

// === in memory ===

/// One user's devices online (device → (stream id, expiry)) and last seen time.
#[derive(Debug, Default)]
struct UserPresence {
    devices: HashMap<String, (String, i64)>,
    last_seen_ms: i64,
}

impl UserPresence {
    fn online(&self, now_ms: i64) -> bool {
        self.devices.values().any(|(_, expires)| *expires > now_ms)
    }
}

/// Presence in this process (a single chat pod; lost on restart, like any presence). Changes
/// reach this pod's watchers through [`Presence`]; there are no other pods to tell.
#[derive(Debug, Default)]
pub struct MemoryPresence {
    users: Mutex<HashMap<String, UserPresence>>,
}

impl MemoryPresence {
    /// Applies `change` to `user_id`'s devices and records `now_ms` as last seen; whether the
    /// user was online before, and is after.
    fn mark(
        &self,
        user_id: &str,
        now_ms: i64,
        change: impl FnOnce(&mut UserPresence),
    ) -> (bool, bool) {
        let mut users = juntos_store::lock(&self.users);
        let user = users.entry(user_id.to_owned()).or_default();
        let was_online = user.online(now_ms);
        change(user);
        user.last_seen_ms = user.last_seen_ms.max(now_ms);
        (was_online, user.online(now_ms))
    }
}

#[async_trait]
impl PresenceStore for MemoryPresence {
    async fn mark_online(
        &self,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, PresenceError> {
        let (was_online, _) = self.mark(user_id, now_ms, |user| {
            user.devices.retain(|_, (_, expires)| *expires > now_ms);
            user.devices.insert(
                device_id.to_owned(),
                (stream_id.to_owned(), now_ms.saturating_add(ttl_ms)),
            );
        });
        Ok(!was_online)
    }

    async fn mark_offline(
        &self,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
    ) -> Result<bool, PresenceError> {
        let (was_online, is_online) = self.mark(user_id, now_ms, |user| {
            if user
                .devices
                .get(device_id)
                .is_some_and(|(stream, _)| stream == stream_id)
            {
                user.devices.remove(device_id);
            }
        });
        Ok(was_online && !is_online)
    }

    async fn get(
        &self,
        user_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<PresenceState>, PresenceError> {
        let users = juntos_store::lock(&self.users);
        Ok(user_ids
            .iter()
            .map(|id| match users.get(id) {
                Some(user) => PresenceState {
                    online: user.online(now_ms),
                    last_seen_ms: user.last_seen_ms,
                },
                None => PresenceState::default(),
            })
            .collect())
    }
}

// === Redis ===

/// Keys (one hash slot per user, so a script may touch both): `juntos:presence:{<user>}`, a hash
/// of device id → `"<stream id> <expiry ms>"` that expires with its newest entry, and
/// `juntos:lastseen:{<user>}`, the last seen time in milliseconds.
fn keys(user_id: &str) -> [String; 2] {
    [
        format!("juntos:presence:{{{user_id}}}"),
        format!("juntos:lastseen:{{{user_id}}}"),
    ]
}

/// How long a last seen time is kept after its last update.
const LAST_SEEN_TTL_SECS: u64 = 400 * 24 * 60 * 60;

/// Shared by the scripts: whether hash KEYS[1] has an entry alive at `now`.
const ANY_ALIVE_LUA: &str = r"
local function any_alive(key, now)
  for _, v in ipairs(redis.call('HVALS', key)) do
    local expires = tonumber(string.match(v, ' (%d+)$'))
    if expires and expires > now then return true end
  end
  return false
end
";

/// ARGV: device, stream id, now, last seen ttl s, user id, expiry, ttl ms.
const ONLINE_LUA: &str = r"
local now = tonumber(ARGV[3])
local was = any_alive(KEYS[1], now)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], math.max(seen, now), 'EX', ARGV[4])
if not was then redis.call('PUBLISH', 'juntos:presence', ARGV[5]) return 1 end
return 0
";

/// ARGV: device, stream id, now, last seen ttl s, user id.
const OFFLINE_LUA: &str = r"
local now = tonumber(ARGV[3])
local was = any_alive(KEYS[1], now)
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and string.sub(v, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local seen = tonumber(redis.call('GET', KEYS[2]) or '0')
redis.call('SET', KEYS[2], math.max(seen, now), 'EX', ARGV[4])
if was and not any_alive(KEYS[1], now) then
  redis.call('PUBLISH', 'juntos:presence', ARGV[5])
  return 1
end
return 0
";

/// Presence in Redis, shared by every chat pod.
pub struct RedisPresence {
    conn: ConnectionManager,
}

impl RedisPresence {
    /// Runs the mark script `body` on `user_id`'s keys with ARGV device, stream id, now, last
    /// seen ttl, user id, then `more`; whether the user went online or offline.
    async fn mark(
        &self,
        body: &str,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
        more: &[i64],
    ) -> Result<bool, PresenceError> {
        let [entries, last_seen] = keys(user_id);
        let changed: i64 = redis::Script::new(&format!("{ANY_ALIVE_LUA}{body}"))
            .key(entries)
            .key(last_seen)
            .arg(device_id)
            .arg(stream_id)
            .arg(now_ms)
            .arg(LAST_SEEN_TTL_SECS)
            .arg(user_id)
            .arg(more)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(changed == 1)
    }
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn mark_online(
        &self,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<bool, PresenceError> {
        let expiry = now_ms.saturating_add(ttl_ms);
        let more = [expiry, ttl_ms.max(1)];
        self.mark(ONLINE_LUA, user_id, device_id, stream_id, now_ms, &more)
            .await
    }

    async fn mark_offline(
        &self,
        user_id: &str,
        device_id: &str,
        stream_id: &str,
        now_ms: i64,
    ) -> Result<bool, PresenceError> {
        self.mark(OFFLINE_LUA, user_id, device_id, stream_id, now_ms, &[])
            .await
    }

    async fn get(
        &self,
        user_ids: &[String],
        now_ms: i64,
    ) -> Result<Vec<PresenceState>, PresenceError> {
        let mut pipe = redis::pipe();
        for user_id in user_ids {
            let [entries, last_seen] = keys(user_id);
            pipe.cmd("HVALS").arg(entries).cmd("GET").arg(last_seen);
        }
        let flat: Vec<redis::Value> = pipe.query_async(&mut self.conn.clone()).await?;
        let mut values = flat.into_iter();
        let mut answers: Vec<(Vec<String>, Option<i64>)> = Vec::with_capacity(user_ids.len());
        while let (Some(entries), Some(seen)) = (values.next(), values.next()) {
            answers.push((
                redis::from_redis_value(entries)?,
                redis::from_redis_value(seen)?,
            ));
        }
        Ok(answers
            .into_iter()
            .map(|(entries, seen)| PresenceState {
                online: entries.iter().any(|e| {
                    e.rsplit_once(' ')
                        .and_then(|(_, expires)| expires.parse::<i64>().ok())
                        .is_some_and(|expires| expires > now_ms)
                }),
                last_seen_ms: seen.unwrap_or(0),
            })
            .collect())
    }
}

// === the service's side ===

impl ChatService {
    /// `Chat.GetPresence`: the presence of those of `user_ids` the caller may see.
    pub async fn get_presence(
        &self,
        caller: &Caller,
        user_ids: Vec<String>,
    ) -> Result<Vec<(String, PresenceState)>> {
        let visible = self.visible_presence(caller, &user_ids).await?;
        let states = self
            .presence
            .get(&visible, self.clock.now_ms())
            .await
            .map_err(Error::PresenceUnavailable)?;
        Ok(visible.into_iter().zip(states).collect())
    }

    /// Those of up to [`MAX_PRESENCE_USERS`] `user_ids` whose presence the caller may see.
    pub(super) async fn visible_presence(
        &self,
        caller: &Caller,
        user_ids: &[String],
    ) -> Result<Vec<String>> {
        if user_ids.len() > MAX_PRESENCE_USERS {
            return Err(Error::TooManyUsers {
                count: user_ids.len(),
                limit: MAX_PRESENCE_USERS,
            });
        }
        Ok(self
            .directory
            .presence_visible(&caller.user_id, user_ids)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use juntos_testkit::RedisServer;

    use super::*;

    const T0: i64 = 1_750_000_000_000;
    const TTL: i64 = 3_000;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The behaviour both stores share.
    async fn suite(store: &dyn PresenceStore) {
        let users = ids(&["ana", "ben"]);
        assert_eq!(
            store.get(&users, T0).await.expect("get"),
            [PresenceState::default(); 2]
        );

        assert!(
            store
                .mark_online("ana", "a1", "s1", T0, TTL)
                .await
                .expect("on")
        );
        // A second device, or a refresh, is no change.
        assert!(
            !store
                .mark_online("ana", "a2", "s2", T0 + 10, TTL)
                .await
                .expect("on")
        );
        assert!(
            !store
                .mark_online("ana", "a1", "s1", T0 + 20, TTL)
                .await
                .expect("on")
        );
        let now = store.get(&users, T0 + 30).await.expect("get");
        assert!(now[0].online);
        assert_eq!(now[0].last_seen_ms, T0 + 20);
        assert!(!now[1].online);

        // A stream that was replaced removes nothing.
        assert!(
            !store
                .mark_offline("ana", "a1", "old", T0 + 40)
                .await
                .expect("off")
        );
        assert!(
            !store
                .mark_offline("ana", "a1", "s1", T0 + 50)
                .await
                .expect("off")
        );
        assert!(store.get(&users, T0 + 60).await.expect("get")[0].online);
        // The last device's own stream ends: offline, last seen then.
        assert!(
            store
                .mark_offline("ana", "a2", "s2", T0 + 70)
                .await
                .expect("off")
        );
        let later = store.get(&users, T0 + 80).await.expect("get");
        assert_eq!(
            later[0],
            PresenceState {
                online: false,
                last_seen_ms: T0 + 70
            }
        );

        // A device whose pod died without a word expires by itself.
        assert!(
            store
                .mark_online("ben", "b1", "s3", T0 + 100, TTL)
                .await
                .expect("on")
        );
        assert!(store.get(&users, T0 + 100 + TTL - 1).await.expect("get")[1].online);
        let expired = store.get(&users, T0 + 100 + TTL).await.expect("get");
        assert_eq!(
            expired[1],
            PresenceState {
                online: false,
                last_seen_ms: T0 + 100
            }
        );
        // Going online again after expiry is a change.
        assert!(
            store
                .mark_online("ben", "b1", "s4", T0 + 200 + TTL, TTL)
                .await
                .expect("on")
        );
    }

    #[tokio::test]
    async fn memory_store_passes_the_suite() {
        suite(&MemoryPresence::default()).await;
    }

    #[tokio::test]
    async fn redis_store_passes_the_suite() {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).expect("url");
        let conn = ConnectionManager::new(client).await.expect("connect");
        suite(&RedisPresence { conn }).await;
    }

    #[tokio::test]
    async fn changes_reach_watchers_of_that_user_only() {
        let presence = Presence::memory(Duration::from_secs(3));
        let ana = presence.watch(&ids(&["ana"]));
        let ben = presence.watch(&ids(&["ben", "ben"]));
        presence.online("ana", "a1", "s1", T0);
        tokio::time::timeout(Duration::from_secs(2), ana.changed())
            .await
            .expect("ana's watcher woke");
        assert!(
            tokio::time::timeout(Duration::from_millis(100), ben.changed())
                .await
                .is_err()
        );
        drop(ana);
        assert!(
            !presence
                .hub
                .watchers
                .lock()
                .expect("lock")
                .contains_key("ana"),
            "a dropped watch leaves nothing behind"
        );
    }

    #[tokio::test]
    async fn redis_changes_reach_watchers_on_other_pods() {
        let redis = RedisServer::start();
        let ttl = Duration::from_secs(3);
        let (pod_a, _tasks_a) = Presence::redis(&redis.url(), ttl).await.expect("pod a");
        let (pod_b, _tasks_b) = Presence::redis(&redis.url(), ttl).await.expect("pod b");
        let watch = pod_b.watch(&ids(&["ana"]));
        // The subscriber needs a moment to subscribe; mark until the watcher hears of it.
        let heard = tokio::time::timeout(Duration::from_secs(5), async {
            let mut n = 0;
            loop {
                pod_a.online("ana", "a1", &format!("s{n}"), T0 + n);
                tokio::select! {
                    () = watch.changed() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                pod_a.offline("ana", "a1", &format!("s{n}"), T0 + n);
                n += 1;
            }
        })
        .await;
        assert!(heard.is_ok(), "pod b heard of ana through Redis");
        let state = pod_b.get(&ids(&["ana"]), T0 + 1_000).await.expect("get");
        assert!(state[0].last_seen_ms >= T0);
    }
}
