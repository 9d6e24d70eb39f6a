//! The outbox: queued sends drained in order, encrypted per device (or once, for a group) at
//! send time.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use super::pairwise::{Outcome, Pairwise};
use crate::error::{ClientError, Result};
use crate::model::content::Content;
use crate::model::records::{Event, MessageStatus};
use crate::shared::Shared;
use crate::store::messaging::{self as db, OutboxItem};

/// Failed tries (other than network and certificate failures, rate limits and sign-outs)
/// before a send is given up.
const MAX_STUCK_ATTEMPTS: i64 = 20;
/// Longest wait between drain attempts while the network is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The outbox worker: drains whenever woken, backing off while the network is down (or the
/// server's certificate is refused). Holds the client only while draining, and ends once it is
/// gone or signed out.
pub(super) async fn run_outbox(client: Weak<Shared>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let drained = match client.upgrade() {
            Some(client) => client.drain_outbox().await,
            None => return,
        };
        match drained {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                wake.notified().await;
            }
            Err(ClientError::NotSignedIn | ClientError::SessionEnded) => return,
            Err(e) => {
                tracing::debug!(error = %e, ?backoff, "outbox waits for the network");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = wake.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Shared {
    /// Sends everything queued now; the number of sends still waiting (0 when all went).
    pub(crate) async fn flush_outbox(&self) -> Result<u64> {
        self.drain_outbox().await?;
        self.store.read(db::outbox_len)
    }

    /// Sends the outbox in order until it is empty; stops at the first send that may succeed
    /// later (network down, rate limit), leaving it at the head.
    pub(crate) async fn drain_outbox(&self) -> Result<()> {
        // One drain at a time, so items leave strictly in order.
        let _drain = self.runtime.drain.lock().await;
        while let Some(item) = self.store.read(db::outbox_head)? {
            let outcome = match self.send_item(&item).await {
                Ok(outcome) => outcome,
                // Offline, throttled or signed out: the item waits, however long that takes. A
                // refused certificate (captive portal, TLS proxy, a server certificate that
                // expired before its renewal) is a path problem too: nothing reached the server.
                Err(
                    e @ (ClientError::Network { .. }
                    | ClientError::Certificate { .. }
                    | ClientError::RateLimited { .. }
                    | ClientError::NotSignedIn
                    | ClientError::SessionEnded),
                ) => return Err(e),
                // Anything else may clear (a device without prekeys yet), but must not block
                // every later send forever.
                Err(e) if item.attempts + 1 < MAX_STUCK_ATTEMPTS => {
                    self.store.write(|tx| tx.count_attempt(item.seq))?;
                    return Err(e);
                }
                Err(e) => {
                    Outcome::Refused(format!("gave up after {MAX_STUCK_ATTEMPTS} tries: {e}"))
                }
            };
            let message_id = Content::decode_bytes(&item.content).map(|c| c.message_id);
            let changed = self.store.write(|tx| {
                tx.dequeue(item.seq)?;
                let Some(id) = &message_id else {
                    return Ok(None);
                };
                let moved = match &outcome {
                    Outcome::Sent { server_time_ms } => {
                        tx.advance_status(id, MessageStatus::Sent, Some(*server_time_ms))?
                    }
                    Outcome::Refused(_) => tx.advance_status(id, MessageStatus::Failed, None)?,
                };
                if moved { tx.message(id) } else { Ok(None) }
            })?;
            if let Outcome::Refused(error) = &outcome {
                self.emit(Event::SendFailed {
                    message_id: message_id.clone().unwrap_or_default(),
                    error: error.clone(),
                });
            }
            if let Some(message) = changed {
                self.emit(Event::MessageChanged { message });
            }
        }
        Ok(())
    }

    /// Encrypts `item` for every device it must reach and sends it, fixing a stale device list
    /// (or group) as the server reports it.
    async fn send_item(&self, item: &OutboxItem) -> Result<Outcome> {
        if !item.group_id.is_empty() {
            return self.send_group_item(item).await;
        }
        let users = [item.to_user_id.clone()];
        Ok(
            match self
                .send_pairwise(&users, &item.client_msg_id, &item.content)
                .await?
            {
                Pairwise::Sent { server_time_ms, .. } => Outcome::Sent { server_time_ms },
                Pairwise::Refused(why) => Outcome::Refused(why),
            },
        )
    }
}
