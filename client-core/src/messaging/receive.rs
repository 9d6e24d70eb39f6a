//! The inbox: envelopes from the live connection (or a poll) are decrypted, applied to the
//! history together with the session state that decrypted them, and only then acknowledged.

use std::sync::Arc;
use std::time::Duration;

use juntos_proto::chat::v1 as chat;
use juntos_proto::chat::v1::client_frame::Frame as ClientFrame;
use juntos_proto::chat::v1::server_frame::Frame as ServerFrame;
use tokio::sync::mpsc;

use super::content::{Body, Content, Receipt, ReceiptKind, Text};
use super::e2e;
use super::groups::Applied;
use crate::Client;
use crate::client::REFRESH_MARGIN_MS;
use crate::error::{ClientError, Result};
use crate::records::{Event, Message, MessageStatus};
use crate::store::messaging::{self as db, NewMessage, Tx};

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

/// What processing one envelope came to.
enum Processed {
    /// Applied (or a harmless duplicate): acknowledge it.
    Done,
    /// Could not be decrypted or understood: acknowledge (it will never succeed) and tell the app.
    Dropped,
}

/// Why a live connection ended.
enum End {
    /// Another connection of this device took over.
    Replaced,
    /// The server closed it or the network dropped.
    Closed(String),
}

/// Keeps the live connection up, reconnecting with backoff.
pub(super) async fn run_connection(client: Arc<Client>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let started = std::time::Instant::now();
        match client.connect_once().await {
            Ok(End::Replaced) => {
                client.emit(Event::Disconnected {
                    reason: "another connection of this device took over".to_owned(),
                });
                // Two live copies of one device must not both advance its sessions.
                client.stop();
                return;
            }
            Ok(End::Closed(reason)) => client.emit(Event::Disconnected { reason }),
            Err(ClientError::NotSignedIn | ClientError::SessionEnded) => {
                client.emit(Event::Disconnected {
                    reason: "signed out".to_owned(),
                });
                client.stop();
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

impl Client {
    /// One live connection, until it ends.
    async fn connect_once(&self) -> Result<End> {
        let (frames, outgoing) = mpsc::channel::<chat::ClientFrame>(16);
        let outgoing = std::sync::Mutex::new(Some(outgoing));
        let api = self.api.clone();
        let answer = self
            .authorized_status(|token| {
                let api = api.clone();
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
        self.messaging.outbox_wake.notify_one();
        if let Err(e) = self.ensure_prekeys().await {
            tracing::debug!(error = %e, "prekey refill failed");
        }

        let followed = self.followed();
        if !followed.is_empty()
            && frames
                .send(crate::presence::subscribe_frame(followed))
                .await
                .is_err()
        {
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
                () = self.messaging.follow_wake.notified() => {
                    let subscribe = crate::presence::subscribe_frame(self.followed());
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

    /// Refreshes the access token if it is about to expire (through the serialized refresh in
    /// `authorized`) and makes one cheap call with it on the channel the live stream uses, so
    /// the gateway holding the stream learns the session's new expiry. The expiry of the token
    /// now shown.
    async fn show_fresh_token(&self) -> Result<i64> {
        let api = self.api.clone();
        let call = self.authorized(|token| {
            let api = api.clone();
            async move { api.me(&token).await }
        });
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
            let api = self.api.clone();
            let page = self
                .authorized(|token| {
                    let api = api.clone();
                    async move { api.sync(&token, 0, SYNC_PAGE).await }
                })
                .await?;
            let Some(last) = page.envelopes.last().map(|e| e.seq) else {
                break;
            };
            for envelope in page.envelopes {
                self.process(envelope).await?;
                processed += 1;
            }
            self.queue_receipts()?;
            self.authorized(|token| {
                let api = api.clone();
                async move { api.ack(&token, last).await }
            })
            .await?;
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
        let applied = match envelope.kind() {
            chat::EnvelopeKind::Direct => return self.apply_direct(envelope).await,
            chat::EnvelopeKind::Group => self.apply_group_message(envelope).await?,
            chat::EnvelopeKind::Notice => self.apply_notice(envelope).await?,
        };
        Ok(match applied {
            Applied::Done => Processed::Done,
            Applied::Dropped => Processed::Dropped,
        })
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
        let _crypto = self.messaging.crypto();
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
                if !super::groups::accept_sender_key(tx, envelope, group_id, distribution)? {
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

    /// The sender device's trusted identity, fetching the sender's device list when the device
    /// is new to this one. None when the directory does not list it (drop the envelope).
    async fn sender_device(&self, envelope: &chat::Envelope) -> Result<Option<db::DeviceRecord>> {
        let find = |devices: Vec<db::DeviceRecord>| {
            devices
                .into_iter()
                .find(|d| d.device_id == envelope.sender_device_id)
        };
        if let Some(device) = find(
            self.store
                .read(|c| db::devices_with_removed(c, &envelope.sender_user_id))?,
        ) {
            return Ok(Some(device));
        }
        self.refresh_devices(&envelope.sender_user_id).await?;
        Ok(find(self.store.read(|c| {
            db::devices_with_removed(c, &envelope.sender_user_id)
        })?))
    }

    /// Turns the owed delivered receipts into queued receipt messages (one per sender and
    /// chunk), in one transaction.
    fn queue_receipts(&self) -> Result<()> {
        let (me, my_device) = self.me_ids()?;
        let now = self.clock.now_ms();
        let queued = self.store.write(|tx| {
            let owed = tx.take_owed_receipts()?;
            for (user, ids) in &owed {
                for chunk in ids.chunks(super::RECEIPT_CHUNK) {
                    let body = Body::Receipt(Receipt {
                        kind: ReceiptKind::Delivered as i32,
                        message_ids: chunk.to_vec(),
                    });
                    super::queue_in(tx, &me, &my_device, user, body, now)?;
                }
            }
            Ok(!owed.is_empty())
        })?;
        if queued {
            self.messaging.outbox_wake.notify_one();
        }
        Ok(())
    }
}

/// Whether peer-supplied content stays within what this client accepts.
pub(super) fn within_bounds(content: &Content) -> bool {
    match &content.body {
        Some(Body::Text(t)) => {
            t.text.len() <= super::MAX_TEXT_BYTES
                && t.attachment
                    .as_ref()
                    .is_none_or(super::media::attachment_within_bounds)
        }
        Some(Body::Edit(e)) => e.text.len() <= super::MAX_TEXT_BYTES,
        Some(Body::Reaction(r)) => r.emoji.chars().count() <= super::MAX_REACTION_CHARS,
        Some(Body::Receipt(r)) => r.message_ids.len() <= super::RECEIPT_CHUNK,
        Some(Body::SenderKey(k)) => k.distribution.len() <= 256,
        Some(Body::StatusKey(k)) => k.distribution.len() <= 256,
        Some(Body::StatusSeen(s)) => !s.status_id.is_empty() && s.status_id.len() <= 64,
        Some(Body::SenderKeyRequest(r)) => r.group_id.len() <= 64,
        Some(Body::Delete(_)) | None => true,
    }
}

/// Applies decrypted content to the history of `conversation` (a user, or with `in_group` a
/// group). The events to emit, and whether a delivered receipt is due (a new text from someone
/// else, outside groups).
pub(super) fn apply_content(
    tx: &Tx<'_>,
    envelope: &chat::Envelope,
    content: &Content,
    conversation: &str,
    own: bool,
    in_group: bool,
) -> Result<(Vec<Event>, bool)> {
    let sender = envelope.sender_user_id.as_str();
    let changed = |tx: &Tx<'_>, id: &str| -> Result<Vec<Event>> {
        Ok(tx
            .message(id)?
            .map(|message| Event::MessageChanged { message })
            .into_iter()
            .collect())
    };
    match &content.body {
        Some(Body::Text(Text {
            text,
            quoted_message_id,
            forwarded,
            attachment,
        })) => {
            let inserted = tx.insert_message(&NewMessage {
                in_group,
                message_id: content.message_id.clone(),
                conversation_user_id: conversation.to_owned(),
                sender_user_id: sender.to_owned(),
                sender_device_id: envelope.sender_device_id.clone(),
                outgoing: own,
                body: text.clone(),
                quoted_message_id: Some(quoted_message_id.clone()).filter(|q| !q.is_empty()),
                forwarded: *forwarded,
                status: if own {
                    MessageStatus::Sent
                } else {
                    MessageStatus::Received
                },
                sent_at_ms: content.sent_at_ms,
                server_time_ms: Some(envelope.server_time_ms),
                attachment: attachment.clone().map(|a| (a, None)),
            })?;
            if !inserted {
                return Ok((Vec::new(), false));
            }
            let message: Option<Message> = tx.message(&content.message_id)?;
            Ok((
                message
                    .map(|message| Event::MessageReceived { message })
                    .into_iter()
                    .collect(),
                !own && !in_group,
            ))
        }
        Some(Body::Edit(edit)) => {
            if tx.edit_message(
                &edit.target_message_id,
                sender,
                &edit.text,
                content.sent_at_ms,
            )? {
                return Ok((changed(tx, &edit.target_message_id)?, false));
            }
            Ok((Vec::new(), false))
        }
        Some(Body::Delete(delete)) => {
            if tx.delete_message(&delete.target_message_id, sender)? {
                return Ok((changed(tx, &delete.target_message_id)?, false));
            }
            Ok((Vec::new(), false))
        }
        Some(Body::Reaction(reaction)) => {
            if tx.set_reaction(
                conversation,
                &reaction.target_message_id,
                sender,
                &reaction.emoji,
            )? {
                return Ok((changed(tx, &reaction.target_message_id)?, false));
            }
            Ok((Vec::new(), false))
        }
        Some(Body::Receipt(receipt)) => {
            let status = match ReceiptKind::try_from(receipt.kind) {
                Ok(ReceiptKind::Delivered) => MessageStatus::Delivered,
                Ok(ReceiptKind::Read) => MessageStatus::Read,
                _ => return Ok((Vec::new(), false)),
            };
            let mut events = Vec::new();
            if own {
                // Another device of this account read these: they are read here too.
                if status == MessageStatus::Read {
                    tx.mark_read(conversation)?;
                }
                return Ok((events, false));
            }
            for id in &receipt.message_ids {
                if tx.advance_status_in(conversation, id, status)? {
                    events.extend(changed(tx, id)?);
                }
            }
            Ok((events, false))
        }
        Some(Body::SenderKeyRequest(request)) => {
            if !own {
                // Only the audience of a later send gets anything: a stranger's request
                // changes nothing.
                let audience = if request.group_id.is_empty() {
                    super::groups::status_audience(&content.to_user_id)
                } else {
                    request.group_id.clone()
                };
                tx.forget_sender_key_given(&audience, &envelope.sender_device_id)?;
            }
            Ok((Vec::new(), false))
        }
        Some(Body::StatusSeen(seen)) => {
            let now = envelope.server_time_ms;
            if own {
                // Another device of this account viewed it.
                tx.mark_status_viewed(&seen.status_id)?;
                return Ok((Vec::new(), false));
            }
            let me = &content.to_user_id;
            if tx.record_status_view(&seen.status_id, me, sender, now)? {
                return Ok((
                    vec![Event::StatusSeen {
                        status_id: seen.status_id.clone(),
                        viewer_user_id: sender.to_owned(),
                    }],
                    false,
                ));
            }
            Ok((Vec::new(), false))
        }
        // Handled before the history (see `apply_direct`).
        Some(Body::SenderKey(_) | Body::StatusKey(_)) | None => Ok((Vec::new(), false)),
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
