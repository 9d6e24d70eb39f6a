//! Profile, privacy and presence: this user's name, about line and who may see them, and other
//! users' profiles and presence as the server lets this user see them (mutual contacts only,
//! and only as each owner allows).

use juntos_proto::chat::v1 as chat;
use juntos_proto::login::v1 as pb;

use crate::Client;
use crate::error::{ClientError, Result};
use crate::records::{PresenceInfo, ProfileInfo, Settings, Visibility};

/// Most users one presence or profile question, or one follow list, may name (the server's cap).
pub(crate) const MAX_USERS: usize = 256;

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

impl Client {
    /// The user ids `peers` name (phone numbers or user ids), at most [`MAX_USERS`].
    async fn resolve_all(&self, peers: &[String]) -> Result<Vec<String>> {
        if peers.len() > MAX_USERS {
            return Err(ClientError::InvalidInput {
                message: format!("at most {MAX_USERS} users at a time"),
            });
        }
        let mut ids = Vec::with_capacity(peers.len());
        for peer in peers {
            ids.push(self.resolve(peer).await?);
        }
        Ok(ids)
    }

    /// The followed user ids, for the live connection to send.
    pub(crate) fn followed(&self) -> Vec<String> {
        self.messaging.followed()
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// This user's profile and privacy settings.
    pub async fn settings(&self) -> Result<Settings> {
        let api = self.api.clone();
        let settings = self
            .authorized(|token| {
                let api = api.clone();
                async move { api.get_settings(&token).await }
            })
            .await?;
        Ok(settings.into())
    }

    /// Sets the profile's name and about line (`None` keeps a field; an empty text clears it).
    /// Names are at most 64 characters, about lines 140, neither with line breaks.
    pub async fn set_profile(
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
    pub async fn set_privacy(
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
    pub async fn profiles(&self, peers: Vec<String>) -> Result<Vec<ProfileInfo>> {
        let user_ids = self.resolve_all(&peers).await?;
        let api = self.api.clone();
        let profiles = self
            .authorized(|token| {
                let (api, user_ids) = (api.clone(), user_ids.clone());
                async move { api.get_profiles(&token, user_ids).await }
            })
            .await?;
        Ok(profiles
            .into_iter()
            .map(|p| ProfileInfo {
                user_id: p.user_id,
                name: p.name,
                about: p.about,
            })
            .collect())
    }

    /// The presence of `peers` (phone numbers or user ids) this user may see; the others are
    /// left out. A Network error while the server's presence store is down.
    pub async fn presence(&self, peers: Vec<String>) -> Result<Vec<PresenceInfo>> {
        let user_ids = self.resolve_all(&peers).await?;
        let api = self.api.clone();
        let users = self
            .authorized(|token| {
                let (api, user_ids) = (api.clone(), user_ids.clone());
                async move { api.get_presence(&token, user_ids).await }
            })
            .await?;
        Ok(users.into_iter().map(PresenceInfo::from).collect())
    }

    /// Follows the presence of `peers` (replacing any earlier list; empty stops): while the
    /// live connection is up (see `start`), each change arrives as `Event::PresenceChanged`,
    /// starting with the current presence of each one this user may see.
    pub async fn follow_presence(&self, peers: Vec<String>) -> Result<()> {
        let user_ids = self.resolve_all(&peers).await?;
        self.messaging.set_followed(user_ids);
        Ok(())
    }
}

impl Client {
    async fn update_settings(&self, update: pb::UpdateSettingsRequest) -> Result<Settings> {
        let api = self.api.clone();
        let settings = self
            .authorized(|token| {
                let (api, update) = (api.clone(), update.clone());
                async move { api.update_settings(&token, update).await }
            })
            .await?;
        Ok(settings.into())
    }
}

/// The frame that tells the server whom to follow.
pub(crate) fn subscribe_frame(user_ids: Vec<String>) -> chat::ClientFrame {
    chat::ClientFrame {
        frame: Some(chat::client_frame::Frame::SubscribePresence(
            chat::SubscribePresence { user_ids },
        )),
    }
}
