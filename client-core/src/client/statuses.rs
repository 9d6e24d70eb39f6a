//! [`Statuses`]: `client.statuses()`.

use std::sync::Arc;

use crate::error::Result;
use crate::model::records::{StatusAudience, StatusInfo, TransferListener};
use crate::shared::Shared;

/// Statuses: texts and pictures that vanish 24 hours after posting, for the audience the user
/// picks.
#[derive(Debug, uniffi::Object)]
pub struct Statuses {
    shared: Arc<Shared>,
}

impl Statuses {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Statuses {
    /// Posts `text` as a status for `audience`; it expires 24 hours from now.
    pub async fn post(&self, text: String, audience: StatusAudience) -> Result<StatusInfo> {
        self.shared.post_status(text, audience).await
    }

    /// Posts the picture or video at `path` as a status, with `caption`: encrypted and uploaded
    /// first (see `Media.send_file`); the server deletes it with the status after 24 hours.
    pub async fn post_media(
        &self,
        path: String,
        caption: String,
        audience: StatusAudience,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<StatusInfo> {
        self.shared
            .post_status_media(path, caption, audience, progress)
            .await
    }

    /// The unexpired statuses this account may see (its own included), newest first. Fetches
    /// the server's list; call `Client.sync_now` (or keep `Client.start` running) first so the
    /// posters' keys have arrived.
    pub async fn list(&self) -> Result<Vec<StatusInfo>> {
        self.shared.statuses().await
    }

    /// Marks a status viewed and tells its poster (encrypted). Returns it.
    pub async fn view(&self, status_id: String) -> Result<StatusInfo> {
        self.shared.view_status(status_id).await
    }

    /// Deletes one of this account's statuses everywhere before it expires.
    pub async fn delete(&self, status_id: String) -> Result<()> {
        self.shared.delete_status(status_id).await
    }
}
