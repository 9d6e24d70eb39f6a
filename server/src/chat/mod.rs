//! The chat service (`juntos.chat.v1.Chat`, the `juntos chat` role): store-and-forward of
//! end-to-end encrypted envelopes.
//!
//! Layers: [`grpc`] and [`groups_grpc`] (tonic) → [`ChatService`] (logic: [`service`] for
//! Send/Sync/Ack, [`connect`] for the live stream, [`groups`] for membership and group sends) → [`ChatStore`] (the only code touching data;
//! [`SqliteChatStore`] is the embedded backend, [`MongoChatStore`] the shared one). Device lists
//! come from login-service through a [`DeviceDirectory`]; the in-process [`Doorbell`] wakes connected streams, and with several
//! pods [`RedisRoutes`] maps devices to pods and rings the pod holding a device.

pub mod connect;
pub mod directory;
pub mod doorbell;
mod error;
pub mod groups;
pub mod groups_grpc;
pub mod grpc;
pub mod mongo;
pub mod presence;
pub mod routes;
pub mod service;
pub mod sqlite;
pub mod store;
#[cfg(test)]
mod suite;
#[cfg(test)]
mod test_support;

pub use directory::{DeviceDirectory, DeviceMap, DirectoryError, LoginDirectory};
pub use doorbell::{Doorbell, Registration};
pub use error::Error;
pub use groups_grpc::groups_server;
pub use grpc::{ChatGrpc, MAX_REQUEST_BYTES, server};
pub use mongo::MongoChatStore;
pub use presence::{Presence, PresenceState};
pub use routes::{RedisRoutes, RoutesConfig};
pub use service::{ChatConfig, ChatService, NoticeSeed};
pub use sqlite::SqliteChatStore;
pub use store::{
    ChatStore, OutgoingEnvelope, Page, SendBatch, SendOutcome, StoreError, StoredEnvelope,
};
