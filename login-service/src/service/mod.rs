//! The login service's logic: the [`LoginService`] struct, its constructor and the helpers its
//! features share. One file per feature, each an `impl LoginService` block with its tests:
//! `sessions.rs` (sign-in, refresh, sign-out, who-am-I, and what the gateway needs to check
//! tokens: verification keys and revocations), `keys.rs` (the key directory: prekeys and device
//! lists), `contacts.rs` (contact discovery) and `settings.rs` (profile, privacy and the
//! visibility rule).

use std::sync::Arc;

use juntos_clock::SharedClock;
use juntos_proto::meta::Caller;

use crate::code_verifier::CodeVerifier;
use crate::config::LoginConfig;
use crate::error::{Error, Result};
use crate::store::LoginStore;
use juntos_token::TokenIssuer;

mod contacts;
mod keys;
mod sessions;
mod settings;

pub use contacts::MAX_RESOLVE_PHONES;
pub use keys::{
    MAX_ACTIVE_DEVICES_USERS, MAX_LIST_DEVICES_USERS, MAX_ONE_TIME_PREKEYS_PER_UPLOAD,
    MAX_ONE_TIME_PREKEYS_STORED, PREKEY_REFILL_BELOW,
};

/// Accounts, devices and tokens.
pub struct LoginService {
    config: LoginConfig,
    store: Arc<dyn LoginStore>,
    verifier: Arc<dyn CodeVerifier>,
    issuer: TokenIssuer,
    clock: SharedClock,
}

impl std::fmt::Debug for LoginService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginService")
            .field("config", &self.config)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl LoginService {
    /// A service over `store`, checking codes with `verifier`, signing with `issuer`, on `clock`.
    pub fn new(
        config: LoginConfig,
        store: Arc<dyn LoginStore>,
        verifier: Arc<dyn CodeVerifier>,
        issuer: TokenIssuer,
        clock: SharedClock,
    ) -> Self {
        Self {
            config,
            store,
            verifier,
            issuer,
            clock,
        }
    }

    /// Fails with [`Error::SessionRevoked`] unless the caller's session exists, is active and
    /// belongs to the caller's user and device. The gateway refuses revoked sessions within a
    /// second; this closes that second for calls that read or change account data.
    async fn require_active_session(&self, caller: &Caller) -> Result<()> {
        let session = self.store.session(&caller.session_id).await?;
        let belongs = session.as_ref().is_some_and(|s| {
            s.is_active() && s.user_id == caller.user_id && s.device_id == caller.device_id
        });
        if belongs {
            Ok(())
        } else {
            Err(Error::SessionRevoked)
        }
    }
}

/// Fails with [`Error::BatchTooLarge`] when a request lists more than `max` items (`what`:
/// "user ids", "phone numbers"), counted as sent, repeats included.
fn check_batch(len: usize, max: usize, what: &'static str) -> Result<()> {
    if len > max {
        return Err(Error::BatchTooLarge { what, max });
    }
    Ok(())
}
