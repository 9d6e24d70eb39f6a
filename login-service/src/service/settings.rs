//! Profile (name, about) and privacy settings, and the visibility rule every other service asks
//! about: a user's presence or profile is seen by the user, and by mutual contacts (each found
//! the other with `ResolvePhones`) when the owner's setting for it is "contacts".

use juntos_proto::login::v1::{
    Aspect, GetProfilesResponse, Profile, Settings as WireSettings, UpdateSettingsRequest,
    Visibility as WireVisibility, VisibleToResponse,
};
use juntos_proto::meta::Caller;

use super::{LoginService, check_batch};
use crate::error::{Error, Result};
use crate::store::{Settings, SettingsUpdate, Visibility};

/// Longest profile name, in characters and in bytes.
pub const MAX_NAME_CHARS: usize = 64;
const MAX_NAME_BYTES: usize = 256;
/// Longest about text, in characters and in bytes.
pub const MAX_ABOUT_CHARS: usize = 140;
const MAX_ABOUT_BYTES: usize = 560;
/// Most user ids one `Directory.GetProfiles` call may ask about.
pub const MAX_PROFILE_USERS: usize = 256;
/// Most owners one `LoginInternal.VisibleTo` call may ask about.
pub const MAX_VISIBLE_TO_OWNERS: usize = 1_000;

impl LoginService {
    /// `Login.GetSettings`: the caller's own settings.
    pub async fn get_settings(&self, caller: &Caller) -> Result<WireSettings> {
        self.require_active_session(caller).await?;
        let settings = self
            .store
            .settings_of(std::slice::from_ref(&caller.user_id))
            .await?
            .pop()
            .map(|(_, settings)| settings)
            .ok_or(Error::Internal("a signed-in user has no account"))?;
        Ok(to_wire(settings))
    }

    /// `Login.UpdateSettings`: validates every given field, then applies them in one step.
    pub async fn update_settings(
        &self,
        caller: &Caller,
        request: UpdateSettingsRequest,
    ) -> Result<WireSettings> {
        self.require_active_session(caller).await?;
        let update = SettingsUpdate {
            name: request
                .name
                .map(|n| profile_text(&n, MAX_NAME_CHARS, MAX_NAME_BYTES, "name"))
                .transpose()?,
            about: request
                .about
                .map(|a| profile_text(&a, MAX_ABOUT_CHARS, MAX_ABOUT_BYTES, "about"))
                .transpose()?,
            presence: request.presence.map(from_wire).transpose()?,
            profile: request.profile.map(from_wire).transpose()?,
        };
        let settings = self
            .store
            .update_settings(&caller.user_id, update, self.clock.now_ms())
            .await?
            .ok_or(Error::Internal("a signed-in user has no account"))?;
        tracing::debug!(user_id = %caller.user_id, "settings updated");
        Ok(to_wire(settings))
    }

    /// `Directory.GetProfiles`: the profiles among `user_ids` the caller may see.
    pub async fn get_profiles(
        &self,
        caller: &Caller,
        user_ids: Vec<String>,
    ) -> Result<GetProfilesResponse> {
        self.require_active_session(caller).await?;
        check_batch(user_ids.len(), MAX_PROFILE_USERS, "user ids")?;
        let visible = self
            .visible(&caller.user_id, &user_ids, Aspect::Profile)
            .await?;
        let profiles = self
            .store
            .settings_of(&visible)
            .await?
            .into_iter()
            .map(|(user_id, s)| Profile {
                user_id,
                name: s.name,
                about: s.about,
            })
            .collect();
        Ok(GetProfilesResponse { profiles })
    }

    /// `LoginInternal.VisibleTo`: for the chat service (presence); no caller check.
    pub async fn visible_to(
        &self,
        viewer_user_id: &str,
        owner_user_ids: &[String],
        aspect: i32,
    ) -> Result<VisibleToResponse> {
        check_batch(owner_user_ids.len(), MAX_VISIBLE_TO_OWNERS, "user ids")?;
        let aspect = match Aspect::try_from(aspect) {
            Ok(aspect @ (Aspect::Presence | Aspect::Profile)) => aspect,
            _ => return Err(Error::Internal("VisibleTo needs a known aspect")),
        };
        Ok(VisibleToResponse {
            owner_user_ids: self.visible(viewer_user_id, owner_user_ids, aspect).await?,
        })
    }

    /// Those of `owners` (each once, in order) whose `aspect` `viewer` may see: the viewer
    /// itself, and mutual contacts whose setting for `aspect` is [`Visibility::Contacts`].
    /// Unknown users are never visible.
    async fn visible(
        &self,
        viewer: &str,
        owners: &[String],
        aspect: Aspect,
    ) -> Result<Vec<String>> {
        let mutual: std::collections::HashSet<String> = self
            .store
            .mutual_contacts(viewer, owners)
            .await?
            .into_iter()
            .collect();
        let candidates: Vec<String> = owners
            .iter()
            .filter(|o| *o == viewer || mutual.contains(*o))
            .cloned()
            .collect();
        Ok(self
            .store
            .settings_of(&candidates)
            .await?
            .into_iter()
            .filter(|(owner, settings)| {
                let setting = match aspect {
                    Aspect::Profile => settings.profile,
                    _ => settings.presence,
                };
                owner == viewer || setting == Visibility::Contacts
            })
            .map(|(owner, _)| owner)
            .collect())
    }
}

/// A profile text, trimmed, within `max_chars` characters and `max_bytes` bytes, without
/// control characters.
fn profile_text(
    text: &str,
    max_chars: usize,
    max_bytes: usize,
    what: &'static str,
) -> Result<String> {
    let text = text.trim();
    if text.len() > max_bytes || text.chars().count() > max_chars {
        return Err(Error::InvalidProfile(match what {
            "name" => "the name is at most 64 characters",
            _ => "the about text is at most 140 characters",
        }));
    }
    if text.chars().any(char::is_control) {
        return Err(Error::InvalidProfile(
            "profile texts cannot hold control characters or line breaks",
        ));
    }
    Ok(text.to_owned())
}

fn from_wire(visibility: i32) -> Result<Visibility> {
    match WireVisibility::try_from(visibility) {
        Ok(WireVisibility::Unspecified | WireVisibility::Contacts) => Ok(Visibility::Contacts),
        Ok(WireVisibility::Nobody) => Ok(Visibility::Nobody),
        Err(_) => Err(Error::InvalidPrivacy),
    }
}

fn to_wire(settings: Settings) -> WireSettings {
    let wire = |v: Visibility| match v {
        Visibility::Contacts => WireVisibility::Contacts,
        Visibility::Nobody => WireVisibility::Nobody,
    } as i32;
    WireSettings {
        name: settings.name,
        about: settings.about,
        presence: wire(settings.presence),
        profile: wire(settings.profile),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_texts_are_trimmed_and_bounded() {
        assert_eq!(
            profile_text("  Ana  ", MAX_NAME_CHARS, MAX_NAME_BYTES, "name").expect("ok"),
            "Ana"
        );
        let long = "ñ".repeat(MAX_NAME_CHARS);
        assert!(profile_text(&long, MAX_NAME_CHARS, MAX_NAME_BYTES, "name").is_ok());
        let longer = "ñ".repeat(MAX_NAME_CHARS + 1);
        assert!(matches!(
            profile_text(&longer, MAX_NAME_CHARS, MAX_NAME_BYTES, "name"),
            Err(Error::InvalidProfile(_))
        ));
        // 64 characters but far more bytes (each emoji with modifiers is many bytes).
        let heavy = "👍🏽".repeat(40);
        assert!(matches!(
            profile_text(&heavy, MAX_NAME_CHARS, MAX_NAME_BYTES, "name"),
            Err(Error::InvalidProfile(_))
        ));
        assert!(matches!(
            profile_text("two\nlines", MAX_ABOUT_CHARS, MAX_ABOUT_BYTES, "about"),
            Err(Error::InvalidProfile(_))
        ));
    }

    #[test]
    fn unknown_visibilities_are_refused() {
        assert_eq!(from_wire(0).expect("default"), Visibility::Contacts);
        assert_eq!(from_wire(2).expect("nobody"), Visibility::Nobody);
        assert!(matches!(from_wire(7), Err(Error::InvalidPrivacy)));
    }
}
