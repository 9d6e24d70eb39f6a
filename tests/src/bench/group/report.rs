//! [`GroupLine`]: the JSON line printed for a `group` run.

/// The JSON line of one group run (field order as printed).
#[derive(serde::Serialize)]
pub(super) struct GroupLine {
    pub(super) scenario: &'static str,
    /// Members, sender included.
    pub(super) group_size: u32,
    /// Members other than the sender (one device each).
    pub(super) receivers: usize,
    /// Group messages sent (M).
    pub(super) messages: u64,
    /// "poll" (`sync_now` from `poll_tasks` tasks) or "live" (`Client::start` each).
    pub(super) receive: &'static str,
    pub(super) poll_tasks: Option<u32>,
    /// Chat pods (1 for `juntos all`; null for `--server`).
    pub(super) pods: Option<u32>,
    /// "sqlite" (`juntos all`), "redis+secantusdb" (`--pods`) or "unknown" (`--server`).
    pub(super) backend: String,
    pub(super) topology: String,
    pub(super) server: String,
    pub(super) juntos_bin: Option<String>,
    /// Signing in every member (codes, sign-in, prekeys).
    pub(super) signin_secs: f64,
    pub(super) signins_per_sec: f64,
    /// `Groups::create` (`client.groups()`) of every member.
    pub(super) create_group_secs: f64,
    /// Message 1 queued to stored, sender-key hand-out to every member device included.
    pub(super) first_send_secs: f64,
    /// Message 1 queued to its last receiver.
    pub(super) first_delivered_secs: Option<f64>,
    /// Server CPU seconds from message 1 queued to its last delivery.
    pub(super) first_server_cpu_secs: Option<f64>,
    pub(super) first_backend_cpu_secs: Option<f64>,
    pub(super) sent: u64,
    /// Messages the sender's history shows stored by the server.
    pub(super) acked: u64,
    /// Messages the server refused for good.
    pub(super) send_failures: u64,
    /// receivers × messages.
    pub(super) deliveries_expected: u64,
    /// Distinct (receiver, message) deliveries.
    pub(super) delivered: u64,
    /// Messages 2…M: the steady state.
    pub(super) steady_messages: u64,
    pub(super) steady_deliveries: u64,
    /// Message 2 queued to the last delivery.
    pub(super) steady_secs: Option<f64>,
    pub(super) group_messages_per_sec: Option<f64>,
    /// Deliveries (message × receiver) per second.
    pub(super) deliveries_per_sec: Option<f64>,
    /// One group send, queued to stored (messages 2…M).
    pub(super) send_p50_ms: Option<f64>,
    pub(super) send_max_ms: Option<f64>,
    /// Queued at the sender to found at a receiver (messages 2…M).
    pub(super) latency_p50_ms: Option<f64>,
    pub(super) latency_p99_ms: Option<f64>,
    pub(super) latency_max_ms: Option<f64>,
    /// (receiver, message) pairs of stored messages never delivered.
    pub(super) losses: u64,
    /// A second `MessageReceived` for a message, or a message twice in a history.
    pub(super) duplicates: u64,
    /// (receiver, message) pairs where the history and the count disagree.
    pub(super) history_mismatches: u64,
    /// `Event::Undecryptable` (live only).
    pub(super) undecryptable: Option<u64>,
    /// `Event::Disconnected` (live only).
    pub(super) disconnects: Option<u64>,
    /// `sync_now` calls (poll only).
    pub(super) syncs: Option<u64>,
    pub(super) sync_errors: u64,
    /// CPU seconds per 1,000 steady deliveries, every `juntos` process.
    pub(super) server_cpu_secs_per_1000_deliveries: Option<f64>,
    /// The same for redis-server and SecantusDB (`--pods`).
    pub(super) backend_cpu_secs_per_1000_deliveries: Option<f64>,
    /// The same for this bench (every client's decryption and storage).
    pub(super) bench_cpu_secs_per_1000_deliveries: Option<f64>,
    /// Resident memory of the `juntos` processes at the end.
    pub(super) juntos_rss_mib: Option<f64>,
    /// Peak resident memory of this bench.
    pub(super) bench_peak_rss_mib: Option<f64>,
    /// `/proc/loadavg` at the end: 1, 5 and 15 minutes.
    pub(super) loadavg: Vec<f64>,
    pub(super) cores: usize,
}
