//! The Juntos client library: the [`Client`] object apps link (through uniffi for Kotlin, Swift
//! and Python) and `juntos-cli` drives, with its handles ([`Groups`], [`Media`], [`Statuses`],
//! [`Presence`], [`Profile`]).
//!
//! Layout, from the ground up (each layer uses only those before it):
//! - `model` (the plain data: what apps see, what travels inside the ciphertext, the session),
//!   `crypto` (every key and what it does, sans I/O), `error`, `config`, `thumbnail`;
//! - `store`, the SQLite file (the only place secrets are kept); `api`, the gRPC calls, and
//!   `tls`, what they trust;
//! - `gateway`, the calls with this device's tokens (refreshed and retried once); `runtime`,
//!   what runs while the client is started;
//! - `shared`, the device itself, whose work `account`, `messaging`, `presence` and `profile` add;
//! - `client`, the uniffi layer: `Client` and its handles.
#![forbid(unsafe_code)]

mod account;
mod api;
mod client;
mod config;
pub mod crypto;
mod error;
mod gateway;
mod messaging;
mod model;
mod presence;
mod profile;
mod runtime;
mod shared;
mod store;
mod thumbnail;
mod tls;

pub use client::{Client, Groups, Media, Presence, Profile, Statuses};
pub use config::ClientConfig;
pub use error::ClientError;
pub use model::records::{
    Account, AttachmentInfo, CodeRequest, Conversation, DeviceSummary, Event, EventListener,
    GroupAction, GroupInfo, GroupMemberInfo, GroupNoticeInfo, Me, Message, MessageReaction,
    MessageStatus, PresenceInfo, ProfileInfo, SessionInfo, Settings, StatusAudience, StatusInfo,
    TransferListener, Visibility,
};

uniffi::setup_scaffolding!();
