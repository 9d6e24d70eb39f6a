//! The inbox: envelopes from the live connection (or a poll) are decrypted, applied to the
//! history together with the session state that decrypted them, and only then acknowledged.

use std::sync::Arc;
use std::time::Duration;

use juntos_proto::chat::v1 as chat;
use juntos_proto::chat::v1::client_frame::Frame as ClientFrame;
use juntos_proto::chat::v1::server_frame::Frame as ServerFrame;
use juntos_proto::login::v1 as login;
use tokio::sync::mpsc;

use super::apply::{Processed, accept_sender_key, apply_content};
use super::e2e;
use super::limits::{RECEIPT_CHUNK, within_bounds};
use super::queue::queue_in;
use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::gateway::REFRESH_MARGIN_MS;
use crate::model::content::{Body, Content, Receipt, ReceiptKind};
use crate::model::records::Event;
use crate::shared::Shared;
use crate::store::messaging as db;

/// Acknowledge at least this often while envelopes stream in.
const ACK_EVERY: u64 = 64;
/// Flush a pending acknowledgement after this much quiet.
const ACK_DELAY: Duration = Duration::from_millis(100);
/// Heartbeat period of the live connection.
const HEARTBEAT: Duration = Duration::from_secs(20);
/// Reconnect after this long without a frame from the server (it sends heartbeats).
const SILENCE: Duration = Duration::from_secs(75);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Envelopes per page when polling.
const SYNC_PAGE: u32 = 500;
/// The live connection looks at its access token's expiry at least this often, by the client's
/// clock (which can jump ahead of tokio's timers: a device that slept, a test clock); a failed
/// keep-alive call is retried at this pace.
const TOKEN_LOOK: Duration = Duration::from_secs(10);
/// The pause after a keep-alive call that worked: the token shown is fresh, and a clock so far
/// ahead that even a fresh token looks due costs one refresh a minute, not one per look.
const TOKEN_SHOWN_PAUSE: Duration = Duration::from_secs(60);
/// Longest a keep-alive call (refresh and `Login.Me`) may hold up the connection's loop.
const TOKEN_CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the live connection waits before showing the gateway a fresh access token, when
/// the token the gateway knows for it expires at `expires_at_ms` and it is `now_ms`: until
/// [`REFRESH_MARGIN_MS`] before that expiry (zero: due now), but at most [`TOKEN_LOOK`], after
/// which the clock is read again.
fn token_keepalive_wait(expires_at_ms: i64, now_ms: i64) -> Duration {
    let due_in_ms = expires_at_ms
        .saturating_sub(REFRESH_MARGIN_MS)
        .saturating_sub(now_ms);
    Duration::from_millis(u64::try_from(due_in_ms).unwrap_or(0)).min(TOKEN_LOOK)
}

/// Why a live connection ended.
enum End {
    /// Another connection of this device took over.
    Replaced,
    /// The server closed it or the network dropped.
    Closed(String),
}

/// Keeps the live connection up, reconnecting with backoff.
pub(super) async fn run_connection(client: Arc<Shared>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = std::time::Instant::now();
        match client.connect_once().await {
            Ok(End::Replaced) => {
                client.emit(Event::Disconnected {
                    reason: "another connection of this device took over".to_owned(),
                });
                // Two live copies of one device must not both advance its sessions.
                client.runtime.stop();
                return;
            }
            Ok(End::Closed(reason)) => client.emit(Event::Disconnected { reason }),
            Err(ClientError::NotSignedIn | ClientError::SessionEnded) => {
                client.emit(Event::Disconnected {
                    reason: "signed out".to_owned(),
                });
                client.runtime.stop();
                return;
            }
            Err(e) => client.emit(Event::Disconnected {
                reason: e.to_string(),
            }),
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(250);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Shared {
    /// One live connection, until it ends.
    async fn connect_once(&self) -> Result<End> {
        let (frames, outgoing) = mpsc::channel::<chat::ClientFrame>(16);
        let outgoing = std::sync::Mutex::new(Some(outgoing));
        let api = self.gateway.api();
        let answer = self
            .gateway
            .authorized_status(|token| {
                // The stream can only be handed over once; a retry after a refresh gets a fresh
                // channel below.
                let receiver = outgoing.lock().ok().and_then(|mut o| o.take());
                async move {
                    match receiver {
                        Some(receiver) => api.connect(&token, receiver).await,
                        None => Err(tonic::Status::unavailable("reconnect")),
                    }
                }
            })
            .await?;
        let mut stream = match answer {
            Ok(stream) => stream,
            Err(status) => return Err(ClientError::from(&status)),
        };
        self.emit(Event::Connected);
        // The network is back: whatever waits in the outbox can go, and prekeys may need refilling.
        self.runtime.outbox_wake.notify_one();
        if let Err(e) = self.ensure_prekeys().await {
            tracing::debug!(error = %e, "prekey refill failed");
        }

        let followed = self.runtime.followed();
        if !followed.is_empty() && frames.send(subscribe_frame(followed)).await.is_err() {
            return Ok(End::Closed("connection closed".to_owned()));
        }

        // The gateway ends this stream when the access token it was opened with expires, unless
        // it has meanwhile verified a newer token of this session. Refreshing lazily would let an
        // idle connection drop (and presence flap) every token lifetime, so shortly before the
        // token the gateway knows expires, a fresh one is shown to it (`show_fresh_token`).
        let mut shown_expires_at_ms = self.stored_access_expiry();
        let mut token_look = tokio::time::Instant::now()
            + token_keepalive_wait(shown_expires_at_ms, self.clock.now_ms());

        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // The server speaks at least every heartbeat; silence this long means a dead path.
        let mut silent_since = tokio::time::Instant::now();
        let mut pending_ack: Option<u64> = None;
        let mut since_ack = 0u64;
        loop {
            let next = tokio::select! {
                next = stream.message() => {
                    silent_since = tokio::time::Instant::now();
                    next
                }
                () = tokio::time::sleep_until(silent_since + SILENCE) => {
                    return Ok(End::Closed("no word from the server; reconnecting".to_owned()));
                }
                () = tokio::time::sleep(ACK_DELAY), if pending_ack.is_some() => {
                    self.flush(&frames, &mut pending_ack, &mut since_ack).await?;
                    continue;
                }
                () = self.runtime.follow_wake.notified() => {
                    let subscribe = subscribe_frame(self.runtime.followed());
                    if frames.send(subscribe).await.is_err() {
                        return Ok(End::Closed("connection closed".to_owned()));
                    }
                    continue;
                }
                _ = heartbeat.tick() => {
                    let beat = ClientFrame::Heartbeat(chat::Heartbeat { time_ms: self.clock.now_ms() });
                    if frames.send(chat::ClientFrame { frame: Some(beat) }).await.is_err() {
                        return Ok(End::Closed("connection closed".to_owned()));
                    }
                    continue;
                }
                () = tokio::time::sleep_until(token_look) => {
                    let mut wait = token_keepalive_wait(shown_expires_at_ms, self.clock.now_ms());
                    if wait.is_zero() {
                        // Only logged: at worst the gateway ends the stream and it reconnects.
                        wait = match self.show_fresh_token().await {
                            Ok(expires_at_ms) => {
                                shown_expires_at_ms = expires_at_ms;
                                TOKEN_SHOWN_PAUSE
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "token keep-alive failed");
                                TOKEN_LOOK
                            }
                        };
                    }
                    token_look = tokio::time::Instant::now() + wait;
                    continue;
                }
            };
            match next {
                Ok(Some(chat::ServerFrame {
                    frame: Some(ServerFrame::Envelope(envelope)),
                })) => {
                    let seq = envelope.seq;
                    self.process(envelope).await?;
                    pending_ack = Some(seq);
                    since_ack += 1;
                    if since_ack >= ACK_EVERY {
                        self.flush(&frames, &mut pending_ack, &mut since_ack)
                            .await?;
                    }
                }
                Ok(Some(chat::ServerFrame {
                    frame: Some(ServerFrame::Replaced(_)),
                })) => return Ok(End::Replaced),
                Ok(Some(chat::ServerFrame {
                    frame: Some(ServerFrame::Presence(presence)),
                })) => self.emit(Event::PresenceChanged {
                    presence: presence.into(),
                }),
                Ok(Some(_)) => {}
                Ok(None) => return Ok(End::Closed("the server closed the connection".to_owned())),
                Err(status) => return Ok(End::Closed(ClientError::from(&status).to_string())),
            }
        }
    }

    /// When the stored access token expires (Unix ms); 0 (so: now) when it cannot be read.
    fn stored_access_expiry(&self) -> i64 {
        match self.store.session() {
            Ok(Some(session)) => session.tokens.access_expires_at_ms,
            Ok(None) => 0,
            Err(e) => {
                tracing::debug!(error = %e, "could not read the session");
                0
            }
        }
    }

    /// Refreshes the access token if it is about to expire (through the gateway's serialized
    /// refresh) and makes one cheap call with it on the channel the live stream uses, so
    /// the gateway holding the stream learns the session's new expiry. The expiry of the token
    /// now shown.
    async fn show_fresh_token(&self) -> Result<i64> {
        let call = self.gateway.unary(Api::me, login::MeRequest {});
        // Dropping a call mid-refresh is safe: the refresh finishes in its own task.
        tokio::time::timeout(TOKEN_CALL_TIMEOUT, call)
            .await
            .map_err(|_| ClientError::Network {
                message: "the token keep-alive call timed out".to_owned(),
            })??;
        let session = self.store.session()?.ok_or(ClientError::NotSignedIn)?;
        Ok(session.tokens.access_expires_at_ms)
    }

    /// Sends the pending acknowledgement and queues the receipts owed so far.
    async fn flush(
        &self,
        frames: &mpsc::Sender<chat::ClientFrame>,
        pending_ack: &mut Option<u64>,
        since_ack: &mut u64,
    ) -> Result<()> {
        self.queue_receipts()?;
        if let Some(seq) = pending_ack.take() {
            *since_ack = 0;
            if frames
                .send(chat::ClientFrame {
                    frame: Some(ClientFrame::AckUpTo(seq)),
                })
                .await
                .is_err()
            {
                return Err(ClientError::Network {
                    message: "connection closed".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Polls the mailbox until it is empty: fetch, process, acknowledge.
    pub(crate) async fn sync_mailbox(&self) -> Result<u64> {
        let mut processed = 0;
        loop {
            let request = chat::SyncRequest {
                after_seq: 0,
                limit: SYNC_PAGE,
            };
            let page = self.gateway.unary(Api::sync, request).await?;
            let Some(last) = page.envelopes.last().map(|e| e.seq) else {
                break;
            };
            for envelope in page.envelopes {
                self.process(envelope).await?;
                processed += 1;
            }
            self.queue_receipts()?;
            let ack = chat::AckRequest { up_to_seq: last };
            self.gateway.unary(Api::ack, ack).await?;
            if !page.more {
                break;
            }
        }
        Ok(processed)
    }

    /// Decrypts and applies one envelope. An error means "try again later" (nothing was
    /// acknowledged); anything that can never succeed is dropped and reported.
    async fn process(&self, envelope: chat::Envelope) -> Result<()> {
        match self.apply(&envelope).await? {
            Processed::Done => {}
            Processed::Dropped => {
                tracing::warn!(
                    seq = envelope.seq,
                    "dropped an envelope that could not be decrypted"
                );
                self.emit(Event::Undecryptable {
                    sender_user_id: envelope.sender_user_id,
                    sender_device_id: envelope.sender_device_id,
                });
            }
        }
        Ok(())
    }

    async fn apply(&self, envelope: &chat::Envelope) -> Result<Processed> {
        match envelope.kind() {
            chat::EnvelopeKind::Direct => self.apply_direct(envelope).await,
            chat::EnvelopeKind::Group => self.apply_group_message(envelope).await,
            chat::EnvelopeKind::Notice => self.apply_notice(envelope).await,
        }
    }

    /// A pairwise envelope: decrypted with the sending device's session.
    async fn apply_direct(&self, envelope: &chat::Envelope) -> Result<Processed> {
        let (me, _) = self.me_ids()?;
        let identity = self.store.identity()?.ok_or(ClientError::NotSignedIn)?;
        let Some(sender_device) = self.sender_device(envelope).await? else {
            return Ok(Processed::Dropped);
        };
        let now = self.clock.now_ms();
        // From reading the session state to saving its successor, nothing else may advance it.
        let _crypto = self.runtime.crypto();
        let decrypted = self.store.read(|c| {
            let state = db::ratchet_session(c, &envelope.sender_device_id)?;
            Ok(e2e::decrypt(
                &identity,
                &sender_device,
                state.as_deref(),
                c,
                &envelope.ciphertext,
                now,
            ))
        })?;
        let decrypted = match decrypted {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "decryption failed");
                return Ok(if e.is_duplicate() {
                    Processed::Done
                } else {
                    Processed::Dropped
                });
            }
        };
        let Some(content) = Content::decode_bytes(&decrypted.plaintext) else {
            return Ok(Processed::Dropped);
        };
        // Who sent it is inside the ciphertext: the server cannot relabel it.
        if content.from_user_id != envelope.sender_user_id || !within_bounds(&content) {
            return Ok(Processed::Dropped);
        }
        let own = envelope.sender_user_id == me;
        // A sender key is addressed to a group (or the sender's status audience), not to
        // this user.
        let sender_key = match &content.body {
            Some(Body::SenderKey(key)) => Some((Some(key.group_id.as_str()), &key.distribution)),
            Some(Body::StatusKey(key)) => Some((None, &key.distribution)),
            _ => None,
        };
        if !own && content.to_user_id != me && sender_key.is_none() {
            return Ok(Processed::Dropped);
        }
        let conversation = if own {
            content.to_user_id.clone()
        } else {
            envelope.sender_user_id.clone()
        };
        let events = self.store.write(|tx| {
            tx.save_ratchet_session(
                &envelope.sender_user_id,
                &envelope.sender_device_id,
                &decrypted.state,
                now,
            )?;
            if let Some(key_id) = decrypted.consumed_one_time_prekey {
                tx.consume_one_time_prekey(key_id)?;
            }
            if let Some(previous) = &decrypted.archive {
                tx.archive_session(&envelope.sender_device_id, previous, now)?;
            }
            if let Some(id) = decrypted.unarchived {
                tx.unarchive_session(id)?;
            }
            if let Some(base_key) = &decrypted.accepted_base_key {
                tx.accept_base_key(&envelope.sender_device_id, base_key)?;
            }
            if let Some((group_id, distribution)) = sender_key {
                if !accept_sender_key(tx, envelope, group_id, distribution)? {
                    tracing::debug!("dropped a malformed group key");
                }
                return Ok(Vec::new());
            }
            let (events, delivered) =
                apply_content(tx, envelope, &content, &conversation, own, false)?;
            if delivered {
                // Owed in the same transaction: a crash now still sends the receipt later.
                tx.owe_receipt(&envelope.sender_user_id, &content.message_id)?;
            }
            Ok(events)
        })?;
        for event in events {
            self.emit(event);
        }
        Ok(Processed::Done)
    }

    /// Turns the owed delivered receipts into queued receipt messages (one per sender and
    /// chunk), in one transaction.
    fn queue_receipts(&self) -> Result<()> {
        let (me, my_device) = self.me_ids()?;
        let now = self.clock.now_ms();
        let queued = self.store.write(|tx| {
            let owed = tx.take_owed_receipts()?;
            for (user, ids) in &owed {
                for chunk in ids.chunks(RECEIPT_CHUNK) {
                    let body = Body::Receipt(Receipt {
                        kind: ReceiptKind::Delivered as i32,
                        message_ids: chunk.to_vec(),
                    });
                    queue_in(tx, &me, &my_device, user, body, now)?;
                }
            }
            Ok(!owed.is_empty())
        })?;
        if queued {
            self.runtime.outbox_wake.notify_one();
        }
        Ok(())
    }
}

/// The frame that tells the server whom to follow.
fn subscribe_frame(user_ids: Vec<String>) -> chat::ClientFrame {
    chat::ClientFrame {
        frame: Some(chat::client_frame::Frame::SubscribePresence(
            chat::SubscribePresence { user_ids },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn keepalive_is_due_within_the_refresh_margin() {
        // Fifteen minutes left: look again after TOKEN_LOOK, not before.
        assert_eq!(token_keepalive_wait(NOW + 15 * 60_000, NOW), TOKEN_LOOK);
        // Just outside the margin: wait exactly until it is reached.
        assert_eq!(
            token_keepalive_wait(NOW + REFRESH_MARGIN_MS + 3_000, NOW),
            Duration::from_secs(3)
        );
        // Inside the margin, at expiry, or long past it (a clock that jumped): due now.
        for expires_at_ms in [NOW + REFRESH_MARGIN_MS, NOW + 1, NOW, NOW - 3_600_000] {
            assert_eq!(
                token_keepalive_wait(expires_at_ms, NOW),
                Duration::ZERO,
                "{expires_at_ms}"
            );
        }
        // No stored token (0) is due now; extremes do not overflow.
        assert_eq!(token_keepalive_wait(0, NOW), Duration::ZERO);
        assert_eq!(token_keepalive_wait(i64::MAX, i64::MIN), TOKEN_LOOK);
        assert_eq!(token_keepalive_wait(i64::MIN, i64::MAX), Duration::ZERO);
    }
}
