//! Fixtures for the service and gRPC tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use juntos_proto::clock::ManualClock;
use juntos_proto::login::v1::{DeviceInfo, Platform, SignInRequest};
use juntos_proto::otp::v1::VerifyCodeResponse;
use juntos_proto::otp::v1::verify_code_response::Outcome;

use crate::code_verifier::CodeVerifier;
use crate::config::LoginConfig;
use crate::service::LoginService;
use crate::store::SqliteStore;
use crate::token::TokenIssuer;

pub(crate) const T0: i64 = 1_750_000_000_000;
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

/// A service on an in-memory store, a fake verifier and a manual clock at [`T0`].
pub(crate) struct Harness {
    pub(crate) service: Arc<LoginService>,
    pub(crate) verifier: Arc<FakeVerifier>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) issuer: TokenIssuer,
}

impl Harness {
    pub(crate) fn new() -> Self {
        Self::with_config(LoginConfig::default())
    }

    pub(crate) fn with_config(config: LoginConfig) -> Self {
        let store = Arc::new(SqliteStore::open_in_memory().expect("open store"));
        let verifier = Arc::new(FakeVerifier::default());
        let clock = ManualClock::new(T0);
        let issuer = TokenIssuer::from_seed(&[42; 32]).expect("seed");
        let service = Arc::new(LoginService::new(
            config,
            store,
            verifier.clone(),
            issuer.clone(),
            clock.clone(),
        ));
        Self {
            service,
            verifier,
            clock,
            issuer,
        }
    }
}

/// A valid device description named `name`.
pub(crate) fn device(name: &str) -> DeviceInfo {
    DeviceInfo {
        name: name.to_owned(),
        platform: Platform::Linux as i32,
        identity_signing_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32])
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
