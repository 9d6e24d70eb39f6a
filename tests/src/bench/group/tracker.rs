//! [`Tracker`]: what the receivers of a `group` run got, counted from their listeners or
//! pollers: which receiver has which message, when each message reached its last receiver,
//! send-to-deliver latencies, duplicates and connection events.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngCore;
use rand::rngs::OsRng;

/// What the receivers got, shared by their listeners or pollers.
pub(super) struct Tracker {
    /// The run's mark in every message body.
    pub(super) nonce: String,
    pub(super) messages: u64,
    /// The run's clock.
    pub(super) clock: Instant,
    /// `receiver * messages + seq`: delivered yet.
    pub(super) seen: Vec<AtomicBool>,
    /// Distinct messages each receiver has.
    pub(super) per_receiver: Vec<AtomicU64>,
    /// Receivers that have each message.
    pub(super) per_message: Vec<AtomicU64>,
    /// When each message reached its last receiver, ns on the run's clock (0: not yet).
    pub(super) complete_ns: Vec<AtomicU64>,
    pub(super) receivers: u64,
    pub(super) delivered: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) undecryptable: AtomicU64,
    pub(super) connected: AtomicU64,
    pub(super) disconnects: AtomicU64,
    /// When the last new delivery happened, ns on the run's clock.
    pub(super) last_delivery_ns: AtomicU64,
    /// Send-to-deliver latencies of messages 2…M, ns.
    pub(super) latencies_ns: Mutex<Vec<u64>>,
}

impl Tracker {
    pub(super) fn new(receivers: usize, messages: u64) -> Self {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Self {
            nonce: format!("{:016x}", OsRng.next_u64()),
            messages,
            clock: Instant::now(),
            seen: (0..receivers * messages as usize)
                .map(|_| AtomicBool::new(false))
                .collect(),
            per_receiver: counters(receivers),
            per_message: counters(messages as usize),
            complete_ns: counters(messages as usize),
            receivers: receivers as u64,
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            undecryptable: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            latencies_ns: Mutex::new(Vec::new()),
        }
    }

    /// The text of message `seq`, queued at `sent_ns`.
    pub(super) fn body(&self, seq: u64, sent_ns: u64) -> String {
        format!("juntos-bench {} {seq} {sent_ns}", self.nonce)
    }

    /// The sequence number and send time of a message of this run.
    pub(super) fn parse(&self, body: &str) -> Option<(u64, u64)> {
        let mut parts = body.split(' ');
        if parts.next()? != "juntos-bench" || parts.next()? != self.nonce {
            return None;
        }
        let seq: u64 = parts.next()?.parse().ok()?;
        let sent_ns = parts.next()?.parse().ok()?;
        (seq < self.messages).then_some((seq, sent_ns))
    }

    pub(super) fn slot(&self, receiver: usize, seq: u64) -> &AtomicBool {
        &self.seen[receiver * self.messages as usize + seq as usize]
    }

    pub(super) fn has(&self, receiver: usize, seq: u64) -> bool {
        self.slot(receiver, seq).load(Ordering::Relaxed)
    }

    pub(super) fn complete(&self, receiver: usize) -> bool {
        self.per_receiver[receiver].load(Ordering::Relaxed) >= self.messages
    }

    /// Counts `body` (if a message of this run) as arrived at `receiver` at `now_ns`; a second
    /// arrival counts as a duplicate when `repeat_is_duplicate`.
    pub(super) fn deliver(
        &self,
        receiver: usize,
        body: &str,
        now_ns: u64,
        repeat_is_duplicate: bool,
    ) {
        let Some((seq, sent_ns)) = self.parse(body) else {
            return;
        };
        if self.slot(receiver, seq).swap(true, Ordering::Relaxed) {
            if repeat_is_duplicate {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        self.per_receiver[receiver].fetch_add(1, Ordering::Relaxed);
        if self.per_message[seq as usize].fetch_add(1, Ordering::Relaxed) + 1 == self.receivers {
            self.complete_ns[seq as usize].store(now_ns, Ordering::Relaxed);
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        self.last_delivery_ns.fetch_max(now_ns, Ordering::Relaxed);
        if seq > 0 {
            juntos_store::lock(&self.latencies_ns).push(now_ns.saturating_sub(sent_ns));
        }
    }

    /// Waits until `done`, or until no new delivery for `idle`; whether `done`.
    pub(super) async fn wait(
        &self,
        label: &str,
        what: &str,
        idle: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> bool {
        let mut seen = self.delivered.load(Ordering::Relaxed);
        let mut changed = Instant::now();
        let mut reported = Instant::now();
        loop {
            if done(self) {
                return true;
            }
            let now = self.delivered.load(Ordering::Relaxed);
            if now != seen {
                seen = now;
                changed = Instant::now();
            } else if changed.elapsed() >= idle {
                return false;
            }
            if reported.elapsed() >= Duration::from_secs(1) {
                reported = Instant::now();
                eprintln!(
                    "juntos-bench: {label}: {:.1} s: {what}: {now}/{} deliveries",
                    self.clock.elapsed().as_secs_f64(),
                    self.receivers * self.messages
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
