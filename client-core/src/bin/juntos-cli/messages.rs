//! The one-to-one conversation commands: `send`, `history`, `read` and `safety-number`, and
//! the history line every message is shown as.

use juntos_client::{Client, ClientError, Message};

use crate::common::{catch_up, report_send};

/// `send`: queues a text for `to` and tries to send it.
pub(crate) async fn send(client: &Client, to: String, text: String) -> Result<(), ClientError> {
    let message = client.send_text(to, text).await?;
    report_send(client, &message).await?;
    Ok(())
}

/// `history`: the newest `limit` messages with `peer`.
pub(crate) async fn history(client: &Client, peer: String, limit: u32) -> Result<(), ClientError> {
    // Pick up what arrived meanwhile (receipts, edits) first; offline shows local history.
    catch_up(client).await;
    for m in client.history(peer, limit).await? {
        println!("{}", history_line(&m));
    }
    Ok(())
}

/// `read`: marks the conversation with `peer` read (they get read receipts).
pub(crate) async fn read(client: &Client, peer: String) -> Result<(), ClientError> {
    catch_up(client).await;
    let n = client.mark_read(peer).await?;
    let _ = client.flush_outbox().await;
    println!("marked {n} read");
    Ok(())
}

/// `safety-number`: the safety number to compare with `peer`.
pub(crate) async fn safety_number(client: &Client, peer: String) -> Result<(), ClientError> {
    println!("{}", client.safety_number(peer).await?);
    Ok(())
}

/// One history line: `<id> <status> <from> [reply to …] [forwarded] text`.
pub(crate) fn history_line(m: &Message) -> String {
    let who = if m.outgoing {
        "me".to_owned()
    } else {
        m.sender_user_id.clone()
    };
    let mut line = format!("{} {:?} {who}:", m.message_id, m.status);
    if let Some(group) = &m.group_id {
        line = format!("{} {:?} [group {group}] {who}:", m.message_id, m.status);
    }
    if let Some(q) = &m.quoted_message_id {
        line.push_str(&format!(" [reply to {q}]"));
    }
    if m.forwarded {
        line.push_str(" [forwarded]");
    }
    if m.deleted {
        line.push_str(" [deleted]");
    } else {
        if let Some(a) = &m.attachment {
            line.push_str(&format!(
                " [{} {}, {} bytes]",
                a.mime_type, a.file_name, a.size
            ));
        }
        line.push(' ');
        line.push_str(&m.body);
        if m.edited {
            line.push_str(" [edited]");
        }
    }
    for r in &m.reactions {
        line.push_str(&format!(" {}:{}", r.user_id, r.emoji));
    }
    line
}
