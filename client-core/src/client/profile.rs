//! [`Profile`]: `client.profile()`.

use std::sync::Arc;

use crate::error::Result;
use crate::model::records::{ProfileInfo, Settings, Visibility};
use crate::shared::Shared;

/// The profile: this user's name, about line and photo and who may see them, and other users'
/// profiles as the server lets this user see them (mutual contacts only, and only as each owner
/// allows).
#[derive(Debug, uniffi::Object)]
pub struct Profile {
    shared: Arc<Shared>,
}

impl Profile {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Profile {
    /// This user's profile and privacy settings.
    pub async fn settings(&self) -> Result<Settings> {
        self.shared.settings().await
    }

    /// Sets the profile's name and about line (`None` keeps a field; an empty text clears it).
    /// Names are at most 64 characters, about lines 140, neither with line breaks.
    pub async fn update(&self, name: Option<String>, about: Option<String>) -> Result<Settings> {
        self.shared.set_profile(name, about).await
    }

    /// Sets who sees this user's presence and profile (`None` keeps a setting).
    pub async fn set_privacy(
        &self,
        presence: Option<Visibility>,
        profile: Option<Visibility>,
    ) -> Result<Settings> {
        self.shared.set_privacy(presence, profile).await
    }

    /// The profiles of `peers` (phone numbers or user ids) this user may see; the others are
    /// left out.
    pub async fn get(&self, peers: Vec<String>) -> Result<Vec<ProfileInfo>> {
        self.shared.profiles(peers).await
    }

    /// Sets this account's profile photo from a JPEG, PNG or WebP file (at most 10 MiB). The
    /// server checks, crops and resizes it; contacts see it as the privacy settings allow.
    /// Returns the photo's new version.
    pub async fn set_photo(&self, path: String) -> Result<String> {
        self.shared.set_profile_photo(path).await
    }

    /// `peer`'s profile photo (a square JPEG: 640 px, or 96 px with `small`), when they allow
    /// this account to see it. NotFound when there is none to see.
    pub async fn photo(&self, peer: String, small: bool) -> Result<Vec<u8>> {
        self.shared.profile_photo(peer, small).await
    }

    /// Removes this account's profile photo.
    pub async fn delete_photo(&self) -> Result<()> {
        self.shared.delete_profile_photo().await
    }
}
