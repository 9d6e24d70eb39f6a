//! The sender's side of a `group` run: one group message queued and flushed until stored, and
//! each message's status in the sender's history.

use std::time::Duration;

use juntos_client::{Client, Message, MessageStatus};

use super::history_limit;
use super::tracker::Tracker;
use crate::bench::clock::nanos_since;
use crate::bench::error::{BenchError, client_err};

/// `flush_outbox` tries per group message before the run gives up.
pub(super) const FLUSH_ATTEMPTS: u32 = 5;

/// Queues group message `seq` and flushes the sender's outbox until it is stored.
pub(super) async fn send_group_message(
    sender: &Client,
    group_id: &str,
    tracker: &Tracker,
    seq: u64,
) -> Result<(), BenchError> {
    let body = tracker.body(seq, nanos_since(tracker.clock));
    sender
        .groups()
        .send_text(group_id.to_owned(), body)
        .await
        .map_err(client_err("send_group_text"))?;
    let mut last = String::new();
    for attempt in 0..FLUSH_ATTEMPTS {
        match sender.flush_outbox().await {
            Ok(0) => return Ok(()),
            Ok(waiting) => last = format!("{waiting} sends still queued"),
            Err(e) => {
                eprintln!("juntos-bench: flush_outbox (group message {seq}) failed: {e}");
                last = e.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    Err(BenchError::Setup(format!(
        "group message {seq} was not sent after {FLUSH_ATTEMPTS} flushes: {last}"
    )))
}

/// The status of each message of the run in the sender's group history.
pub(super) async fn sender_statuses(
    sender: &Client,
    group_id: &str,
    tracker: &Tracker,
) -> Result<Vec<Option<MessageStatus>>, BenchError> {
    let history: Vec<Message> = sender
        .groups()
        .history(group_id.to_owned(), history_limit(tracker.messages))
        .await
        .map_err(client_err("group_history"))?;
    let mut statuses = vec![None; tracker.messages as usize];
    for message in history.iter().filter(|m| m.outgoing) {
        if let Some((seq, _)) = tracker.parse(&message.body) {
            statuses[seq as usize] = Some(message.status);
        }
    }
    Ok(statuses)
}
