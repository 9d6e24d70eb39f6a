//! Messaging: the outbox, the inbox, local history and the events apps see.
//!
//! Sending: an action (text, reply, edit, …) becomes a [`content::Content`], stored in the
//! history and queued in the outbox in one transaction, so it survives a crash or a closed app.
//! The outbox drains in order: per recipient device (the peer's devices and this account's other
//! devices) the content is encrypted with that device's Double Ratchet session (made from its
//! prekey bundle on first contact), the session states are saved, then `Chat.Send` stores every
//! envelope at once; a retry reuses the `client_msg_id`, so the server stores nothing twice. A
//! stale device list is fixed from the server's answer and the send retried.
//!
//! Receiving: each envelope is decrypted, applied to the history together with the session state
//! that decrypted it (one transaction), then acknowledged; duplicates are dropped by message id.
//! Delivered receipts go back to the sender automatically.

pub(crate) mod content;
mod e2e;
mod groups;
mod media;
mod receive;
mod send;
mod statuses;

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::content::{Body, Content};
use crate::Client;
use crate::error::{ClientError, Result};
use crate::records::{Conversation, Event, EventListener, Message, MessageStatus};
use crate::store::messaging::{self as db, NewMessage};

/// How many one-time prekeys a device publishes at a time.
const PREKEY_BATCH: u32 = 100;
/// Longest text accepted, in bytes (sent or received).
pub(crate) const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Longest reaction accepted, in characters.
pub(crate) const MAX_REACTION_CHARS: usize = 16;
/// Message ids per receipt (keeps one receipt well inside one 64 KiB envelope).
pub(crate) const RECEIPT_CHUNK: usize = 500;

/// Messaging state of a [`Client`].
#[derive(Default)]
pub(crate) struct State {
    listener: Mutex<Option<Arc<dyn EventListener>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Wakes the outbox worker.
    pub(crate) outbox_wake: Arc<Notify>,
    /// Held while the outbox drains, so sends leave in order (and while a status is keyed and
    /// encrypted, so no two users of a sending chain interleave).
    pub(crate) drain: tokio::sync::Mutex<()>,
    /// Held from reading a ratchet state to saving its successor (never across an await), so
    /// sending and receiving never both advance the same session from one state: that would
    /// reuse a message key.
    crypto: Mutex<()>,
    /// The users whose presence the live connection follows.
    followed: Mutex<Vec<String>>,
    /// Wakes the live connection when `followed` changes.
    pub(crate) follow_wake: Arc<Notify>,
    /// (audience, sender device) pairs whose missing chain this process asked for already.
    asked_for_keys: Mutex<std::collections::HashSet<(String, String)>>,
}

impl State {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        juntos_store::lock(m)
    }

    /// The crypto lock (see the field).
    pub(crate) fn crypto(&self) -> std::sync::MutexGuard<'_, ()> {
        Self::lock(&self.crypto)
    }

    /// The users whose presence is followed.
    pub(crate) fn followed(&self) -> Vec<String> {
        Self::lock(&self.followed).clone()
    }

    /// Whether to ask `sender_device` for its chain for `audience` (once per process).
    pub(crate) fn first_ask(&self, audience: &str, sender_device: &str) -> bool {
        let mut asked = Self::lock(&self.asked_for_keys);
        if asked.len() >= 10_000 {
            asked.clear();
        }
        asked.insert((audience.to_owned(), sender_device.to_owned()))
    }

    /// Replaces the followed users and tells the live connection.
    pub(crate) fn set_followed(&self, user_ids: Vec<String>) {
        *Self::lock(&self.followed) = user_ids;
        self.follow_wake.notify_one();
    }
}

impl Client {
    /// Tells the listener, if any.
    pub(crate) fn emit(&self, event: Event) {
        let listener = State::lock(&self.messaging.listener).clone();
        if let Some(listener) = listener {
            listener.on_event(event);
        }
    }

    /// The signed-in user and device.
    pub(crate) fn me_ids(&self) -> Result<(String, String)> {
        let session = self.store.session()?.ok_or(ClientError::NotSignedIn)?;
        Ok((session.user_id, session.device_id))
    }

    /// The user `peer` names: an E.164 phone number (resolved through the directory and
    /// remembered) or a user id.
    pub(crate) async fn resolve(&self, peer: &str) -> Result<String> {
        let peer = peer.trim();
        if !peer.starts_with('+') {
            if peer.is_empty()
                || peer.len() > 64
                || !peer.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(ClientError::InvalidInput {
                    message: "not a phone number or user id".to_owned(),
                });
            }
            return Ok(peer.to_owned());
        }
        if let Some(user_id) = self.store.read(|c| db::contact_by_phone(c, peer))? {
            return Ok(user_id);
        }
        let api = self.api.clone();
        let phones = vec![peer.to_owned()];
        let answer = self
            .authorized(|token| {
                let (api, phones) = (api.clone(), phones.clone());
                async move { api.resolve_phones(&token, phones).await }
            })
            .await?;
        let Some(found) = answer.contacts.into_iter().find(|c| c.phone == peer) else {
            return Err(ClientError::InvalidInput {
                message: "no Juntos user has this number".to_owned(),
            });
        };
        self.store
            .write(|tx| tx.save_contact(&found.user_id, &found.phone))?;
        Ok(found.user_id)
    }

    /// Stores `body` for `to_user_id` in the history (when it is a text) and queues it.
    fn queue(&self, to_user_id: &str, body: Body) -> Result<Message> {
        self.queue_for(To::User(to_user_id), body)
    }

    /// Stores `body` in the history of its conversation (when it is a text) and queues it.
    pub(crate) fn queue_for(&self, to: To<'_>, body: Body) -> Result<Message> {
        self.queue_with_file(to, body, None)
    }

    /// [`Client::queue_for`] of a message whose attachment this device has at `local_path`.
    pub(crate) fn queue_with_file(
        &self,
        to: To<'_>,
        body: Body,
        local_path: Option<&str>,
    ) -> Result<Message> {
        let (user_id, device_id) = self.me_ids()?;
        let now = self.clock.now_ms();
        let message = self
            .store
            .write(|tx| queue_to(tx, &user_id, &device_id, to, body, now, local_path))?;
        self.messaging.outbox_wake.notify_one();
        Ok(message)
    }

    /// A message of this account's history, or InvalidInput.
    fn own_history_message(&self, message_id: &str) -> Result<Message> {
        self.store
            .read(|c| db::message(c, message_id))?
            .ok_or_else(|| ClientError::InvalidInput {
                message: "no such message".to_owned(),
            })
    }
}

/// Where a queued message goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum To<'a> {
    /// A user (and this account's other devices), pairwise.
    User(&'a str),
    /// Every member device of a group, with this device's sender key.
    Group(&'a str),
}

/// Stores `body` for `to_user_id` in the history (when it is a text) and queues it, inside `tx`.
pub(crate) fn queue_in(
    tx: &db::Tx<'_>,
    me: &str,
    my_device: &str,
    to_user_id: &str,
    body: Body,
    now_ms: i64,
) -> Result<Message> {
    queue_to(tx, me, my_device, To::User(to_user_id), body, now_ms, None)
}

/// Stores `body` in the history of its conversation (when it is a text) and queues it for `to`,
/// inside `tx`.
pub(crate) fn queue_to(
    tx: &db::Tx<'_>,
    me: &str,
    my_device: &str,
    to: To<'_>,
    body: Body,
    now_ms: i64,
    local_path: Option<&str>,
) -> Result<Message> {
    let (to_user_id, in_group) = match to {
        To::User(user) => (user, false),
        To::Group(group) => (group, true),
    };
    let content = Content::new(me, to_user_id, now_ms, body);
    if let Some(Body::Text(text)) = &content.body {
        tx.insert_message(&NewMessage {
            in_group,
            message_id: content.message_id.clone(),
            conversation_user_id: to_user_id.to_owned(),
            sender_user_id: me.to_owned(),
            sender_device_id: my_device.to_owned(),
            outgoing: true,
            body: text.text.clone(),
            quoted_message_id: Some(text.quoted_message_id.clone()).filter(|q| !q.is_empty()),
            forwarded: text.forwarded,
            status: MessageStatus::Queued,
            sent_at_ms: content.sent_at_ms,
            server_time_ms: None,
            attachment: text
                .attachment
                .clone()
                .map(|a| (a, local_path.map(str::to_owned))),
        })?;
    }
    match to {
        To::User(user) => tx.enqueue(&content::new_id(), user, &content.encode_padded(), now_ms)?,
        To::Group(group) => {
            tx.enqueue_group(&content::new_id(), group, &content.encode_padded(), now_ms)?;
        }
    }
    apply_own_action(tx, me, &content)?;
    Ok(tx.message(&content.message_id)?.unwrap_or_else(|| {
        let mut message = placeholder(&content, to_user_id, me, my_device);
        message.group_id = in_group.then(|| to_user_id.to_owned());
        message
    }))
}

/// Applies an edit, delete or reaction this device makes to its own history at once (the other
/// devices apply it when it arrives).
fn apply_own_action(tx: &db::Tx<'_>, me: &str, content: &Content) -> Result<()> {
    match &content.body {
        Some(Body::Edit(e)) => {
            tx.edit_message(&e.target_message_id, me, &e.text, content.sent_at_ms)?;
        }
        Some(Body::Delete(d)) => {
            tx.delete_message(&d.target_message_id, me)?;
        }
        Some(Body::Reaction(r)) => {
            tx.set_reaction(&content.to_user_id, &r.target_message_id, me, &r.emoji)?;
        }
        _ => {}
    }
    Ok(())
}

/// What an action returns when it has no history row of its own (edits, reactions, receipts).
fn placeholder(content: &Content, to_user_id: &str, me: &str, device: &str) -> Message {
    Message {
        message_id: content.message_id.clone(),
        group_id: None,
        conversation_user_id: to_user_id.to_owned(),
        sender_user_id: me.to_owned(),
        sender_device_id: device.to_owned(),
        outgoing: true,
        body: String::new(),
        quoted_message_id: None,
        forwarded: false,
        status: MessageStatus::Queued,
        sent_at_ms: content.sent_at_ms,
        server_time_ms: None,
        edited: false,
        deleted: false,
        reactions: Vec::new(),
        attachment: None,
    }
}

/// Where actions on `message` go: its group, or the other user.
fn to_of(message: &Message) -> To<'_> {
    match &message.group_id {
        Some(group) => To::Group(group),
        None => To::User(&message.conversation_user_id),
    }
}

pub(crate) fn check_text(text: &str) -> Result<()> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ClientError::InvalidInput {
            message: format!("text longer than {MAX_TEXT_BYTES} bytes"),
        });
    }
    Ok(())
}

// === exported ===

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// Starts messaging in the background: publishes prekeys if needed, keeps a live connection
    /// that receives messages (reconnecting with backoff), and drains the outbox whenever the
    /// network allows. Events go to `listener`. It ends on [`Client::stop`], on sign-out, when
    /// the server ends the session, or when another connection of this device takes over; call
    /// `stop` before dropping the client.
    pub async fn start(self: Arc<Self>, listener: Option<Arc<dyn EventListener>>) -> Result<()> {
        self.me_ids()?;
        *State::lock(&self.messaging.listener) = listener;
        if let Err(e) = self.ensure_prekeys().await {
            tracing::warn!(error = %e, "could not publish prekeys yet; will retry on reconnect");
        }
        let mut tasks = State::lock(&self.messaging.tasks);
        for task in tasks.drain(..) {
            task.abort();
        }
        tasks.push(tokio::spawn(send::run_outbox(
            Arc::downgrade(&self),
            Arc::clone(&self.messaging.outbox_wake),
        )));
        tasks.push(tokio::spawn(receive::run_connection(Arc::clone(&self))));
        Ok(())
    }

    /// Stops the background connection and outbox worker (queued sends stay queued).
    pub fn stop(&self) {
        for task in State::lock(&self.messaging.tasks).drain(..) {
            task.abort();
        }
    }

    /// Sends `text` to `peer` (an E.164 number or a user id). Returns the queued message at once;
    /// its status moves to sent, delivered and read as that happens (see the events).
    pub async fn send_text(&self, peer: String, text: String) -> Result<Message> {
        check_text(&text)?;
        let to = self.resolve(&peer).await?;
        self.queue(
            &to,
            Body::Text(content::Text {
                text,
                quoted_message_id: String::new(),
                forwarded: false,
                attachment: None,
            }),
        )
    }

    /// Replies to `quoted_message_id` with `text`, in the conversation with `peer`.
    pub async fn reply(
        &self,
        peer: String,
        quoted_message_id: String,
        text: String,
    ) -> Result<Message> {
        check_text(&text)?;
        let to = self.resolve(&peer).await?;
        self.own_history_message(&quoted_message_id)?;
        self.queue(
            &to,
            Body::Text(content::Text {
                text,
                quoted_message_id,
                forwarded: false,
                attachment: None,
            }),
        )
    }

    /// Forwards the text of `message_id` to `peer`, marked as forwarded.
    pub async fn forward(&self, peer: String, message_id: String) -> Result<Message> {
        let original = self.own_history_message(&message_id)?;
        if original.deleted {
            return Err(ClientError::InvalidInput {
                message: "the message was deleted".to_owned(),
            });
        }
        let to = self.resolve(&peer).await?;
        // The same blob, capability and key: the recipient downloads what the original has.
        let attachment = self
            .store
            .read(|c| crate::store::media::attachment(c, &message_id))?;
        let local_path = original.attachment.and_then(|a| a.local_path);
        self.queue_with_file(
            To::User(&to),
            Body::Text(content::Text {
                text: original.body,
                quoted_message_id: String::new(),
                forwarded: true,
                attachment,
            }),
            local_path.as_deref(),
        )
    }

    /// Replaces the text of one of this account's messages, on every device of both users.
    pub async fn edit(&self, message_id: String, text: String) -> Result<Message> {
        check_text(&text)?;
        let original = self.editable(&message_id)?;
        self.queue_for(
            to_of(&original),
            Body::Edit(content::Edit {
                target_message_id: message_id.clone(),
                text,
            }),
        )?;
        self.own_history_message(&message_id)
    }

    /// Deletes one of this account's messages for everyone.
    pub async fn delete_for_everyone(&self, message_id: String) -> Result<Message> {
        let original = self.editable(&message_id)?;
        self.queue_for(
            to_of(&original),
            Body::Delete(content::Delete {
                target_message_id: message_id.clone(),
            }),
        )?;
        self.own_history_message(&message_id)
    }

    /// Reacts to a message with one emoji (empty removes this account's reaction).
    pub async fn react(&self, message_id: String, emoji: String) -> Result<Message> {
        if emoji.chars().count() > MAX_REACTION_CHARS {
            return Err(ClientError::InvalidInput {
                message: "a reaction is one emoji".to_owned(),
            });
        }
        let target = self.own_history_message(&message_id)?;
        self.queue_for(
            to_of(&target),
            Body::Reaction(content::Reaction {
                target_message_id: message_id.clone(),
                emoji,
            }),
        )?;
        self.own_history_message(&message_id)
    }

    /// Marks the conversation with `peer` read here and tells the sender (read receipts).
    pub async fn mark_read(&self, peer: String) -> Result<u32> {
        let to = self.resolve(&peer).await?;
        let (me, my_device) = self.me_ids()?;
        let now = self.clock.now_ms();
        // Marked read and the receipts queued together, in chunks that fit one envelope.
        let count = self.store.write(|tx| {
            let ids = tx.mark_read(&to)?;
            for chunk in ids.chunks(RECEIPT_CHUNK) {
                let body = Body::Receipt(content::Receipt {
                    kind: content::ReceiptKind::Read as i32,
                    message_ids: chunk.to_vec(),
                });
                queue_in(tx, &me, &my_device, &to, body, now)?;
            }
            Ok(ids.len())
        })?;
        self.messaging.outbox_wake.notify_one();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// The newest `limit` messages with `peer`, oldest first.
    pub async fn history(&self, peer: String, limit: u32) -> Result<Vec<Message>> {
        let user = self.resolve(&peer).await?;
        self.store
            .read(|c| db::history(c, &user, limit.clamp(1, 10_000)))
    }

    /// Every conversation, most recent first.
    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        self.store.read(db::conversations)
    }

    /// Sends everything queued now; the number of sends still waiting (0 when all went).
    pub async fn flush_outbox(&self) -> Result<u64> {
        self.drain_outbox().await?;
        self.store.read(db::outbox_len)
    }

    /// Receives once without a live connection (for clients that poll): fetches, applies and
    /// acknowledges everything waiting. The number of envelopes processed.
    pub async fn sync_now(&self) -> Result<u64> {
        self.sync_mailbox().await
    }

    /// The safety number of this account and `peer`: 60 digits both users see alike when no
    /// one is in the middle. Compare it in person or over a call.
    pub async fn safety_number(&self, peer: String) -> Result<String> {
        let user = self.resolve(&peer).await?;
        let (me, _) = self.me_ids()?;
        self.refresh_devices(&user).await?;
        self.refresh_devices(&me).await?;
        let mine = self.store.read(|c| db::devices_of(c, &me))?;
        let theirs = self.store.read(|c| db::devices_of(c, &user))?;
        let identity = self.store.identity()?.ok_or(ClientError::NotSignedIn)?;
        Ok(e2e::safety_number(&me, &identity, &mine, &user, &theirs))
    }
}

impl Client {
    fn editable(&self, message_id: &str) -> Result<Message> {
        let (me, _) = self.me_ids()?;
        let m = self.own_history_message(message_id)?;
        if m.sender_user_id != me || m.deleted {
            return Err(ClientError::InvalidInput {
                message: "only your own, undeleted messages can change".to_owned(),
            });
        }
        Ok(m)
    }

    /// Publishes a signed prekey and one-time prekeys when the server says they run low.
    pub(crate) async fn ensure_prekeys(&self) -> Result<()> {
        let api = self.api.clone();
        let status = self
            .authorized(|token| {
                let api = api.clone();
                async move { api.prekey_status(&token).await }
            })
            .await?;
        if !status.refill {
            return Ok(());
        }
        let identity = self.store.identity()?.ok_or(ClientError::NotSignedIn)?;
        let (next_signed, next_one_time) = self.store.read(db::next_prekey_ids)?;
        let signed = (!status.has_signed_prekey || !self.store.read(db::has_signed_prekey)?)
            .then(|| e2e::signed_prekey(&identity, next_signed));
        let one_time = e2e::one_time_prekeys(next_one_time, PREKEY_BATCH);
        // Stored before the upload: a key the server hands out must never be one we lost.
        self.store
            .write(|tx| tx.add_prekeys(signed.as_ref(), &one_time, self.clock.now_ms()))?;
        let request = e2e::upload_request(signed.as_ref(), &one_time);
        self.authorized(|token| {
            let (api, request) = (api.clone(), request.clone());
            async move { api.upload_prekeys(&token, request).await }
        })
        .await?;
        Ok(())
    }
}
