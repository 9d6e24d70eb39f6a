//! What incoming content does, inside the transaction that saves the session (or chain) that
//! decrypted it: the history changes it makes, and the sending chains it hands over.

use juntos_proto::chat::v1 as chat;

use super::e2e;
use super::limits::check_group_id;
use crate::error::Result;
use crate::model::content::{Body, Content, ReceiptKind, Text};
use crate::model::records::{Event, Message, MessageStatus};
use crate::store::Tx;
use crate::store::groups::status_audience;
use crate::store::messaging::NewMessage;

/// What processing one envelope came to.
pub(super) enum Processed {
    /// Applied (or a harmless duplicate): acknowledge it.
    Done,
    /// Could not be decrypted or understood: acknowledge (it will never succeed) and tell the app.
    Dropped,
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
                    status_audience(&content.to_user_id)
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

/// Stores a chain another device sent this one pairwise (inside the transaction that saves the
/// session which decrypted it): a group's, or with `key.group_id` `None` the sender's status
/// chain. False when the distribution is malformed.
pub(super) fn accept_sender_key(
    tx: &Tx<'_>,
    envelope: &chat::Envelope,
    group_id: Option<&str>,
    distribution: &[u8],
) -> Result<bool> {
    let audience = match group_id {
        Some(group_id) if check_group_id(group_id).is_ok() => group_id.to_owned(),
        Some(_) => return Ok(false),
        None => status_audience(&envelope.sender_user_id),
    };
    let Ok((chain_id, state)) = e2e::accept_sender_key(distribution) else {
        return Ok(false);
    };
    tx.save_received_sender_key(
        &audience,
        &envelope.sender_user_id,
        &envelope.sender_device_id,
        chain_id,
        &state,
    )?;
    Ok(true)
}
