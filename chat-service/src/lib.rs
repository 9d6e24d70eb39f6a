//! The chat service (`juntos.chat.v1.Chat`, the `juntos chat` role): store-and-forward of
//! end-to-end encrypted envelopes.
//!
//! Layers: [`grpc`] (tonic: [`grpc::chat`] for `Chat`, [`grpc::groups`] for `Groups`) →
//! [`ChatService`] (logic: [`service::send`] for Send/Sync/Ack, [`service::connect`] for the live
//! stream, [`service::groups`] for membership and group sends, [`service::presence`] for who is
//! online) → [`ChatStore`] (the only code touching data; [`SqliteChatStore`] is the embedded
//! backend, [`MongoChatStore`] the shared one). Device lists come from login-service through a
//! [`DeviceDirectory`] ([`directory`]); [`delivery`] wakes the streams: the in-process
//! [`Doorbell`] rings connected streams, and with several pods [`RedisRoutes`] maps devices to
//! pods and rings the pod holding a device.

#![forbid(unsafe_code)]

pub mod delivery;
pub mod directory;
mod error;
pub mod grpc;
pub mod service;
pub mod store;
#[cfg(test)]
mod test_support;

pub use delivery::{Doorbell, RedisRoutes, Registration, RoutesConfig};
pub use directory::{DeviceDirectory, DeviceMap, DirectoryError, LoginDirectory};
pub use error::Error;
pub use grpc::{ChatGrpc, GroupsGrpc, MAX_REQUEST_BYTES, groups_server, server};
pub use service::{ChatConfig, ChatService, Cluster, NoticeSeed, Presence, PresenceState};
pub use store::{
    ChatStore, MongoChatStore, OutgoingEnvelope, Page, SendBatch, SendOutcome, SqliteChatStore,
    StoreError, StoredEnvelope,
};
