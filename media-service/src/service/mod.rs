//! The logic of the two services this crate serves, between the tonic layer ([`crate::grpc`])
//! and the storage ([`crate::store`]):
//! * [`statuses`]: [`StatusService`] (`juntos.media.v1.Statuses`): posting, listing and deleting
//!   24-hour statuses, and the sweeper that removes them once expired;
//! * [`media`]: [`MediaService`] (`juntos.media.v1.Media`): resumable uploads of encrypted blobs,
//!   downloads by capability, profile photos, and the sweeper of what nobody may fetch any more.

pub mod media;
pub mod statuses;

pub use self::media::{MediaConfig, MediaService, ProfileVisibility};
pub use self::statuses::{StatusConfig, StatusService};
