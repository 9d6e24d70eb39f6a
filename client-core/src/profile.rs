//! The profile: this user's name, about line and photo and who may see them (privacy), and
//! other users' profiles and photos as the server lets this user see them (mutual contacts
//! only, and only as each owner allows).

use juntos_proto::login::v1 as pb;
use juntos_proto::media::v1 as media;

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::model::records::{ProfileInfo, Settings, Visibility};
use crate::shared::Shared;

/// Bytes per message of a profile photo's upload.
const PHOTO_CHUNK: usize = 64 * 1024;

impl From<pb::Settings> for Settings {
    fn from(s: pb::Settings) -> Self {
        let visibility = |v: i32| match pb::Visibility::try_from(v) {
            Ok(pb::Visibility::Nobody) => Visibility::Nobody,
            _ => Visibility::Contacts,
        };
        Self {
            name: s.name,
            about: s.about,
            presence: visibility(s.presence),
            profile: visibility(s.profile),
        }
    }
}

fn to_wire(v: Visibility) -> i32 {
    match v {
        Visibility::Contacts => pb::Visibility::Contacts as i32,
        Visibility::Nobody => pb::Visibility::Nobody as i32,
    }
}

impl Shared {
    /// This user's profile and privacy settings.
    pub(crate) async fn settings(&self) -> Result<Settings> {
        let settings = self
            .gateway
            .unary(Api::get_settings, pb::GetSettingsRequest {})
            .await?;
        Ok(settings.into())
    }

    /// Sets the profile's name and about line (`None` keeps a field; an empty text clears it).
    /// Names are at most 64 characters, about lines 140, neither with line breaks.
    pub(crate) async fn set_profile(
        &self,
        name: Option<String>,
        about: Option<String>,
    ) -> Result<Settings> {
        self.update_settings(pb::UpdateSettingsRequest {
            name,
            about,
            ..Default::default()
        })
        .await
    }

    /// Sets who sees this user's presence and profile (`None` keeps a setting).
    pub(crate) async fn set_privacy(
        &self,
        presence: Option<Visibility>,
        profile: Option<Visibility>,
    ) -> Result<Settings> {
        self.update_settings(pb::UpdateSettingsRequest {
            presence: presence.map(to_wire),
            profile: profile.map(to_wire),
            ..Default::default()
        })
        .await
    }

    /// The profiles of `peers` (phone numbers or user ids) this user may see; the others are
    /// left out.
    pub(crate) async fn profiles(&self, peers: Vec<String>) -> Result<Vec<ProfileInfo>> {
        let user_ids = self.resolve_all(&peers).await?;
        let request = pb::GetProfilesRequest { user_ids };
        let answer = self.gateway.unary(Api::get_profiles, request).await?;
        Ok(answer
            .profiles
            .into_iter()
            .map(|p| ProfileInfo {
                user_id: p.user_id,
                name: p.name,
                about: p.about,
            })
            .collect())
    }

    /// Sets this account's profile photo from a JPEG, PNG or WebP file (at most 10 MiB). The
    /// server checks, crops and resizes it; contacts see it as the privacy settings allow.
    pub(crate) async fn set_profile_photo(&self, path: String) -> Result<String> {
        const MAX: u64 = 10 * 1024 * 1024;
        let meta = tokio::fs::metadata(&path).await?;
        if meta.len() > MAX {
            return Err(ClientError::InvalidInput {
                message: "a profile photo is at most 10 MiB".to_owned(),
            });
        }
        let bytes = tokio::fs::read(&path).await?;
        let messages: Vec<media::SetProfilePhotoRequest> = bytes
            .chunks(PHOTO_CHUNK)
            .map(|c| media::SetProfilePhotoRequest { data: c.to_vec() })
            .collect();
        let answer = self.gateway.unary(Api::set_profile_photo, messages).await?;
        Ok(answer.version)
    }

    /// `peer`'s profile photo (a square JPEG: 640 px, or 96 px with `small`), when they allow
    /// this account to see it. NotFound when there is none to see.
    pub(crate) async fn profile_photo(&self, peer: String, small: bool) -> Result<Vec<u8>> {
        let user_id = self.resolve(&peer).await?;
        let size = if small {
            media::PhotoSize::Small
        } else {
            media::PhotoSize::Large
        };
        let request = media::GetProfilePhotoRequest {
            user_id,
            size: size as i32,
        };
        let answer = self.gateway.unary(Api::get_profile_photo, request).await?;
        Ok(answer.jpeg)
    }

    /// Removes this account's profile photo.
    pub(crate) async fn delete_profile_photo(&self) -> Result<()> {
        self.gateway
            .unary(
                Api::delete_profile_photo,
                media::DeleteProfilePhotoRequest {},
            )
            .await?;
        Ok(())
    }

    async fn update_settings(&self, update: pb::UpdateSettingsRequest) -> Result<Settings> {
        let settings = self.gateway.unary(Api::update_settings, update).await?;
        Ok(settings.into())
    }
}
