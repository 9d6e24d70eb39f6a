//! The Juntos client library: the one [`Client`] object apps link (through uniffi for Kotlin,
//! Swift and Python) and `juntos-cli` drives.
//!
//! Layout: `client` is the exported object and its token handling; `api` the gRPC calls and `tls` what they trust;
//! `store` the SQLite file (the only place secrets are kept); `identity` the device's keys.
#![forbid(unsafe_code)]

mod api;
mod client;
mod config;
pub mod crypto;
mod error;
mod identity;
mod messaging;
mod presence;
mod records;
mod session;
mod store;
mod thumbnail;
mod tls;

pub use client::Client;
pub use config::ClientConfig;
pub use error::ClientError;
pub use records::{
    Account, AttachmentInfo, CodeRequest, Conversation, DeviceSummary, Event, EventListener,
    GroupAction, GroupInfo, GroupMemberInfo, GroupNoticeInfo, Me, Message, MessageReaction,
    MessageStatus, PresenceInfo, ProfileInfo, SessionInfo, Settings, StatusAudience, StatusInfo,
    TransferListener, Visibility,
};

uniffi::setup_scaffolding!();
