//! The account on this device: asking for a sign-in code, signing in (with identity keys made
//! here and kept in the database), signing out, and what the server and the database say of
//! the account.

use juntos_proto::login::v1 as pb;
use rand::rngs::OsRng;

use crate::api::Api;
use crate::crypto::IdentityKeys;
use crate::error::{ClientError, Result};
use crate::model::records::{Account, CodeRequest, Me, SessionInfo};
use crate::model::session::{Session, Tokens};
use crate::shared::Shared;
use crate::store::messaging::history_owner_differs;

impl Shared {
    /// Asks the server to text a sign-in code to `phone` (E.164, e.g. "+12015550123").
    pub(crate) async fn request_code(&self, phone: String) -> Result<CodeRequest> {
        let response = self
            .gateway
            .api()
            .request_code(phone.trim().to_owned())
            .await?;
        Ok(CodeRequest::from(response))
    }

    /// Signs this device in with the `code` texted to `phone`, registering it as `device_name`.
    ///
    /// The device's identity keys are made on the first try and kept, so a retried sign-in
    /// presents the same keys.
    pub(crate) async fn sign_in(
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
        let response = self.gateway.api().sign_in(request).await?;
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
        let other_account = history_owner_differs(&self.store, &session.user_id)?;
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
    pub(crate) async fn sign_out(&self) -> Result<()> {
        match self
            .gateway
            .unary(Api::sign_out, pb::SignOutRequest {})
            .await
        {
            Ok(_) | Err(ClientError::SessionEnded) => {}
            Err(e) => return Err(e),
        }
        // The device is gone: nothing of its messaging may outlive it on this database.
        self.runtime.stop();
        self.store.write(|tx| tx.wipe_messaging(true))?;
        self.store.clear_session()?;
        self.store.delete_identity()?;
        tracing::info!("signed out");
        Ok(())
    }

    /// The account, this device and the account's devices, from the server.
    pub(crate) async fn me(&self) -> Result<Me> {
        let response = self.gateway.unary(Api::me, pb::MeRequest {}).await?;
        Ok(Me::from(response))
    }

    /// The local session's user and device, if signed in (no network).
    pub(crate) fn session_info(&self) -> Option<SessionInfo> {
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

/// This build's platform.
pub(crate) fn platform() -> pb::Platform {
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
