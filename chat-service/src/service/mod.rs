//! The chat service: [`ChatService`], its [`ChatConfig`] and constructors, the caps the features
//! share, the send rate, ringing recipients, and the background work (dedupe pruning). Each
//! feature is a file of its own, an `impl ChatService` block with its tests: [`send`] (`Send`,
//! `Sync`, `Ack`), [`connect`] (the live `Connect` stream), [`groups`] (membership and group
//! sends) and [`presence`] (who is online, `GetPresence`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use juntos_clock::SharedClock;
use juntos_store::{Shutdown, Tasks};

use crate::delivery::{Doorbell, RedisRoutes};
use crate::directory::DeviceDirectory;
use crate::error::{Error, Result};
use crate::store::ChatStore;

pub mod connect;
pub mod groups;
pub mod presence;
pub mod send;

use groups::NoticeSigner;
pub use presence::{MAX_PRESENCE_USERS, Presence, PresenceState};
pub use send::{DEFAULT_SYNC_LIMIT, MAX_CLIENT_MSG_ID_LEN, MAX_SYNC_LIMIT};

/// Largest ciphertext of one envelope, in bytes.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Most recipient devices of one send.
pub const MAX_RECIPIENTS: usize = 256;
/// How often old dedupe keys are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60 * 60);

/// How the chat service is tuned.
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Sends per second per user, sustained.
    pub send_rate_per_second: u32,
    /// Sends per user in a burst.
    pub send_burst: u32,
    /// How often a `Connect` stream gets a server heartbeat (and polls the mailbox).
    pub heartbeat: Duration,
    /// A `Connect` stream from which nothing arrived for this long is closed.
    pub idle_timeout: Duration,
    /// Most envelopes pushed on a `Connect` stream and not yet acked.
    pub push_window: usize,
    /// How long a send's dedupe key is kept (a retry within it gets the first answer).
    pub dedupe_retention: Duration,
    /// The seed of the key group notices are signed with (`None`: a random key, fine for one
    /// process; several pods need the same seed).
    pub notice_signing_seed: Option<NoticeSeed>,
}

/// A 32-byte Ed25519 seed that never shows in logs.
#[derive(Clone)]
pub struct NoticeSeed(pub [u8; 32]);

impl std::fmt::Debug for NoticeSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoticeSeed(..)")
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            send_rate_per_second: 100,
            send_burst: 200,
            heartbeat: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(90),
            push_window: 500,
            dedupe_retention: Duration::from_secs(7 * 24 * 60 * 60),
            notice_signing_seed: None,
        }
    }
}

impl ChatConfig {
    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.send_rate_per_second == 0 || self.send_burst == 0 {
            return Err("the send rate and burst must be at least 1".into());
        }
        if self.heartbeat.is_zero() || self.idle_timeout <= self.heartbeat {
            return Err("the idle timeout must be longer than the heartbeat interval".into());
        }
        if self.push_window == 0 {
            return Err("the push window must be at least 1".into());
        }
        if self.dedupe_retention < Duration::from_secs(24 * 60 * 60) {
            return Err("dedupe keys must be kept at least a day".into());
        }
        Ok(())
    }
}

/// What the chat pods share when there are several: routing and doorbells across pods through
/// Redis, and presence.
pub struct Cluster {
    /// Device → pod routes and cross-pod doorbells; its doorbell is the one this pod's streams
    /// wait on.
    pub routes: Arc<RedisRoutes>,
    /// Presence in Redis, shared by the pods.
    pub presence: Arc<Presence>,
}

/// The chat service.
pub struct ChatService {
    pub(super) config: ChatConfig,
    pub(super) store: Arc<dyn ChatStore>,
    pub(super) directory: Arc<dyn DeviceDirectory>,
    /// Signs group notices.
    pub(super) notice_signer: NoticeSigner,
    pub(super) doorbell: Arc<Doorbell>,
    /// Routing across pods; `None` when this is the only chat pod.
    pub(super) routes: Option<Arc<RedisRoutes>>,
    /// Who is online, in this process or in Redis.
    pub(super) presence: Arc<Presence>,
    pub(super) clock: SharedClock,
    send_rate: DefaultKeyedRateLimiter<String>,
    /// Ends every `Connect` stream when it fires.
    pub(super) shutdown: Shutdown,
}

impl std::fmt::Debug for ChatService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ChatService {
    /// A chat service over `store`, checking device lists with `directory`. `Connect` streams
    /// end when `shutdown` fires (clients reconnect to another pod). With `cluster`, streams and
    /// doorbells span pods through its routes (which ring `routes.doorbell()` for the streams
    /// connected here) and presence is the pods' shared one; without, this is the only chat pod
    /// and both stay in this process.
    pub fn new(
        config: ChatConfig,
        store: Arc<dyn ChatStore>,
        directory: Arc<dyn DeviceDirectory>,
        clock: SharedClock,
        shutdown: Shutdown,
        cluster: Option<Cluster>,
    ) -> Arc<Self> {
        let (doorbell, routes, presence) = match cluster {
            Some(Cluster { routes, presence }) => {
                (Arc::clone(routes.doorbell()), Some(routes), presence)
            }
            None => (
                Doorbell::new(),
                None,
                Presence::memory(config.heartbeat * 3),
            ),
        };
        let per_second = NonZeroU32::new(config.send_rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.send_burst).unwrap_or(per_second);
        let notice_signer = match &config.notice_signing_seed {
            Some(seed) => NoticeSigner::from_seed(&seed.0),
            None => NoticeSigner::random(),
        };
        Arc::new(Self {
            send_rate: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            notice_signer,
            config,
            store,
            directory,
            doorbell,
            routes,
            presence,
            clock,
            shutdown,
        })
    }

    /// Starts the background work (hourly dedupe pruning, forgetting idle rate buckets), which
    /// stops when the returned tasks are dropped.
    pub fn start(self: &Arc<Self>) -> Tasks {
        let mut tasks = Tasks::default();
        let this = Arc::clone(self);
        tasks.spawn(async move {
            loop {
                this.prune_once().await;
                tokio::time::sleep(PRUNE_EVERY).await;
            }
        });
        let this = Arc::clone(self);
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                this.send_rate.retain_recent();
                this.send_rate.shrink_to_fit();
            }
        });
        tasks
    }

    /// Forgets dedupe keys older than the retention.
    pub async fn prune_once(&self) {
        let retention = i64::try_from(self.config.dedupe_retention.as_millis()).unwrap_or(i64::MAX);
        let older_than = self.clock.now_ms().saturating_sub(retention);
        match self.store.prune_dedupe(older_than).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "pruned old send dedupe keys"),
            Err(e) => tracing::warn!(error = %e, "pruning send dedupe keys failed"),
        }
    }

    /// The doorbell `Connect` streams wait on.
    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }

    /// Wakes the streams of `device_ids` after a store, on this pod or through Redis (never
    /// waiting for Redis: what was stored is durable already).
    pub(super) fn ring(&self, device_ids: &[String]) {
        match &self.routes {
            Some(routes) => routes.ring(device_ids),
            None => {
                for device_id in device_ids {
                    self.doorbell.ring(device_id);
                }
            }
        }
    }

    pub(super) fn check_rate(&self, user_id: &str) -> Result<()> {
        self.check_rate_n(user_id, 1)
    }

    /// Takes `n` sends' worth of the user's send rate (at most a whole burst): a group send or
    /// change costs one per [`MAX_RECIPIENTS`] devices it writes to, as the pairwise sends
    /// reaching them would.
    pub(super) fn check_rate_n(&self, user_id: &str, n: usize) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n)
            .unwrap_or(u32::MAX)
            .clamp(1, self.config.send_burst.max(1));
        let n = NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let refused = |wait: Duration| {
            // Round up so a client that waits exactly this long gets through.
            let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX) + 1;
            Error::SendRate {
                retry_after: Duration::from_millis(wait_ms),
            }
        };
        match self.send_rate.check_key_n(&user_id.to_owned(), n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refused(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            // More than a burst: cannot happen after the clamp above.
            Err(_) => Err(refused(Duration::from_secs(1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{ALICE_TO_BOB, Fixture, T0, caller};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pruning_forgets_keys_older_than_the_retention() {
        let f = Fixture::new();
        let alice = caller("alice", "a1");
        f.send(&alice, "m1", ALICE_TO_BOB, b"x")
            .await
            .expect("send");
        f.clock.advance_ms(6 * 24 * 60 * 60 * 1000);
        f.service.prune_once().await;
        assert_eq!(
            f.store.sent_at("alice", "m1").await.expect("lookup"),
            Some(T0)
        );
        f.clock.advance_ms(24 * 60 * 60 * 1000 + 1);
        f.service.prune_once().await;
        assert_eq!(f.store.sent_at("alice", "m1").await.expect("lookup"), None);
    }
}
