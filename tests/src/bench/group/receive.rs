//! How `group` receivers receive: a [`Listener`] per live receiver (`--receive live`), or
//! polling tasks that call `Client::sync_now` (`--receive poll`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use juntos_client::{Client, Event, EventListener};
use tokio::sync::watch;

use super::history_limit;
use super::tracker::Tracker;
use crate::bench::clock::nanos_since;

/// A live receiver's listener.
pub(super) struct Listener {
    pub(super) receiver: usize,
    pub(super) tracker: Arc<Tracker>,
}

impl EventListener for Listener {
    fn on_event(&self, event: Event) {
        let tracker = &self.tracker;
        match event {
            Event::MessageReceived { message } if message.group_id.is_some() => {
                let now_ns = nanos_since(tracker.clock);
                tracker.deliver(self.receiver, &message.body, now_ns, true);
            }
            Event::Undecryptable { .. } => {
                tracker.undecryptable.fetch_add(1, Ordering::Relaxed);
            }
            Event::Connected => {
                tracker.connected.fetch_add(1, Ordering::Relaxed);
            }
            Event::Disconnected { .. } => {
                tracker.disconnects.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// A pause after a polling round that brought nothing.
pub(super) const POLL_IDLE: Duration = Duration::from_millis(20);

/// One polling task: `sync_now` on each of its receivers that still misses a message, round
/// after round, until each has everything or `stop`. The number of syncs.
pub(super) async fn poll_receivers(
    receivers: Vec<(usize, Arc<Client>)>,
    group_id: String,
    tracker: Arc<Tracker>,
    mut stop: watch::Receiver<bool>,
    errors: Arc<AtomicU64>,
) -> u64 {
    let limit = history_limit(tracker.messages);
    let mut syncs = 0;
    loop {
        let mut brought = false;
        let mut waiting = false;
        for (index, member) in &receivers {
            if *stop.borrow() {
                return syncs;
            }
            if tracker.complete(*index) {
                continue;
            }
            waiting = true;
            syncs += 1;
            let fetched = match member.sync_now().await {
                Ok(n) => n,
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("juntos-bench: sync_now failed: {e}");
                    }
                    continue;
                }
            };
            if fetched == 0 {
                continue;
            }
            brought = true;
            // Everything the sync fetched is applied when it returns.
            let now_ns = nanos_since(tracker.clock);
            match member.groups().history(group_id.clone(), limit).await {
                Ok(history) => {
                    for message in history.iter().filter(|m| !m.outgoing) {
                        tracker.deliver(*index, &message.body, now_ns, false);
                    }
                }
                Err(e) => {
                    if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("juntos-bench: group_history failed: {e}");
                    }
                }
            }
        }
        if !waiting {
            return syncs;
        }
        if !brought {
            tokio::select! {
                () = tokio::time::sleep(POLL_IDLE) => {}
                _ = stop.changed() => return syncs,
            }
        }
    }
}
