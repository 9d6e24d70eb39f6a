//! Health of one upstream endpoint: probed with `grpc.health.v1.Health/Check` (service "", the
//! server as a whole), out of rotation after [`FAILURES_TO_LEAVE`] failures in a row, back after
//! one success.

use std::time::Duration;

use http::Uri;
use tokio::sync::watch;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Failed probes in a row that take an endpoint out of rotation.
pub const FAILURES_TO_LEAVE: u32 = 2;

/// The health state machine of one endpoint. A new endpoint is out of rotation until its first
/// probe succeeds, so a pod joins only once it serves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    healthy: bool,
    failures: u32,
}

/// What a probe result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Same,
    /// The endpoint left the rotation.
    Down,
    /// The endpoint (re)joined the rotation.
    Up,
}

impl Health {
    /// Records one probe result.
    pub fn observe(&mut self, ok: bool) -> Change {
        if ok {
            self.failures = 0;
            if self.healthy {
                Change::Same
            } else {
                self.healthy = true;
                Change::Up
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            if self.healthy && self.failures >= FAILURES_TO_LEAVE {
                self.healthy = false;
                Change::Down
            } else {
                Change::Same
            }
        }
    }
}

/// Probes `uri` every `interval` (each probe bounded by `timeout`) over its own channel, and
/// publishes the endpoint's health on `healthy`. Runs until aborted.
pub async fn watch_endpoint(
    role: &'static str,
    tls: ClientTlsConfig,
    uri: Uri,
    healthy: watch::Sender<bool>,
    interval: Duration,
    timeout: Duration,
) {
    let endpoint = match Endpoint::from(uri.clone()).tls_config(tls) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            tracing::error!(role, endpoint = %uri, error = %e, "cannot set up TLS to the endpoint");
            return;
        }
    };
    let channel = endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_lazy();
    let mut client = HealthClient::new(channel);
    let mut health = Health::default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match health.observe(probe(&mut client, timeout).await) {
            Change::Same => {}
            Change::Down => {
                tracing::warn!(role, endpoint = %uri, "upstream endpoint unhealthy; out of rotation");
                healthy.send_replace(false);
            }
            Change::Up => {
                tracing::info!(role, endpoint = %uri, "upstream endpoint healthy; in rotation");
                healthy.send_replace(true);
            }
        }
    }
}

/// One `Health/Check` for the whole server: true when it answers SERVING in time.
async fn probe(client: &mut HealthClient<Channel>, timeout: Duration) -> bool {
    let check = client.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(response)) => response.into_inner().status == ServingStatus::Serving as i32,
        Ok(Err(_)) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_after_one_success_and_leave_after_two_failures() {
        let mut h = Health::default();
        assert_eq!(h.observe(false), Change::Same, "new endpoints start out");
        assert_eq!(h.observe(true), Change::Up);
        assert_eq!(h.observe(true), Change::Same);
        assert_eq!(h.observe(false), Change::Same, "one failure is tolerated");
        assert_eq!(h.observe(true), Change::Same);
        assert_eq!(h.observe(false), Change::Same, "the count restarted");
        assert_eq!(h.observe(false), Change::Down);
        assert_eq!(h.observe(false), Change::Same);
        assert_eq!(h.observe(true), Change::Up, "one success brings it back");
    }
}
