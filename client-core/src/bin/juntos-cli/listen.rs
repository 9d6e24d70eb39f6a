//! The `listen` command: receiving until Ctrl-C (or `--for`), printing each event as a line
//! or, with `--json`, as one JSON object.

use std::sync::Arc;

use juntos_client::{Client, ClientError, Event, EventListener, Message};

use crate::groups::action_word;
use crate::messages::history_line;
use crate::people::presence_line;

/// `listen`: prints incoming messages and events (sending delivered receipts) for `seconds`,
/// or until Ctrl-C, following the presence of the users in `follow`.
pub(crate) async fn listen(
    client: &Arc<Client>,
    seconds: Option<u64>,
    json: bool,
    follow: Vec<String>,
) -> Result<(), ClientError> {
    if !follow.is_empty() {
        client.presence().follow(follow).await?;
    }
    let printer: Arc<dyn EventListener> = Arc::new(Printer { json });
    Arc::clone(client).start(Some(printer)).await?;
    match seconds {
        Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    client.stop();
    // Receipts queued while listening go out before exit (best effort).
    let _ = client.flush_outbox().await;
    Ok(())
}

/// Prints events as they come.
struct Printer {
    json: bool,
}

impl EventListener for Printer {
    fn on_event(&self, event: Event) {
        if self.json {
            println!("{}", event_json(&event));
            return;
        }
        match event {
            Event::MessageReceived { message } => println!("{}", history_line(&message)),
            Event::MessageChanged { message } => println!("changed {}", history_line(&message)),
            Event::SendFailed { message_id, error } => println!("failed {message_id}: {error}"),
            Event::Undecryptable { sender_user_id, .. } => {
                println!("undecryptable message from {sender_user_id}")
            }
            Event::Connected => println!("connected"),
            Event::Disconnected { reason } => println!("disconnected: {reason}"),
            Event::PresenceChanged { presence } => {
                println!("presence {}", presence_line(&presence))
            }
            Event::StatusSeen {
                status_id,
                viewer_user_id,
            } => println!("status {status_id} seen by {viewer_user_id}"),
            Event::GroupChanged { notice: n } => println!(
                "group {} {:?}: {} {} {}",
                n.group_id,
                n.name,
                n.actor_user_id,
                action_word(n.action),
                n.subject_user_ids.join(" ")
            ),
        }
    }
}

/// An event as one JSON object.
fn event_json(event: &Event) -> String {
    let message = |kind: &str, m: &Message| {
        serde_json::json!({
            "event": kind,
            "message_id": m.message_id,
            "conversation": m.conversation_user_id,
            "group": m.group_id,
            "sender": m.sender_user_id,
            "sender_device": m.sender_device_id,
            "outgoing": m.outgoing,
            "text": m.body,
            "quoted": m.quoted_message_id,
            "forwarded": m.forwarded,
            "status": format!("{:?}", m.status).to_lowercase(),
            "edited": m.edited,
            "deleted": m.deleted,
            "reactions": m.reactions.iter().map(|r| serde_json::json!({"user": r.user_id, "emoji": r.emoji})).collect::<Vec<_>>(),
            "sent_at_ms": m.sent_at_ms,
        })
    };
    let value = match event {
        Event::MessageReceived { message: m } => message("message", m),
        Event::MessageChanged { message: m } => message("changed", m),
        Event::SendFailed { message_id, error } => {
            serde_json::json!({"event": "send_failed", "message_id": message_id, "error": error})
        }
        Event::Undecryptable {
            sender_user_id,
            sender_device_id,
        } => {
            serde_json::json!({"event": "undecryptable", "sender": sender_user_id, "sender_device": sender_device_id})
        }
        Event::Connected => serde_json::json!({"event": "connected"}),
        Event::Disconnected { reason } => {
            serde_json::json!({"event": "disconnected", "reason": reason})
        }
        Event::PresenceChanged { presence: p } => serde_json::json!({
            "event": "presence",
            "user": p.user_id,
            "visible": p.visible,
            "online": p.online,
            "last_seen_ms": p.last_seen_ms,
        }),
        Event::StatusSeen {
            status_id,
            viewer_user_id,
        } => {
            serde_json::json!({"event": "status_seen", "status": status_id, "viewer": viewer_user_id})
        }
        Event::GroupChanged { notice: n } => serde_json::json!({
            "event": "group",
            "group": n.group_id,
            "version": n.version,
            "actor": n.actor_user_id,
            "action": action_word(n.action),
            "subjects": n.subject_user_ids,
            "promoted": n.promoted_user_ids,
            "name": n.name,
            "time_ms": n.time_ms,
            "exists": n.exists,
        }),
    };
    value.to_string()
}
