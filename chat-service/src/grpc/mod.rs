//! The tonic servers of the chat role, one file per proto service: [`chat`]
//! (`juntos.chat.v1.Chat`) and [`groups`] (`juntos.chat.v1.Groups`); [`server`] and
//! [`groups_server`] build them over one [`ChatService`] with their request size caps.

use std::sync::Arc;

use juntos_proto::chat::v1::chat_server::ChatServer;
use juntos_proto::chat::v1::groups_server::GroupsServer;

use crate::service::groups::MAX_GROUP_MEMBERS;
use crate::service::{ChatService, MAX_ENVELOPE_BYTES, MAX_RECIPIENTS};

pub mod chat;
pub mod groups;

pub use chat::ChatGrpc;
pub use groups::GroupsGrpc;

/// Largest request message the chat server decodes: a send to [`MAX_RECIPIENTS`] devices of
/// [`MAX_ENVELOPE_BYTES`] each (16 MiB) plus ids and framing, rounded up to 20 MiB. The
/// gateway's `--max-message-bytes` default matches it.
pub const MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;

const _: () = assert!(MAX_RECIPIENTS * (MAX_ENVELOPE_BYTES + 1024) <= MAX_REQUEST_BYTES);

/// The `juntos.chat.v1.Chat` server over `service`.
pub fn server(service: Arc<ChatService>) -> ChatServer<ChatGrpc> {
    ChatServer::new(ChatGrpc { service }).max_decoding_message_size(MAX_REQUEST_BYTES)
}

/// Largest request the groups server decodes: a group message (64 KiB) or a list of
/// [`MAX_GROUP_MEMBERS`] user ids, with room to spare.
pub const MAX_GROUPS_REQUEST_BYTES: usize = 1024 * 1024;

const _: () = assert!(MAX_ENVELOPE_BYTES + 4096 <= MAX_GROUPS_REQUEST_BYTES);
const _: () = assert!(MAX_GROUP_MEMBERS * 256 <= MAX_GROUPS_REQUEST_BYTES);

/// The `juntos.chat.v1.Groups` server over `service`.
pub fn groups_server(service: Arc<ChatService>) -> GroupsServer<GroupsGrpc> {
    GroupsServer::new(GroupsGrpc { service }).max_decoding_message_size(MAX_GROUPS_REQUEST_BYTES)
}
