//! [`Media`]: `client.media()`.

use std::sync::Arc;

use crate::error::Result;
use crate::model::records::{Message, TransferListener};
use crate::shared::Shared;

/// Media: pictures, videos, voice notes and files, encrypted on this device and sent as blobs.
#[derive(Debug, uniffi::Object)]
pub struct Media {
    shared: Arc<Shared>,
}

impl Media {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Media {
    /// Sends the file at `path` to `peer` (an E.164 number or a user id), with `caption`
    /// (may be empty). Encrypts and uploads it first (resuming an earlier interrupted upload of
    /// the same unchanged file), then queues the message; `progress` hears how the upload goes.
    /// (A group's: `Groups.send_file`.)
    pub async fn send_file(
        &self,
        peer: String,
        path: String,
        caption: String,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<Message> {
        self.shared.send_file(peer, path, caption, progress).await
    }

    /// Downloads, checks and decrypts the attachment of `message_id` (or of a status: its id)
    /// into `out_path` (default: `media/<file name>` in the client's home directory); returns
    /// where the file is. The file appears only once all of it checked out.
    pub async fn download(
        &self,
        message_id: String,
        out_path: Option<String>,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<String> {
        self.shared.download(message_id, out_path, progress).await
    }
}
