//! The result of a `pairs` run: [`Report`] merges what every sender and receiver saw, and
//! [`RunLine`] is the JSON line printed for the run.

use super::receive::ReceiveOutcome;
use super::send::SendOutcome;
use crate::bench::stats::quantile_ms;

/// The JSON line of one run (field order as printed).
#[derive(serde::Serialize)]
pub(super) struct RunLine {
    pub(super) scenario: &'static str,
    pub(super) pairs: u32,
    pub(super) messages: u64,
    pub(super) window: u32,
    pub(super) payload_bytes: u32,
    /// Chat pods (1 for `juntos all`; null for `--server`).
    pub(super) pods: Option<u32>,
    /// "sqlite" (`juntos all`), "redis+secantusdb" (`--pods`) or "unknown" (`--server`).
    pub(super) backend: String,
    /// The processes: "juntos all" or "otp + login + N chat + gateway".
    pub(super) topology: String,
    /// The gateway URL, or "spawned juntos all" / "spawned split roles".
    pub(super) server: String,
    /// The binary of a spawned system.
    pub(super) juntos_bin: Option<String>,
    /// Sign-ins, prekey uploads and session starts.
    pub(super) setup_secs: f64,
    /// Messages the senders sent (pairs × messages).
    pub(super) sent: u64,
    /// Sends the server answered with success.
    pub(super) acked: u64,
    /// Sends that failed after their retries.
    pub(super) send_failures: u64,
    /// Retries after UNAVAILABLE or RESOURCE_EXHAUSTED.
    pub(super) send_retries: u64,
    /// Distinct messages delivered and decrypted.
    pub(super) delivered: u64,
    /// First send to last delivery.
    pub(super) duration_secs: f64,
    pub(super) delivered_per_sec: f64,
    pub(super) latency_p50_ms: Option<f64>,
    pub(super) latency_p99_ms: Option<f64>,
    pub(super) latency_p999_ms: Option<f64>,
    pub(super) latency_max_ms: Option<f64>,
    /// Acknowledged sends never delivered within the drain timeout.
    pub(super) losses: u64,
    /// Messages delivered more than once.
    pub(super) duplicates: u64,
    /// Deliveries with a lower sequence number than one already delivered from that sender.
    pub(super) reordered: u64,
    pub(super) decrypt_failures: u64,
    /// Server user+system CPU seconds per 1,000 delivered messages, over the data phase (every
    /// `juntos` process of a spawned system).
    pub(super) server_cpu_secs_per_1000: Option<f64>,
    /// The same for redis-server and SecantusDB (`--pods`).
    pub(super) backend_cpu_secs_per_1000: Option<f64>,
    /// The same for this load generator.
    pub(super) bench_cpu_secs_per_1000: Option<f64>,
    /// `/proc/loadavg` at the end: 1, 5 and 15 minutes.
    pub(super) loadavg: Vec<f64>,
    pub(super) cores: usize,
}

/// Everything a run measured, merged over its pairs.
pub(super) struct Report {
    pub(super) acked: u64,
    pub(super) send_failures: u64,
    pub(super) send_retries: u64,
    pub(super) delivered: u64,
    pub(super) losses: u64,
    pub(super) duplicates: u64,
    pub(super) reordered: u64,
    pub(super) decrypt_failures: u64,
    pub(super) duration_secs: f64,
    /// Sorted.
    pub(super) latencies_ns: Vec<u64>,
}

impl Report {
    pub(super) fn new(sent: &[SendOutcome], received: &[ReceiveOutcome]) -> Self {
        let mut report = Self {
            acked: 0,
            send_failures: 0,
            send_retries: 0,
            delivered: 0,
            losses: 0,
            duplicates: 0,
            reordered: 0,
            decrypt_failures: 0,
            duration_secs: 0.0,
            latencies_ns: Vec::new(),
        };
        for (out, got) in sent.iter().zip(received) {
            report.send_failures += out.failures;
            report.send_retries += out.retries;
            for (&acked, &seen) in out.acked.iter().zip(&got.seen) {
                report.acked += u64::from(acked);
                report.delivered += u64::from(seen);
                report.losses += u64::from(acked && !seen);
            }
            report.duplicates += got.duplicates;
            report.reordered += got.reordered;
            report.decrypt_failures += got.decrypt_failures;
            report.latencies_ns.extend_from_slice(&got.latencies_ns);
        }
        let first_send = sent.iter().map(|s| s.first_send_ns).min().unwrap_or(0);
        let last_delivery = received
            .iter()
            .map(|r| r.last_delivery_ns)
            .max()
            .unwrap_or(0);
        report.duration_secs = last_delivery.saturating_sub(first_send) as f64 / 1e9;
        report.latencies_ns.sort_unstable();
        report
    }

    pub(super) fn delivered_per_sec(&self) -> f64 {
        if self.duration_secs > 0.0 {
            self.delivered as f64 / self.duration_secs
        } else {
            0.0
        }
    }

    /// The `q` quantile (nearest rank) of the send-to-deliver latency, in milliseconds.
    pub(super) fn latency_ms(&self, q: f64) -> Option<f64> {
        quantile_ms(&self.latencies_ns, q)
    }
}
