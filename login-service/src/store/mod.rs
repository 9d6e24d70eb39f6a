//! The login service's storage: accounts, devices, sessions and refresh tokens.
//!
//! [`LoginStore`] is the only way the service touches data. Each method is one whole operation
//! (its atomicity is part of its contract), so a document store can implement it as well as SQL:
//! nothing about tables, statements or transactions leaks out.

use async_trait::async_trait;

mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

pub use sqlite::SqliteStore;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The SQLite database failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database schema is newer than this binary knows.
    #[error("database schema version {found} is newer than the latest known {latest}")]
    SchemaTooNew {
        /// The version found in the database.
        found: i64,
        /// The latest version this binary has a migration for.
        latest: i64,
    },
    /// A stored value is not what the schema promises.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The blocking storage task panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Any other backend's failure.
    #[error("storage backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

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

/// Storage of accounts, devices, sessions and refresh tokens.
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
    ///   `now_ms` in the same step, [`RotateOutcome::Reused`];
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

    /// Marks the device removed at `now_ms` and revokes every active session of it with
    /// `reason`, atomically. Returns the ids of the sessions this call revoked (empty when the
    /// device is unknown, belongs to another user, or was already signed out).
    async fn revoke_device_sessions(
        &self,
        user_id: &str,
        device_id: &str,
        now_ms: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError>;

    /// Sessions revoked at or after `since_ms`, oldest revocation first.
    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>, StoreError>;
}
