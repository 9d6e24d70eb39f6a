//! Juntos media service (the `juntos media` role): 24-hour statuses (`juntos.media.v1.Statuses`)
//! and encrypted media blobs and profile photos (`juntos.media.v1.Media`, [`MediaService`]).
//!
//! Layers: [`grpc`] (tonic) → [`StatusService`] (logic: validation, the 100-in-24-hours answer,
//! the sweeper) → [`StatusStore`] (the only code touching data; [`SqliteStatusStore`] is the
//! embedded backend in `<data-dir>/media.db`, [`MongoStatusStore`] the shared one). The server
//! keeps only ciphertext, who posted it, when, and who may fetch it, and forgets all of it at
//! expiry. Blobs are opaque ciphertext behind [`BlobStore`]: [`FolderBlobStore`] embedded,
//! [`S3BlobStore`] shared.

#![forbid(unsafe_code)]

pub mod blob;
mod error;
pub mod grpc;
pub mod media;
mod media_grpc;
pub mod photo;
pub mod service;
pub mod status_id;
pub mod store;
mod visibility;

pub use blob::{BlobError, BlobStore, FolderBlobStore, S3BlobStore, S3Config};
pub use error::Error;
pub use grpc::{MAX_REQUEST_BYTES, StatusesGrpc, server};
pub use media::{MediaConfig, MediaService, ProfileVisibility};
pub use media_grpc::{MAX_MEDIA_MESSAGE_BYTES, MediaGrpc, media_server};
pub use service::{StatusConfig, StatusService};
pub use store::{
    BlobIndex, BlobRecord, MongoStatusStore, NewStatus, PostLimit, PostOutcome, ProfilePhotoRecord,
    SqliteStatusStore, StatusPage, StatusStore, StoreError, StoredStatus,
};
pub use visibility::LoginVisibility;
