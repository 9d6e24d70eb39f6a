//! Conversations with one other user: texts, replies and forwards, and the edits, deletions,
//! reactions and read marks that apply to a message (in a group's conversation too), and the
//! history they make.

use super::limits::{MAX_REACTION_CHARS, RECEIPT_CHUNK, check_text};
use super::queue::{To, queue_in, to_of};
use crate::error::{ClientError, Result};
use crate::model::content::{self, Body};
use crate::model::records::{Conversation, Message};
use crate::shared::Shared;
use crate::store::media as mdb;
use crate::store::messaging as db;

impl Shared {
    /// Sends `text` to `peer` (an E.164 number or a user id). Returns the queued message at once;
    /// its status moves to sent, delivered and read as that happens (see the events).
    pub(crate) async fn send_text(&self, peer: String, text: String) -> Result<Message> {
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
    pub(crate) async fn reply(
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
    pub(crate) async fn forward(&self, peer: String, message_id: String) -> Result<Message> {
        let original = self.own_history_message(&message_id)?;
        if original.deleted {
            return Err(ClientError::InvalidInput {
                message: "the message was deleted".to_owned(),
            });
        }
        let to = self.resolve(&peer).await?;
        // The same blob, capability and key: the recipient downloads what the original has.
        let attachment = self.store.read(|c| mdb::attachment(c, &message_id))?;
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
    pub(crate) async fn edit(&self, message_id: String, text: String) -> Result<Message> {
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
    pub(crate) async fn delete_for_everyone(&self, message_id: String) -> Result<Message> {
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
    pub(crate) async fn react(&self, message_id: String, emoji: String) -> Result<Message> {
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
    pub(crate) async fn mark_read(&self, peer: String) -> Result<u32> {
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
        self.runtime.outbox_wake.notify_one();
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    /// The newest `limit` messages with `peer`, oldest first.
    pub(crate) async fn history(&self, peer: String, limit: u32) -> Result<Vec<Message>> {
        let user = self.resolve(&peer).await?;
        self.store
            .read(|c| db::history(c, &user, limit.clamp(1, 10_000)))
    }

    /// Every conversation, most recent first.
    pub(crate) fn conversations(&self) -> Result<Vec<Conversation>> {
        self.store.read(db::conversations)
    }

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
}
