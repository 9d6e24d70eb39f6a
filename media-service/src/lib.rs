//! Juntos media service (the `juntos media` role): 24-hour statuses (`juntos.media.v1.Statuses`,
//! [`StatusService`]) and encrypted media blobs and profile photos (`juntos.media.v1.Media`,
//! [`MediaService`]).
//!
//! Layers, each split by those two halves: [`grpc`] (tonic: one file per proto service) →
//! [`service`] (logic: for statuses validation, the 100-in-24-hours answer and the sweeper; for
//! media one file per feature: uploads, downloads, profile photos, the sweeper) → [`store`] (the
//! only code touching data: [`StatusStore`] and [`BlobIndex`], both implemented by
//! [`SqliteStatusStore`], the embedded backend in `<data-dir>/media.db`, and by
//! [`MongoStatusStore`], the shared one). The server keeps only ciphertext, who posted it, when,
//! and who may fetch it, and forgets all of it at expiry. Blobs are opaque ciphertext behind
//! [`BlobStore`]: [`FolderBlobStore`] embedded, [`S3BlobStore`] shared. Beside the layers:
//! [`photo`] re-makes profile photos, [`status_id`] makes and checks status ids, and
//! [`LoginVisibility`] asks login-service who may see a profile.

#![forbid(unsafe_code)]

pub mod blob;
mod error;
pub mod grpc;
pub mod photo;
pub mod service;
pub mod status_id;
pub mod store;
mod visibility;

pub use blob::{BlobError, BlobStore, FolderBlobStore, S3BlobStore, S3Config};
pub use error::Error;
pub use grpc::{
    MAX_MEDIA_MESSAGE_BYTES, MAX_REQUEST_BYTES, MediaGrpc, StatusesGrpc, media_server, server,
};
pub use service::{MediaConfig, MediaService, ProfileVisibility, StatusConfig, StatusService};
pub use store::{
    BlobIndex, BlobRecord, MongoStatusStore, NewStatus, PostLimit, PostOutcome, ProfilePhotoRecord,
    SqliteStatusStore, StatusPage, StatusStore, StoreError, StoredStatus,
};
pub use visibility::LoginVisibility;
