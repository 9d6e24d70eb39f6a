//! [`Client`]: the object apps hold, exported through uniffi.
//!
//! Token handling: every authenticated call gets a fresh-enough access token first (refreshing
//! when it expires within [`REFRESH_MARGIN_MS`] by the local clock), and when the server still
//! answers TOKEN_EXPIRED (or INVALID_TOKEN, e.g. after a signing-key change) the call refreshes
//! once and retries. Refreshes are serialized by one async lock and run in their own task, so
//! a refresh token is never presented twice: not by two concurrent calls, and not by a caller
//! that gave up mid-refresh (which would otherwise lose the rotated token and later present
//! the old one, tripping the server's reuse detection).
//!
//! One exception to refreshing lazily: the live connection (`messaging::receive`) refreshes
//! ahead of expiry and makes one call with the new token on its channel, because the gateway
//! ends a stream whose token expired unless it has seen a newer token of the session.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use juntos_clock::{SharedClock, SystemClock};
use juntos_proto::error::{reason, reason_of};
use juntos_proto::login::v1 as pb;
use rand::rngs::OsRng;
use tonic::{Code, Status};

use crate::api::Api;
use crate::config::ClientConfig;
use crate::error::{ClientError, Result};
use crate::identity::IdentityKeys;
use crate::records::{Account, CodeRequest, Me, SessionInfo};
use crate::session::{Session, Tokens};
use crate::store::Store;

/// Refresh the access token when it expires within this many milliseconds.
pub const REFRESH_MARGIN_MS: i64 = 60_000;

/// The name of the database file inside the client's home directory.
pub const DATABASE_FILE: &str = "client.db";

/// A Juntos client: one device, its local state in `<home_dir>/client.db`, and its connection to
/// one server (the gateway).
#[derive(uniffi::Object)]
pub struct Client {
    pub(crate) api: Arc<Api>,
    pub(crate) store: Arc<Store>,
    pub(crate) clock: SharedClock,
    /// Where the database lives; downloads go to `media/` in it unless told otherwise.
    pub(crate) home_dir: PathBuf,
    /// Held for the whole of every refresh (see the module doc).
    refresh_lock: Arc<tokio::sync::Mutex<()>>,
    /// Messaging: the app's listener, the background tasks and their wake-ups.
    pub(crate) messaging: crate::messaging::State,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// A client for the gateway at `server_url` (`https://host[:port]`, trusting the web PKI
    /// roots; or `http://host:port` for a server on this machine) keeping its state in
    /// `home_dir` (created if missing). Does not touch the network: it connects on first use.
    #[uniffi::constructor]
    pub fn new(server_url: String, home_dir: String) -> Result<Arc<Self>> {
        Self::with_clock(&server_url, home_dir, Arc::new(SystemClock))
    }

    /// A client as `config` says: [`Client::new`] plus the settings a self-hosted server needs
    /// (an extra CA or pinned certificate). A PEM that holds no valid certificate is
    /// [`ClientError::InvalidInput`]. Does not touch the network.
    #[uniffi::constructor]
    pub fn with_config(config: ClientConfig) -> Result<Arc<Self>> {
        Self::with_config_and_clock(config, Arc::new(SystemClock))
    }

    /// Asks the server to text a sign-in code to `phone` (E.164, e.g. "+12015550123").
    pub async fn request_code(&self, phone: String) -> Result<CodeRequest> {
        let response = self.api.request_code(phone.trim().to_owned()).await?;
        Ok(CodeRequest::from(response))
    }

    /// Signs this device in with the `code` texted to `phone`, registering it as `device_name`.
    ///
    /// The device's identity keys are made on the first try and kept, so a retried sign-in
    /// presents the same keys.
    pub async fn sign_in(
        &self,
        phone: String,
        code: String,
        device_name: String,
    ) -> Result<Account> {
        if self.store.session()?.is_some() {
            return Err(ClientError::InvalidInput {
                message: "already signed in: sign out first".to_owned(),
            });
        }
        // Stored before the call: the server must never learn a key this device could lose.
        let keys = self
            .store
            .identity_or_insert(|| IdentityKeys::generate(&mut OsRng))?;
        let phone = phone.trim().to_owned();
        let request = pb::SignInRequest {
            phone: phone.clone(),
            code: code.trim().to_owned(),
            device: Some(pb::DeviceInfo {
                name: device_name.trim().to_owned(),
                platform: platform().into(),
                identity_signing_key: keys.signing_public().to_vec(),
                identity_dh_key: keys.dh_public().to_vec(),
            }),
        };
        let response = self.api.sign_in(request).await?;
        let tokens = response.tokens.ok_or_else(|| ClientError::Server {
            message: "sign-in answered without tokens".to_owned(),
        })?;
        let session = Session {
            user_id: response.user_id,
            device_id: response.device_id,
            phone,
            tokens: Tokens::from(tokens),
        };
        // A new device id: sessions, prekeys and device lists of an earlier sign-in are void;
        // an earlier account's history is not this account's to see.
        let other_account =
            crate::store::messaging::history_owner_differs(&self.store, &session.user_id)?;
        self.store.write(|tx| tx.wipe_messaging(other_account))?;
        self.store.save_session(&session)?;
        tracing::info!(user_id = %session.user_id, device_id = %session.device_id, "signed in");
        // Others can only start sessions with this device once its prekeys are published;
        // `start` retries if this fails.
        if let Err(e) = self.ensure_prekeys().await {
            tracing::warn!(error = %e, "could not publish prekeys yet");
        }
        Ok(Account {
            user_id: session.user_id,
            device_id: session.device_id,
            new_account: response.new_account,
        })
    }

    /// Signs this device out: the server revokes its session and removes the device, then the
    /// local session and identity keys are deleted. A session the server had already ended
    /// counts as signed out. On a network error nothing local changes, so it can be retried.
    pub async fn sign_out(&self) -> Result<()> {
        let api = self.api.clone();
        match self
            .authorized(|token| signed_out(api.clone(), token))
            .await
        {
            Ok(()) | Err(ClientError::SessionEnded) => {}
            Err(e) => return Err(e),
        }
        // The device is gone: nothing of its messaging may outlive it on this database.
        self.stop();
        self.store.write(|tx| tx.wipe_messaging(true))?;
        self.store.clear_session()?;
        self.store.delete_identity()?;
        tracing::info!("signed out");
        Ok(())
    }

    /// The account, this device and the account's devices, from the server.
    pub async fn me(&self) -> Result<Me> {
        let api = self.api.clone();
        let response = self
            .authorized(|token| {
                let api = api.clone();
                async move { api.me(&token).await }
            })
            .await?;
        Ok(Me::from(response))
    }

    /// Whether this device has a session (local state; no network).
    pub fn is_signed_in(&self) -> bool {
        self.session().is_some()
    }

    /// The local session's user and device, if signed in (no network).
    pub fn session(&self) -> Option<SessionInfo> {
        match self.store.session() {
            Ok(session) => session.map(|s| SessionInfo {
                user_id: s.user_id,
                device_id: s.device_id,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not read the session");
                None
            }
        }
    }
}

// === impl Client (Rust only) ===

impl Client {
    /// [`Client::new`] with a given clock (tests move it to exercise token expiry).
    pub fn with_clock(
        server_url: &str,
        home_dir: impl Into<PathBuf>,
        clock: SharedClock,
    ) -> Result<Arc<Self>> {
        Self::open(server_url, None, home_dir.into(), clock)
    }

    /// [`Client::with_config`] with a given clock.
    pub fn with_config_and_clock(config: ClientConfig, clock: SharedClock) -> Result<Arc<Self>> {
        Self::open(
            &config.server_url,
            config.extra_ca_pem.as_deref(),
            config.home_dir.into(),
            clock,
        )
    }

    fn open(
        server_url: &str,
        extra_ca_pem: Option<&str>,
        home_dir: PathBuf,
        clock: SharedClock,
    ) -> Result<Arc<Self>> {
        if home_dir.as_os_str().is_empty() {
            return Err(ClientError::InvalidInput {
                message: "home directory is empty".to_owned(),
            });
        }
        let api = Api::new(server_url, extra_ca_pem)?;
        create_private_dir(&home_dir)?;
        let store = Store::open(&home_dir.join(DATABASE_FILE))?;
        Ok(Arc::new(Self {
            api: Arc::new(api),
            store: Arc::new(store),
            clock,
            home_dir,
            refresh_lock: Arc::new(tokio::sync::Mutex::new(())),
            messaging: crate::messaging::State::default(),
        }))
    }

    /// Runs `call` with an access token; on TOKEN_EXPIRED refreshes once and runs it again. A
    /// session-ending answer clears the local session.
    pub(crate) async fn authorized<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        match self.authorized_status(call).await? {
            Ok(answer) => Ok(answer),
            Err(status) => Err(failure(&self.store, &status)),
        }
    }

    /// [`Client::authorized`], but a failed call's status comes back as it is (the outer error
    /// is for local failures, refreshes that failed, and ended sessions), for callers that read
    /// the status details.
    pub(crate) async fn authorized_status<T, F, Fut>(&self, call: F) -> Result<Result<T, Status>>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let token = self.access_token().await?;
        let status = match call(token.clone()).await {
            Ok(answer) => return Ok(Ok(answer)),
            Err(status) => status,
        };
        let status = if needs_refresh(&status) {
            let token = self.refresh(&token).await?;
            match call(token).await {
                Ok(answer) => return Ok(Ok(answer)),
                Err(status) => status,
            }
        } else {
            status
        };
        let error = ClientError::from(&status);
        if error.ends_session() {
            return Err(failure(&self.store, &status));
        }
        Ok(Err(status))
    }

    /// The stored access token, refreshed first if it expires soon by the local clock.
    pub(crate) async fn access_token(&self) -> Result<String> {
        let session = self.store.session()?.ok_or(ClientError::NotSignedIn)?;
        if session
            .tokens
            .access_expires_within(self.clock.now_ms(), REFRESH_MARGIN_MS)
        {
            self.refresh(&session.tokens.access_token).await
        } else {
            Ok(session.tokens.access_token)
        }
    }

    /// A new access token to replace `stale`. When another call already replaced it, that token
    /// is the answer and no refresh happens.
    async fn refresh(&self, stale: &str) -> Result<String> {
        let guard = self.refresh_lock.clone().lock_owned().await;
        let (api, store, stale) = (self.api.clone(), self.store.clone(), stale.to_owned());
        // Its own task, holding the lock: it finishes (and stores the rotated tokens) even if the
        // caller stops waiting.
        let task = tokio::spawn(async move {
            let _guard = guard;
            refresh_locked(&api, &store, &stale).await
        });
        task.await.map_err(|_| ClientError::Server {
            message: "token refresh stopped unexpectedly".to_owned(),
        })?
    }
}

/// The refresh itself; the caller holds the refresh lock.
async fn refresh_locked(api: &Api, store: &Store, stale: &str) -> Result<String> {
    let session = store.session()?.ok_or(ClientError::NotSignedIn)?;
    if session.tokens.access_token != stale {
        return Ok(session.tokens.access_token);
    }
    let tokens = match api.refresh(session.tokens.refresh_token.clone()).await {
        Ok(tokens) => Tokens::from(tokens),
        Err(status) => return Err(failure(store, &status)),
    };
    if !store.update_tokens(&session.device_id, &tokens)? {
        // Signed out while the refresh was on the wire.
        return Err(ClientError::NotSignedIn);
    }
    tracing::debug!("access token refreshed");
    Ok(tokens.access_token)
}

/// `Login.SignOut` as an owned future.
async fn signed_out(api: Arc<Api>, token: String) -> Result<(), Status> {
    api.sign_out(&token).await
}

/// Whether a failed call may succeed with a refreshed access token.
fn needs_refresh(status: &Status) -> bool {
    status.code() == Code::Unauthenticated
        && matches!(
            reason_of(status).as_deref(),
            Some(reason::TOKEN_EXPIRED | reason::INVALID_TOKEN)
        )
}

/// The error for `status`, clearing the local session when the server ended it.
fn failure(store: &Store, status: &Status) -> ClientError {
    let error = ClientError::from(status);
    if error.ends_session() {
        if let Err(e) = store.clear_session() {
            tracing::warn!(error = %e, "could not clear the ended session");
        }
        tracing::info!("the server ended this session");
    }
    error
}

/// This build's platform.
fn platform() -> pb::Platform {
    if cfg!(target_os = "android") {
        pb::Platform::Android
    } else if cfg!(target_os = "ios") {
        pb::Platform::Ios
    } else if cfg!(target_os = "linux") {
        pb::Platform::Linux
    } else if cfg!(target_os = "macos") {
        pb::Platform::Macos
    } else if cfg!(target_os = "windows") {
        pb::Platform::Windows
    } else {
        pb::Platform::Other
    }
}

/// Creates `dir` (and its parents) if missing; a directory this creates is private to the user
/// (it will hold keys and tokens).
fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    Ok(())
}

#[cfg(test)]
mod tests;
