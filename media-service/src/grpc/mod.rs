//! The tonic layer: one file per proto service (`statuses` for `juntos.media.v1.Statuses`,
//! `media` for `juntos.media.v1.Media`), each unpacking the request, taking the caller from the
//! gateway's headers and calling the service; this module builds their servers with the
//! largest request message each decodes.

mod media;
mod statuses;

use std::sync::Arc;

use juntos_proto::media::v1::media_server::MediaServer;
use juntos_proto::media::v1::statuses_server::StatusesServer;

pub use self::media::MediaGrpc;
pub use self::statuses::StatusesGrpc;
use crate::service::media::{MAX_CHUNK_BYTES, MAX_STATUS_BLOBS, MediaService};
use crate::service::statuses::{MAX_AUDIENCE, MAX_STATUS_BYTES, MAX_USER_ID_LEN, StatusService};

/// Largest request message the status server decodes: a post of [`MAX_STATUS_BYTES`] with
/// [`MAX_AUDIENCE`] ids of [`MAX_USER_ID_LEN`] bytes (plus the poster's own, which is dropped),
/// each with its tag and length, and the client id, rounded up to 1 MiB. The gateway's
/// `--max-message-bytes` default (20 MiB) is above it.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

const _: () = assert!(
    MAX_STATUS_BYTES + 8 + (MAX_AUDIENCE + 1) * (MAX_USER_ID_LEN + 3) + MAX_STATUS_BLOBS * 40 + 128
        <= MAX_REQUEST_BYTES
);

/// The `juntos.media.v1.Statuses` server over `service`; a status's blobs get their expiry
/// from `media`.
pub fn server(
    service: Arc<StatusService>,
    media: Arc<MediaService>,
) -> StatusesServer<StatusesGrpc> {
    StatusesServer::new(StatusesGrpc { service, media })
        .max_decoding_message_size(MAX_REQUEST_BYTES)
}

/// Largest request message the media server decodes: a chunk and its framing.
pub const MAX_MEDIA_MESSAGE_BYTES: usize = MAX_CHUNK_BYTES + 4096;

/// The `juntos.media.v1.Media` server over `service`.
pub fn media_server(service: Arc<MediaService>) -> MediaServer<MediaGrpc> {
    MediaServer::new(MediaGrpc { service }).max_decoding_message_size(MAX_MEDIA_MESSAGE_BYTES)
}
