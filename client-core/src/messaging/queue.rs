//! The history and the outbox, written together: an action becomes a [`Content`], filed in the
//! history (when it is a text) and queued in the outbox in one transaction, so it survives a
//! crash or a closed app. The outbox worker (`outbox.rs`) sends it later.

use crate::error::{ClientError, Result};
use crate::model::content::{Body, Content, new_id};
use crate::model::records::{Message, MessageStatus};
use crate::shared::Shared;
use crate::store::Tx;
use crate::store::messaging::{self as db, NewMessage};

impl Shared {
    /// Stores `body` for `to_user_id` in the history (when it is a text) and queues it.
    pub(super) fn queue(&self, to_user_id: &str, body: Body) -> Result<Message> {
        self.queue_for(To::User(to_user_id), body)
    }

    /// Stores `body` in the history of its conversation (when it is a text) and queues it.
    pub(crate) fn queue_for(&self, to: To<'_>, body: Body) -> Result<Message> {
        self.queue_with_file(to, body, None)
    }

    /// [`Shared::queue_for`] of a message whose attachment this device has at `local_path`.
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
        self.runtime.outbox_wake.notify_one();
        Ok(message)
    }

    /// A message of this account's history, or InvalidInput.
    pub(super) fn own_history_message(&self, message_id: &str) -> Result<Message> {
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
    tx: &Tx<'_>,
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
    tx: &Tx<'_>,
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
        To::User(user) => tx.enqueue(&new_id(), user, &content.encode_padded(), now_ms)?,
        To::Group(group) => {
            tx.enqueue_group(&new_id(), group, &content.encode_padded(), now_ms)?;
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
fn apply_own_action(tx: &Tx<'_>, me: &str, content: &Content) -> Result<()> {
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
pub(super) fn to_of(message: &Message) -> To<'_> {
    match &message.group_id {
        Some(group) => To::Group(group),
        None => To::User(&message.conversation_user_id),
    }
}
