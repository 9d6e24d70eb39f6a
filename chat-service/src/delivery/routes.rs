//! Device → pod routing and doorbells across chat pods, in Redis.
//!
//! Each chat pod has a random pod id and subscribes to `juntos:doorbell:<pod id>`. While a
//! device's `Connect` stream lives on a pod, `juntos:route:<device id>` holds that pod id with a
//! TTL ([`RoutesConfig::ttl`]), refreshed for every connected device each heartbeat interval and
//! deleted (only if it still names this pod) when the stream ends. After a send is stored, a
//! recipient connected here is rung locally; the others' routes are looked up (one `MGET` per
//! batch) and the device id is published to the pod holding each, whose subscriber rings its
//! local [`Doorbell`].
//!
//! Redis is never in the way of a send: claims, releases and rings go through a bounded queue to
//! one worker task that batches them into pipelines, so a slow or absent Redis only delays (or,
//! when the queue is full, drops) doorbells. The mailbox stays the truth: a lost doorbell only
//! delays delivery until the stream's next heartbeat tick re-reads it. Once a claim is in Redis
//! the stream is rung, so a send that raced its connection is not left for the next tick.
//! Commands use a
//! reconnecting [`ConnectionManager`]; the subscriber re-subscribes with backoff, and rings every
//! local stream once it is back, since doorbells may have been lost meanwhile.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use rand::RngCore as _;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::mpsc;

use juntos_store::Tasks;

use super::doorbell::Doorbell;

/// Prefix of the device → pod keys.
pub const ROUTE_PREFIX: &str = "juntos:route:";
/// Prefix of the per-pod doorbell channels.
pub const DOORBELL_PREFIX: &str = "juntos:doorbell:";
/// Most claims, releases and rings waiting for the worker; beyond that they are dropped.
const QUEUE: usize = 16 * 1024;
/// Most queued operations handled in one round of pipelines.
const BATCH: usize = 1024;
/// Most route refreshes in one pipeline.
const REFRESH_CHUNK: usize = 1000;
/// How often the subscriber checks its connection with a PING.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How long one Redis round trip may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait between re-subscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Deletes KEYS[1] only if it still holds ARGV[1] (this pod): a device that moved to another
/// pod keeps its new route.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How routes are kept.
#[derive(Debug, Clone)]
pub struct RoutesConfig {
    /// How long a route lives without a refresh (a pod that died without releasing its devices
    /// stops attracting doorbells after this).
    pub ttl: Duration,
    /// How often every connected device's route is refreshed (the heartbeat interval).
    pub refresh_every: Duration,
}

impl RoutesConfig {
    /// Routes refreshed every `heartbeat` and living three heartbeats.
    pub fn for_heartbeat(heartbeat: Duration) -> Self {
        Self {
            ttl: (heartbeat * 3).max(Duration::from_secs(1)),
            refresh_every: heartbeat,
        }
    }
}

/// One queued piece of work for Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// A device's stream registered here.
    Claim(String),
    /// A device's stream here ended.
    Release(String),
    /// Devices not connected here got mail.
    Ring(Vec<String>),
}

/// Routing and doorbells across pods (see the module docs).
#[derive(Debug)]
pub struct RedisRoutes {
    pod_id: String,
    doorbell: Arc<Doorbell>,
    ops: mpsc::Sender<Op>,
}

impl RedisRoutes {
    /// Connects to Redis at `url` with a fresh random pod id, starts the worker, the subscriber
    /// and the route refresher (stopped when the returned tasks are dropped), and rings
    /// `doorbell` for doorbells addressed to this pod. Fails only when `url` is invalid or
    /// Redis cannot be reached now; afterwards outages are ridden out.
    pub async fn start(
        url: &str,
        doorbell: Arc<Doorbell>,
        config: RoutesConfig,
    ) -> redis::RedisResult<(Arc<Self>, Tasks)> {
        let mut id = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut id);
        Self::start_with_id(url, hex::encode(id), doorbell, config).await
    }

    async fn start_with_id(
        url: &str,
        pod_id: String,
        doorbell: Arc<Doorbell>,
        config: RoutesConfig,
    ) -> redis::RedisResult<(Arc<Self>, Tasks)> {
        let (client, conn) = connect(url).await?;
        let (ops, queued) = mpsc::channel(QUEUE);
        let mut tasks = Tasks::default();
        let worker = Worker {
            pod_id: pod_id.clone(),
            ttl_secs: config.ttl.as_secs().max(1),
            doorbell: Arc::clone(&doorbell),
            conn: conn.clone(),
            failing: false,
        };
        tasks.spawn(worker.run(queued));
        tasks.spawn(subscribe(
            client,
            format!("{DOORBELL_PREFIX}{pod_id}"),
            Arc::clone(&doorbell) as Arc<dyn Subscriber>,
        ));
        tasks.spawn(refresh(conn, pod_id.clone(), Arc::clone(&doorbell), config));
        tracing::info!(pod_id, "chat routing through Redis");
        Ok((
            Arc::new(Self {
                pod_id,
                doorbell,
                ops,
            }),
            tasks,
        ))
    }

    /// This pod's id (the value of the route keys it writes).
    pub fn pod_id(&self) -> &str {
        &self.pod_id
    }

    /// The local doorbell this pod's streams wait on.
    pub fn doorbell(&self) -> &Arc<Doorbell> {
        &self.doorbell
    }

    /// Maps `device_id` to this pod (its stream just registered here). The returned claim
    /// releases the route when dropped, unless the device has another stream here by then.
    pub fn claim(self: &Arc<Self>, device_id: &str) -> Claim {
        self.queue(Op::Claim(device_id.to_owned()));
        Claim {
            routes: Arc::clone(self),
            device_id: device_id.to_owned(),
        }
    }

    /// Wakes the streams of `device_ids` wherever they are: here at once, elsewhere through
    /// their pod's doorbell channel (in the background; never waits for Redis).
    pub fn ring(&self, device_ids: &[String]) {
        let (local, remote) = split_local(device_ids, |d| self.doorbell.is_connected(d));
        for device_id in local {
            self.doorbell.ring(device_id);
        }
        if !remote.is_empty() {
            self.queue(Op::Ring(remote.into_iter().cloned().collect()));
        }
    }

    fn queue(&self, op: Op) {
        if self.ops.try_send(op).is_err() {
            // Only delays delivery until the next heartbeat tick (or the next refresh).
            tracing::debug!("chat routing queue full; dropping a Redis operation");
        }
    }
}

/// A client of the Redis at `url` (for subscriptions) and a reconnecting connection to it whose
/// round trips fail after [`TIMEOUT`]. Fails only when `url` is invalid or Redis cannot be
/// reached now.
pub(crate) async fn connect(url: &str) -> redis::RedisResult<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url)?;
    let manager = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    let conn = ConnectionManager::new_with_config(client.clone(), manager).await?;
    Ok((client, conn))
}

/// A device's route held by this pod; dropping it releases the route.
#[derive(Debug)]
pub struct Claim {
    routes: Arc<RedisRoutes>,
    device_id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.routes
            .queue(Op::Release(std::mem::take(&mut self.device_id)));
    }
}

/// Splits recipients into those with a stream here and the others, each once, in order.
fn split_local(
    device_ids: &[String],
    is_local: impl Fn(&str) -> bool,
) -> (Vec<&String>, Vec<&String>) {
    let mut seen = HashSet::new();
    device_ids
        .iter()
        .filter(|d| seen.insert(d.as_str()))
        .partition(|d| is_local(d))
}

/// Which pod to ring for each device, from the routes looked up for `devices` (in order):
/// devices without a route are offline, and devices routed to `own_pod` were rung already.
fn doorbells<'a>(
    own_pod: &str,
    devices: &'a [String],
    routes: &'a [Option<String>],
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut by_pod: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (device, route) in devices.iter().zip(routes) {
        match route.as_deref() {
            Some(pod) if pod != own_pod => by_pod.entry(pod).or_default().push(device),
            _ => {}
        }
    }
    by_pod
}

fn route_key(device_id: &str) -> String {
    format!("{ROUTE_PREFIX}{device_id}")
}

// === impl Worker ===

/// Applies queued operations to Redis, a batch at a time.
struct Worker {
    pod_id: String,
    ttl_secs: u64,
    doorbell: Arc<Doorbell>,
    conn: ConnectionManager,
    /// Whether the last round failed (logs once per outage, not once per batch).
    failing: bool,
}

impl Worker {
    async fn run(mut self, mut queued: mpsc::Receiver<Op>) {
        let mut batch = Vec::with_capacity(BATCH);
        while queued.recv_many(&mut batch, BATCH).await > 0 {
            let applied = self.apply(&batch).await;
            batch.clear();
            match (applied, self.failing) {
                (Err(e), false) => {
                    tracing::warn!(error = %e, "Redis unreachable; cross-pod doorbells wait for heartbeats");
                    self.failing = true;
                }
                (Ok(()), true) => {
                    tracing::info!("Redis reachable again; cross-pod doorbells resume");
                    self.failing = false;
                }
                _ => {}
            }
        }
    }

    async fn apply(&mut self, batch: &[Op]) -> redis::RedisResult<()> {
        // Claims and releases in queue order, so a quick connect-then-leave ends released.
        let mut routes = redis::pipe();
        let mut ring = Vec::new();
        let mut seen = HashSet::new();
        for op in batch {
            match op {
                Op::Claim(device_id) => {
                    routes
                        .cmd("SET")
                        .arg(route_key(device_id))
                        .arg(&self.pod_id)
                        .arg("EX")
                        .arg(self.ttl_secs)
                        .ignore();
                }
                // A newer stream of the device registered here since: the route stays.
                Op::Release(device_id) if self.doorbell.is_connected(device_id) => {}
                Op::Release(device_id) => {
                    routes
                        .cmd("EVAL")
                        .arg(RELEASE_LUA)
                        .arg(1)
                        .arg(route_key(device_id))
                        .arg(&self.pod_id)
                        .ignore();
                }
                Op::Ring(device_ids) => {
                    ring.extend(device_ids.iter().filter(|d| seen.insert(d.as_str())));
                }
            }
        }
        if !routes.is_empty() {
            let () = routes.query_async(&mut self.conn).await?;
            // A send stored before the route was visible found no route and rang nobody, and
            // the stream may have read its mailbox before that send: look once more.
            for op in batch {
                if let Op::Claim(device_id) = op {
                    self.doorbell.ring(device_id);
                }
            }
        }
        if ring.is_empty() {
            return Ok(());
        }
        let ring: Vec<String> = ring.into_iter().cloned().collect();
        let keys: Vec<String> = ring.iter().map(|d| route_key(d)).collect();
        let found: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn)
            .await?;
        let targets = doorbells(&self.pod_id, &ring, &found);
        if targets.is_empty() {
            return Ok(());
        }
        let mut publish = redis::pipe();
        for (pod, devices) in targets {
            for device_id in devices {
                publish
                    .cmd("PUBLISH")
                    .arg(format!("{DOORBELL_PREFIX}{pod}"))
                    .arg(device_id)
                    .ignore();
            }
        }
        publish.query_async(&mut self.conn).await
    }
}

// === background tasks ===

/// Keeps the routes of every device connected here alive.
async fn refresh(
    mut conn: ConnectionManager,
    pod_id: String,
    doorbell: Arc<Doorbell>,
    config: RoutesConfig,
) {
    let ttl_secs = config.ttl.as_secs().max(1);
    let mut ticks = tokio::time::interval(config.refresh_every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        ticks.tick().await;
        let devices = doorbell.devices();
        let mut result = Ok(());
        for chunk in devices.chunks(REFRESH_CHUNK) {
            let mut pipe = redis::pipe();
            for device_id in chunk {
                pipe.cmd("SET")
                    .arg(route_key(device_id))
                    .arg(&pod_id)
                    .arg("EX")
                    .arg(ttl_secs)
                    .ignore();
            }
            result = pipe.query_async::<()>(&mut conn).await;
            if result.is_err() {
                break;
            }
        }
        match (result, failing) {
            (Err(e), false) => {
                tracing::warn!(error = %e, "refreshing chat routes in Redis failed");
                failing = true;
            }
            (Ok(()), true) => failing = false,
            _ => {}
        }
    }
}

/// What a Redis channel subscription does with what it hears.
pub trait Subscriber: Send + Sync + 'static {
    /// One message arrived.
    fn message(&self, payload: &str);
    /// The subscription is back after a loss: messages published meanwhile are gone.
    fn resubscribed(&self);
}

impl Subscriber for Doorbell {
    fn message(&self, device_id: &str) {
        self.ring(device_id);
    }

    fn resubscribed(&self) {
        // Doorbells published while we were away are lost: look at every mailbox.
        self.ring_all();
    }
}

/// Hands every message published to `channel` to `subscriber`, re-subscribing with backoff
/// whenever the pub/sub connection is lost.
pub async fn subscribe(client: redis::Client, channel: String, subscriber: Arc<dyn Subscriber>) {
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        match tokio::time::timeout(TIMEOUT, subscribed(&client, &channel)).await {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(100);
                if !first {
                    tracing::info!(channel, "Redis channel subscribed again");
                    subscriber.resubscribed();
                }
                first = false;
                listen(pubsub, &*subscriber).await;
                tracing::warn!(channel, "Redis subscription lost; re-subscribing");
            }
            Ok(Err(e)) => tracing::debug!(channel, error = %e, "subscribing to Redis failed"),
            Err(_) => tracing::debug!(channel, "subscribing to Redis timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn subscribed(
    client: &redis::Client,
    channel: &str,
) -> redis::RedisResult<redis::aio::PubSub> {
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}

/// Hands over each message until the connection ends or stops answering pings.
async fn listen(pubsub: redis::aio::PubSub, subscriber: &dyn Subscriber) {
    let (mut sink, mut messages) = pubsub.split();
    let mut pings = tokio::time::interval(PING_EVERY);
    pings.tick().await;
    loop {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => match message.get_payload::<String>() {
                    Ok(payload) => subscriber.message(&payload),
                    Err(e) => tracing::debug!(error = %e, "ignoring a malformed Redis message"),
                },
                None => return,
            },
            _ = pings.tick() => {
                // In subscriber mode Redis answers a PING with `["pong", ""]`, not `PONG`: take
                // any answer (asking for a string made every ping "fail" and resubscribe).
                match tokio::time::timeout(TIMEOUT, sink.ping::<redis::Value>()).await {
                    Ok(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use juntos_testkit::RedisServer;

    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn recipients_split_into_local_and_remote_once_each() {
        let devices = ids(&["b1", "c1", "b1", "b2", "c1"]);
        let (local, remote) = split_local(&devices, |d| d.starts_with('b'));
        assert_eq!(local, ["b1", "b2"]);
        assert_eq!(remote, ["c1"]);
    }

    #[test]
    fn doorbells_go_to_each_routed_pod_but_never_back_here() {
        let devices = ids(&["d1", "d2", "d3", "d4", "d5"]);
        let routes = [
            Some("pod-b".to_owned()),
            None,
            Some("pod-a".to_owned()),
            Some("pod-c".to_owned()),
            Some("pod-b".to_owned()),
        ];
        let by_pod = doorbells("pod-a", &devices, &routes);
        let expected: BTreeMap<&str, Vec<&str>> =
            [("pod-b", vec!["d1", "d5"]), ("pod-c", vec!["d4"])].into();
        assert_eq!(by_pod, expected);
    }

    /// Counts what a subscription hands over.
    #[derive(Default)]
    struct Counting {
        messages: std::sync::Mutex<Vec<String>>,
        resubscribed: std::sync::atomic::AtomicUsize,
    }

    impl Subscriber for Counting {
        fn message(&self, payload: &str) {
            self.messages.lock().expect("lock").push(payload.to_owned());
        }
        fn resubscribed(&self) {
            self.resubscribed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_healthy_subscription_outlives_its_pings() {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).expect("client");
        let counting = Arc::new(Counting::default());
        let task = tokio::spawn(subscribe(
            client.clone(),
            "juntos:test".to_owned(),
            Arc::clone(&counting) as Arc<dyn Subscriber>,
        ));
        // Past two pings.
        tokio::time::sleep(PING_EVERY * 2 + Duration::from_millis(500)).await;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        let _: i64 = redis::cmd("PUBLISH")
            .arg("juntos:test")
            .arg("hello")
            .query_async(&mut conn)
            .await
            .expect("publish");
        for _ in 0..100 {
            if !counting.messages.lock().expect("lock").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*counting.messages.lock().expect("lock"), ["hello"]);
        assert_eq!(
            counting
                .resubscribed
                .load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the subscription was never lost"
        );
        task.abort();
    }

    struct Pod {
        routes: Arc<RedisRoutes>,
        _tasks: Tasks,
    }

    async fn pod(redis: &RedisServer, id: &str) -> Pod {
        let config = RoutesConfig {
            ttl: Duration::from_secs(3),
            refresh_every: Duration::from_millis(200),
        };
        let (routes, tasks) =
            RedisRoutes::start_with_id(&redis.url(), id.to_owned(), Doorbell::new(), config)
                .await
                .expect("connect to redis");
        Pod {
            routes,
            _tasks: tasks,
        }
    }

    async fn route(redis: &RedisServer, device_id: &str) -> Option<String> {
        let client = redis::Client::open(redis.url()).expect("url");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        redis::cmd("GET")
            .arg(route_key(device_id))
            .query_async(&mut conn)
            .await
            .expect("GET")
    }

    async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check().await {
            assert!(Instant::now() < deadline, "condition not reached in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rings `device_id` from `from` until `registration` hears it (the subscriber may still
    /// be connecting), within 10 s.
    async fn rings_through(from: &Pod, registration: &crate::Registration, device_id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            from.routes.ring(&[device_id.to_owned()]);
            if tokio::time::timeout(Duration::from_millis(200), registration.rung())
                .await
                .is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "the doorbell never arrived");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ring_reaches_the_pod_holding_the_device_and_routes_follow_streams() {
        let redis = RedisServer::start();
        let (a, b) = (pod(&redis, "pod-a").await, pod(&redis, "pod-b").await);
        let bob = a.routes.doorbell().register("b1");
        let claim = a.routes.claim("b1");
        eventually(|| async { route(&redis, "b1").await.as_deref() == Some("pod-a") }).await;
        rings_through(&b, &bob, "b1").await;

        // The device moves to pod B; the old stream on A ending leaves B's route alone.
        let bob_on_b = b.routes.doorbell().register("b1");
        let claim_on_b = b.routes.claim("b1");
        eventually(|| async { route(&redis, "b1").await.as_deref() == Some("pod-b") }).await;
        drop((bob, claim));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(route(&redis, "b1").await.as_deref(), Some("pod-b"));
        rings_through(&a, &bob_on_b, "b1").await;

        drop((bob_on_b, claim_on_b));
        eventually(|| async { route(&redis, "b1").await.is_none() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_stream_on_the_same_pod_keeps_the_route() {
        let redis = RedisServer::start();
        let a = pod(&redis, "pod-a").await;
        let first = (a.routes.doorbell().register("b1"), a.routes.claim("b1"));
        let second = (a.routes.doorbell().register("b1"), a.routes.claim("b1"));
        eventually(|| async { route(&redis, "b1").await.as_deref() == Some("pod-a") }).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(route(&redis, "b1").await.as_deref(), Some("pod-a"));
        drop(second);
        eventually(|| async { route(&redis, "b1").await.is_none() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routing_and_doorbells_recover_after_redis_restarts() {
        let mut redis = RedisServer::start();
        let (a, b) = (pod(&redis, "pod-a").await, pod(&redis, "pod-b").await);
        let bob = a.routes.doorbell().register("b1");
        let _claim = a.routes.claim("b1");
        rings_through(&b, &bob, "b1").await;

        redis.kill();
        // Rings while Redis is away are dropped or fail quietly; nothing panics.
        b.routes.ring(&["b1".to_owned()]);
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.restart();
        // The empty Redis learns the route again from the refresher, and pod A re-subscribes.
        eventually(|| async { route(&redis, "b1").await.as_deref() == Some("pod-a") }).await;
        rings_through(&b, &bob, "b1").await;
    }
}
