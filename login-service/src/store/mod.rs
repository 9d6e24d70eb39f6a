//! The login service's storage: accounts, devices, sessions, refresh tokens, the key directory
//! (prekeys) and contacts.
//!
//! [`LoginStore`] is the only way the service touches data. Each method is one whole operation
//! (its atomicity is part of its contract), so a document store can implement it as well as SQL:
//! nothing about tables, statements or transactions leaks out.

use std::collections::HashSet;

use async_trait::async_trait;

mod mongo;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

pub use mongo::{
    COLLECTIONS as MONGO_COLLECTIONS, DEFAULT_DATABASE as MONGO_DEFAULT_DATABASE, MongoLoginStore,
};
pub use sqlite::SqliteStore;

pub use juntos_store::StoreError;

/// An account: one phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Random 128-bit id, hex.
    pub user_id: String,
    /// The phone number, normalised E.164.
    pub phone: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A device as it is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDevice {
    /// Random 128-bit id, hex.
    pub device_id: String,
    /// The account it belongs to.
    pub user_id: String,
    /// Human-readable name, already validated.
    pub name: String,
    /// `juntos.login.v1.Platform` as its wire number.
    pub platform: i32,
    /// Ed25519 identity public key (32 bytes).
    pub identity_signing_key: Vec<u8>,
    /// X25519 identity public key (32 bytes).
    pub identity_dh_key: Vec<u8>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

impl NewDevice {
    /// The [`Device`] this is once registered: the same fields, not removed.
    pub fn registered(&self) -> Device {
        Device {
            device_id: self.device_id.clone(),
            user_id: self.user_id.clone(),
            name: self.name.clone(),
            platform: self.platform,
            identity_signing_key: self.identity_signing_key.clone(),
            identity_dh_key: self.identity_dh_key.clone(),
            created_at_ms: self.created_at_ms,
            removed_at_ms: None,
        }
    }
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Random 128-bit id, hex.
    pub device_id: String,
    /// The account it belongs to.
    pub user_id: String,
    /// Human-readable name.
    pub name: String,
    /// `juntos.login.v1.Platform` as its wire number.
    pub platform: i32,
    /// Ed25519 identity public key (32 bytes).
    pub identity_signing_key: Vec<u8>,
    /// X25519 identity public key (32 bytes).
    pub identity_dh_key: Vec<u8>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When the device was signed out or removed, Unix milliseconds.
    pub removed_at_ms: Option<i64>,
}

/// Outcome of [`LoginStore::add_device`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddDeviceOutcome {
    /// The device is registered.
    Added(Device),
    /// The account already has the maximum number of active devices; nothing was written.
    TooManyDevices,
}

/// A new session with its first refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Random 128-bit id, hex.
    pub session_id: String,
    /// The account.
    pub user_id: String,
    /// The device the session belongs to.
    pub device_id: String,
    /// SHA-256 (hex) of the first refresh token.
    pub refresh_token_hash: String,
    /// When the first refresh token expires, Unix milliseconds.
    pub refresh_expires_at_ms: i64,
    /// Unix milliseconds.
    pub created_at_ms: i64,
}

/// A session: one device's refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random 128-bit id, hex.
    pub session_id: String,
    /// The account.
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// When the session was revoked, Unix milliseconds.
    pub revoked_at_ms: Option<i64>,
    /// Why it was revoked.
    pub revoke_reason: Option<RevokeReason>,
}

impl Session {
    /// Whether the session is still usable.
    pub fn is_active(&self) -> bool {
        self.revoked_at_ms.is_none()
    }
}

/// Why a session was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    /// The device signed out (or was removed).
    SignOut,
    /// A rotated refresh token of the session was presented again.
    RefreshTokenReused,
}

impl RevokeReason {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignOut => "sign_out",
            Self::RefreshTokenReused => "refresh_token_reused",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sign_out" => Some(Self::SignOut),
            "refresh_token_reused" => Some(Self::RefreshTokenReused),
            _ => None,
        }
    }
}

/// Outcome of [`LoginStore::rotate_refresh_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The old token is now rotated and the new one is valid; the (active) session.
    Rotated {
        /// The session the tokens belong to.
        session: Session,
    },
    /// The old token had already been rotated: the session is now revoked.
    Reused {
        /// The session that was revoked.
        session_id: String,
    },
    /// The token is unknown, expired, or its session is revoked; nothing was written.
    Invalid,
}

/// A revoked session, for the gateway's revocation set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// The revoked session.
    pub session_id: String,
    /// When it was revoked, Unix milliseconds.
    pub revoked_at_ms: i64,
}

/// A device's signed prekey: a medium-term X25519 key signed by its Ed25519 identity key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPrekey {
    /// The device's id for the key.
    pub key_id: u32,
    /// X25519 public key (32 bytes).
    pub public_key: Vec<u8>,
    /// Ed25519 signature (64 bytes), already verified by the service.
    pub signature: Vec<u8>,
}

/// A single-use X25519 prekey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneTimePrekey {
    /// The device's id for the key.
    pub key_id: u32,
    /// X25519 public key (32 bytes).
    pub public_key: Vec<u8>,
}

/// What a sender needs to start a session with one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The device.
    pub device_id: String,
    /// Ed25519 identity public key (32 bytes).
    pub identity_signing_key: Vec<u8>,
    /// X25519 identity public key (32 bytes).
    pub identity_dh_key: Vec<u8>,
    /// The device's current signed prekey.
    pub signed_prekey: SignedPrekey,
    /// A one-time prekey, now removed from the store; `None` when the device had none left.
    pub one_time_prekey: Option<OneTimePrekey>,
}

/// The active devices of one existing user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDevices {
    /// The user.
    pub user_id: String,
    /// Its active (not removed) devices, oldest first; possibly none.
    pub devices: Vec<Device>,
}

/// A user recorded as someone's contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The contact's user id.
    pub user_id: String,
    /// The E.164 number the contact was found by.
    pub phone: String,
    /// When the contact was first recorded, Unix milliseconds.
    pub added_at_ms: i64,
}

/// Who may see one aspect (presence, or profile) of a user, among their mutual contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Every mutual contact (the default).
    #[default]
    Contacts,
    /// Nobody.
    Nobody,
}

impl Visibility {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contacts => "contacts",
            Self::Nobody => "nobody",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "contacts" => Some(Self::Contacts),
            "nobody" => Some(Self::Nobody),
            _ => None,
        }
    }
}

/// A user's profile and privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// Display name, already validated; empty when not set.
    pub name: String,
    /// About line, already validated; empty when not set.
    pub about: String,
    /// Who sees the user's presence.
    pub presence: Visibility,
    /// Who sees `name` and `about`.
    pub profile: Visibility,
}

/// A change to [`Settings`]: each `Some` replaces the stored value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettingsUpdate {
    /// New name.
    pub name: Option<String>,
    /// New about line.
    pub about: Option<String>,
    /// New presence visibility.
    pub presence: Option<Visibility>,
    /// New profile visibility.
    pub profile: Option<Visibility>,
}

impl SettingsUpdate {
    /// `settings` with this update applied.
    pub fn apply(&self, mut settings: Settings) -> Settings {
        if let Some(name) = &self.name {
            settings.name.clone_from(name);
        }
        if let Some(about) = &self.about {
            settings.about.clone_from(about);
        }
        settings.presence = self.presence.unwrap_or(settings.presence);
        settings.profile = self.profile.unwrap_or(settings.profile);
        settings
    }
}

/// `items` with repeats dropped, each kept where it first appears: the order in which
/// [`LoginStore::devices_of`], [`LoginStore::users_by_phones`], [`LoginStore::mutual_contacts`]
/// and [`LoginStore::settings_of`] answer.
pub(crate) fn unique_in_order(items: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    items
        .iter()
        .filter(|item| seen.insert(item.as_str()))
        .cloned()
        .collect()
}

/// Storage of accounts, devices, sessions, refresh tokens, prekeys, contacts and settings.
#[async_trait]
pub trait LoginStore: Send + Sync {
    /// Returns the account of `phone`, creating it with `new_user_id` at `now_ms` when none
    /// exists; `true` when it was created. Atomic on the phone number: two concurrent calls for
    /// the same phone yield the same account, exactly one of them with `true`.
    async fn find_or_create_account(
        &self,
        phone: &str,
        new_user_id: &str,
        now_ms: i64,
    ) -> Result<(Account, bool), StoreError>;

    /// The account `user_id`, if it exists.
    async fn account(&self, user_id: &str) -> Result<Option<Account>, StoreError>;

    /// Registers `device` unless its account already has `max_devices` active (not removed)
    /// devices. The count check and the insert are one atomic step.
    async fn add_device(
        &self,
        device: NewDevice,
        max_devices: u32,
    ) -> Result<AddDeviceOutcome, StoreError>;

    /// The device `device_id` (removed or not), if it exists.
    async fn device(&self, device_id: &str) -> Result<Option<Device>, StoreError>;

    /// The account's active (not removed) devices, oldest first.
    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, StoreError>;

    /// Creates a session with its first refresh token, in one atomic step.
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError>;

    /// The session `session_id` (revoked or not), if it exists.
    async fn session(&self, session_id: &str) -> Result<Option<Session>, StoreError>;

    /// Exchanges the refresh token hashed `old_hash` for one hashed `new_hash` expiring at
    /// `new_expires_at_ms`, atomically:
    /// * unknown token, revoked session, or token expired at `now_ms`: [`RotateOutcome::Invalid`];
    /// * token already rotated: the session is revoked ([`RevokeReason::RefreshTokenReused`]) at
    ///   `now_ms` in the same step, and its device removed with its prekeys (a device lives as
    ///   long as its one session), [`RotateOutcome::Reused`];
    /// * otherwise the old token is marked rotated at `now_ms`, the new one stored,
    ///   [`RotateOutcome::Rotated`].
    ///
    /// Of two concurrent calls with the same old token, one rotates and the other sees reuse.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError>;

    /// Marks the device removed at `now_ms`, revokes every active session of it with `reason`
    /// and deletes its prekeys (signed and one-time), atomically. Returns the ids of the sessions
    /// this call revoked (empty when the device is unknown, belongs to another user, or was
    /// already signed out; nothing is written for a device of another user).
    async fn revoke_device_sessions(
        &self,
        user_id: &str,
        device_id: &str,
        now_ms: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError>;

    /// Sessions revoked at or after `since_ms`, oldest revocation first.
    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>, StoreError>;

    // === key directory ===

    /// Stores `prekey` as the signed prekey of `device_id` (replacing any previous one), uploaded
    /// at `now_ms`. The device must exist and be active: `false` (and nothing written) otherwise,
    /// checked in the same atomic step as the write.
    async fn set_signed_prekey(
        &self,
        device_id: &str,
        prekey: SignedPrekey,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// The signed prekey of `device_id`, if one is published.
    async fn signed_prekey(&self, device_id: &str) -> Result<Option<SignedPrekey>, StoreError>;

    /// Adds `prekeys` to the one-time prekeys of `device_id`, uploaded at `now_ms`, then drops
    /// the oldest until at most `max_stored` remain; all in one atomic step. Returns how many the
    /// device now has, or `None` (nothing written) when the device is unknown or removed.
    ///
    /// "Oldest" is upload order: earlier calls first, and within one call the order of
    /// `prekeys`. A `key_id` the device already has replaces the stored key and counts as newly
    /// uploaded (the client's latest upload is the key it holds the private half of); within one
    /// call the last of a repeated `key_id` wins.
    async fn add_one_time_prekeys(
        &self,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        max_stored: u32,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError>;

    /// How many one-time prekeys `device_id` has stored (0 for an unknown device).
    async fn one_time_prekey_count(&self, device_id: &str) -> Result<u32, StoreError>;

    /// A bundle for every active device of `user_id` that has a signed prekey (a device without
    /// one cannot be messaged yet and is left out), except `except_device_id` (the fetching
    /// device itself, which keeps its keys), oldest device first, each with the device's oldest
    /// one-time prekey, which is deleted in the same atomic step: under any number of concurrent
    /// calls, each one-time prekey is handed out at most once. A device with none left gets a
    /// bundle without one. `None` when the user does not exist.
    async fn take_bundles(
        &self,
        user_id: &str,
        except_device_id: Option<&str>,
    ) -> Result<Option<Vec<PrekeyBundle>>, StoreError>;

    /// The active devices (with their identity keys) of each of `user_ids` that exists, in the
    /// order of `user_ids`, once per user even when repeated. Unknown users are left out; a user
    /// without active devices is listed with none.
    async fn devices_of(&self, user_ids: &[String]) -> Result<Vec<UserDevices>, StoreError>;

    // === contacts ===

    /// The `(phone, user_id)` of each of `phones` (normalised E.164) that is an account's number,
    /// in the order of `phones`, once per phone even when repeated. Unknown numbers are left out.
    async fn users_by_phones(&self, phones: &[String])
    -> Result<Vec<(String, String)>, StoreError>;

    /// Records each `(user_id, phone)` of `contacts` as a contact of `owner_user_id`, added at
    /// `now_ms`. A contact already recorded keeps its `added_at_ms` and takes the new phone.
    /// Contacts that are not accounts, and `owner_user_id` itself, are skipped; nothing is
    /// written when `owner_user_id` is not an account. One atomic step.
    async fn add_contacts(
        &self,
        owner_user_id: &str,
        contacts: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The contacts of `owner_user_id`, in the order they were first added (then by user id).
    async fn contacts(&self, owner_user_id: &str) -> Result<Vec<Contact>, StoreError>;

    /// Those of `candidates` that are mutual contacts of `user_id` (each has the other as a
    /// contact), in the order of `candidates`, once each.
    async fn mutual_contacts(
        &self,
        user_id: &str,
        candidates: &[String],
    ) -> Result<Vec<String>, StoreError>;

    // === profile and privacy ===

    /// The settings of each of `user_ids` that is an account (defaults for one that never
    /// changed them), in the order of `user_ids`, once each.
    async fn settings_of(&self, user_ids: &[String])
    -> Result<Vec<(String, Settings)>, StoreError>;

    /// Applies `update` to the settings of `user_id` at `now_ms` in one atomic step and returns
    /// the settings now in force; `None` (nothing written) when `user_id` is not an account.
    async fn update_settings(
        &self,
        user_id: &str,
        update: SettingsUpdate,
        now_ms: i64,
    ) -> Result<Option<Settings>, StoreError>;
}
