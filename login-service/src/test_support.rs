//! Fixtures for the service and gRPC tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use juntos_clock::{Clock as _, ManualClock};
use juntos_proto::error::reason_of;
use juntos_proto::login::v1::{DeviceInfo, Platform, Revocation, SignInRequest, SignInResponse};
use juntos_proto::meta::Caller;
use juntos_proto::otp::v1::VerifyCodeResponse;
use juntos_proto::otp::v1::verify_code_response::Outcome;

use crate::code_verifier::CodeVerifier;
use crate::config::LoginConfig;
use crate::error::Error;
use crate::service::LoginService;
use crate::store::SqliteStore;
use juntos_token::{TokenIssuer, TokenVerifier};

pub(crate) const T0: i64 = 1_750_000_000_000;

// Valid numbers: ResolvePhones skips numbers libphonenumber does not know.
pub(crate) const ANA: &str = "+12015550124";
pub(crate) const BEA: &str = "+12015550123";
pub(crate) const CAI: &str = "+447400123456";
/// What the fake otp-service answers as the normalised form of every phone.
pub(crate) const PHONE: &str = "+15550000001";

/// A [`CodeVerifier`] that answers from a script, then OK with [`PHONE`].
#[derive(Default)]
pub(crate) struct FakeVerifier {
    script: Mutex<VecDeque<Result<VerifyCodeResponse, tonic::Status>>>,
    calls: Mutex<Vec<(String, String)>>,
}

impl FakeVerifier {
    /// The next call answers `outcome` with `attempts_left`.
    pub(crate) fn answer(&self, outcome: Outcome, attempts_left: u32) {
        let phone = if outcome == Outcome::Ok {
            PHONE.to_owned()
        } else {
            String::new()
        };
        let response = VerifyCodeResponse {
            outcome: outcome as i32,
            attempts_left,
            phone,
        };
        self.script.lock().expect("lock").push_back(Ok(response));
    }

    /// The next call confirms the code for `phone` (already normalised).
    pub(crate) fn confirm(&self, phone: &str) {
        let response = VerifyCodeResponse {
            outcome: Outcome::Ok as i32,
            attempts_left: 0,
            phone: phone.to_owned(),
        };
        self.script.lock().expect("lock").push_back(Ok(response));
    }

    /// The next call fails with `status`.
    pub(crate) fn fail(&self, status: tonic::Status) {
        self.script.lock().expect("lock").push_back(Err(status));
    }

    /// `(phone, code)` of every call so far.
    pub(crate) fn calls(&self) -> Vec<(String, String)> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl CodeVerifier for FakeVerifier {
    async fn verify(&self, phone: &str, code: &str) -> Result<VerifyCodeResponse, tonic::Status> {
        self.calls
            .lock()
            .expect("lock")
            .push((phone.to_owned(), code.to_owned()));
        self.script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| {
                Ok(VerifyCodeResponse {
                    outcome: Outcome::Ok as i32,
                    attempts_left: 0,
                    phone: PHONE.to_owned(),
                })
            })
    }
}

/// A service on a store in a temporary file, a fake verifier and a manual clock at [`T0`].
pub(crate) struct Harness {
    pub(crate) service: Arc<LoginService>,
    pub(crate) verifier: Arc<FakeVerifier>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) issuer: TokenIssuer,
    /// The service's store, for checking what it wrote.
    pub(crate) store: Arc<SqliteStore>,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(LoginConfig::default())
    }

    pub(crate) fn with_config(config: LoginConfig) -> Self {
        let store = Arc::new(SqliteStore::open_temporary().expect("open store"));
        let verifier = Arc::new(FakeVerifier::default());
        let clock = ManualClock::new(T0);
        let issuer = TokenIssuer::from_seed(&[42; 32]).expect("seed");
        let service = Arc::new(LoginService::new(
            config,
            store.clone(),
            verifier.clone(),
            issuer.clone(),
            clock.clone(),
        ));
        Self {
            service,
            verifier,
            clock,
            issuer,
            store,
        }
    }
}

impl Harness {
    /// Signs a new device named `name` in with [`sign_in_request`]; the verifier answers as
    /// scripted (by default OK for [`PHONE`]).
    pub(crate) async fn sign_in(&self, name: &str) -> Result<SignInResponse, Error> {
        self.service.sign_in(sign_in_request(name)).await
    }

    /// Signs a new device named `name` in as `phone` (normalised E.164); its caller identity.
    pub(crate) async fn sign_in_as(&self, phone: &str, name: &str) -> Caller {
        self.verifier.confirm(phone);
        let response = self.sign_in(name).await.expect("sign in");
        caller_at(&response, self.clock.now_ms())
    }

    /// The revocations `ListRevocations` answers for `since_ms`.
    pub(crate) async fn revocations(&self, since_ms: i64) -> Vec<Revocation> {
        self.service
            .list_revocations(since_ms)
            .await
            .expect("list")
            .revocations
    }
}

/// The caller identity of a sign-in made within 15 minutes of [`T0`].
pub(crate) fn caller(response: &SignInResponse) -> Caller {
    caller_at(response, T0)
}

/// The caller identity of a sign-in, read from its access token at `now_ms` the way the gateway
/// would.
pub(crate) fn caller_at(response: &SignInResponse, now_ms: i64) -> Caller {
    let tokens = response.tokens.as_ref().expect("tokens");
    let keys = TokenVerifier::new(vec![
        TokenIssuer::from_seed(&[42; 32])
            .expect("seed")
            .verification_key(),
    ]);
    let claims = keys
        .verify(&tokens.access_token, now_ms)
        .expect("valid token");
    Caller {
        user_id: claims.user_id,
        device_id: claims.device_id,
        session_id: claims.session_id,
    }
}

/// Asserts that `err` becomes a status with `code` and reason `expected_reason`; the status.
pub(crate) fn assert_status(err: Error, code: tonic::Code, expected_reason: &str) -> tonic::Status {
    let status = tonic::Status::from(err);
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(
        reason_of(&status).as_deref(),
        Some(expected_reason),
        "{status:?}"
    );
    status
}

/// The seed of the identity signing key of every [`device`].
pub(crate) const DEVICE_SIGNING_SEED: [u8; 32] = [7; 32];

/// A valid device description named `name`.
pub(crate) fn device(name: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.to_owned(),
        platform: Platform::Linux as i32,
        identity_signing_key: ed25519_dalek::SigningKey::from_bytes(&DEVICE_SIGNING_SEED)
            .verifying_key()
            .to_bytes()
            .to_vec(),
        identity_dh_key: vec![3; 32],
    }
}

/// A sign-in request for " +1 555 000 0001" (otp-service normalises it) from device `name`.
pub(crate) fn sign_in_request(name: &str) -> SignInRequest {
    SignInRequest {
        phone: "+1 5550000001".to_owned(),
        code: "123456".to_owned(),
        device: Some(device(name)),
    }
}
