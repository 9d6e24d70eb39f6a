//! [`Groups`]: `client.groups()`.

use std::sync::Arc;

use crate::error::Result;
use crate::model::records::{GroupInfo, Message, TransferListener};
use crate::shared::Shared;

/// Groups: membership through the server, and messages encrypted once for every member device.
#[derive(Debug, uniffi::Object)]
pub struct Groups {
    shared: Arc<Shared>,
}

impl Groups {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Groups {
    /// Creates a group named `name` with this account as admin and `members` (E.164 numbers or
    /// user ids) in it.
    pub async fn create(&self, name: String, members: Vec<String>) -> Result<GroupInfo> {
        self.shared.create_group(name, members).await
    }

    /// Adds `members` (numbers or user ids) to a group (admins only).
    pub async fn add_members(&self, group_id: String, members: Vec<String>) -> Result<GroupInfo> {
        self.shared.add_group_members(group_id, members).await
    }

    /// Removes `members` (numbers or user ids) from a group (admins only). The removed
    /// members' devices get nothing sent after this.
    pub async fn remove_members(
        &self,
        group_id: String,
        members: Vec<String>,
    ) -> Result<GroupInfo> {
        self.shared.remove_group_members(group_id, members).await
    }

    /// Leaves a group.
    pub async fn leave(&self, group_id: String) -> Result<GroupInfo> {
        self.shared.leave_group(group_id).await
    }

    /// Makes `members` admins of a group, or plain members (admins only).
    pub async fn set_admins(
        &self,
        group_id: String,
        members: Vec<String>,
        admin: bool,
    ) -> Result<GroupInfo> {
        self.shared.set_group_admins(group_id, members, admin).await
    }

    /// Renames a group (admins only).
    pub async fn rename(&self, group_id: String, name: String) -> Result<GroupInfo> {
        self.shared.rename_group(group_id, name).await
    }

    /// One group, fetched from the server (members only).
    pub async fn get(&self, group_id: String) -> Result<GroupInfo> {
        self.shared.group(group_id).await
    }

    /// The groups this account is in (from the server), then those it left, by name.
    pub async fn list(&self) -> Result<Vec<GroupInfo>> {
        self.shared.groups().await
    }

    /// Sends `text` to every member of a group. Returns the queued message at once.
    pub async fn send_text(&self, group_id: String, text: String) -> Result<Message> {
        self.shared.send_group_text(group_id, text).await
    }

    /// Sends the file at `path` to every member of a group (see `Media.send_file`).
    pub async fn send_file(
        &self,
        group_id: String,
        path: String,
        caption: String,
        progress: Option<Arc<dyn TransferListener>>,
    ) -> Result<Message> {
        self.shared
            .send_group_file(group_id, path, caption, progress)
            .await
    }

    /// The newest `limit` messages of a group, oldest first.
    pub async fn history(&self, group_id: String, limit: u32) -> Result<Vec<Message>> {
        self.shared.group_history(group_id, limit).await
    }
}
