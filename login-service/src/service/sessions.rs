//! Sessions: `Login.SignIn`, `Refresh`, `SignOut` and `Me`, and what the gateway needs to check
//! the access tokens they hand out (`LoginInternal.GetVerificationKeys` and `ListRevocations`).

use juntos_proto::login::v1::{
    Device as WireDevice, ListRevocationsResponse, MeResponse, Revocation as WireRevocation,
    SignInRequest, SignInResponse, Tokens,
};
use juntos_proto::meta::Caller;
use juntos_proto::otp::v1::verify_code_response::Outcome;

use super::LoginService;
use crate::error::{Error, Result};
use crate::store::{AddDeviceOutcome, NewDevice, NewSession, RevokeReason, RotateOutcome};
use crate::{device, id, refresh_token};
use juntos_token::AccessClaims;

/// Longest phone number accepted before asking otp-service (`+` and 15 digits).
const MAX_PHONE_LEN: usize = 16;
/// Digits in a sign-in code.
const CODE_LEN: usize = 6;

/// How much longer than the access-token lifetime a revocation is kept, for clock skew between
/// login-service and the gateway.
const REVOCATION_SKEW_MS: i64 = 60_000;

impl LoginService {
    /// The `(key id, Ed25519 public key)` pairs that verify this service's access tokens.
    pub fn verification_keys(&self) -> Vec<(String, [u8; 32])> {
        vec![self.issuer.verification_key()]
    }

    /// `Login.SignIn`: verifies the code, finds or creates the account, registers the device and
    /// opens its session.
    pub async fn sign_in(&self, request: SignInRequest) -> Result<SignInResponse> {
        let device = device::validate(request.device.as_ref(), &self.config)?;
        let phone = request.phone.trim();
        if phone.is_empty() || phone.len() > MAX_PHONE_LEN {
            return Err(Error::InvalidPhone);
        }
        // A typo of the wrong shape must not cost one of the code's few tries.
        let code = request.code.trim();
        if code.len() != CODE_LEN || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::MalformedCode);
        }

        let verdict = self
            .verifier
            .verify(phone, code)
            .await
            .map_err(Error::CodeVerification)?;
        match verdict.outcome() {
            Outcome::Ok => {}
            Outcome::WrongCode => {
                return Err(Error::WrongCode {
                    attempts_left: verdict.attempts_left,
                });
            }
            Outcome::TooManyAttempts => return Err(Error::TooManyAttempts),
            Outcome::Expired => return Err(Error::CodeExpired),
            Outcome::NoCode => return Err(Error::NoCode),
            Outcome::Unspecified => return Err(Error::Internal("otp-service gave no outcome")),
        }
        // otp-service's normalised form, so one number is one account however it was typed.
        if verdict.phone.is_empty() {
            return Err(Error::Internal(
                "otp-service confirmed a code without a phone",
            ));
        }

        let now = self.clock.now_ms();
        let (account, new_account) = self
            .store
            .find_or_create_account(&verdict.phone, &id::random_id(), now)
            .await?;
        let new_device = NewDevice {
            device_id: id::random_id(),
            user_id: account.user_id.clone(),
            name: device.name,
            platform: device.platform,
            identity_signing_key: device.identity_signing_key,
            identity_dh_key: device.identity_dh_key,
            created_at_ms: now,
        };
        let device = match self
            .store
            .add_device(new_device, self.config.max_devices_per_account)
            .await?
        {
            AddDeviceOutcome::Added(device) => device,
            AddDeviceOutcome::TooManyDevices => return Err(Error::TooManyDevices),
        };

        let session_id = id::random_id();
        let refresh = refresh_token::generate();
        let refresh_expires_at_ms = now.saturating_add(self.config.refresh_ttl_ms());
        self.store
            .create_session(NewSession {
                session_id: session_id.clone(),
                user_id: account.user_id.clone(),
                device_id: device.device_id.clone(),
                refresh_token_hash: refresh_token::hash(&refresh),
                refresh_expires_at_ms,
                created_at_ms: now,
            })
            .await?;
        tracing::info!(
            user_id = %account.user_id,
            device_id = %device.device_id,
            new_account,
            "signed in"
        );

        let tokens = self.tokens(
            &account.user_id,
            &device.device_id,
            &session_id,
            refresh,
            refresh_expires_at_ms,
            now,
        );
        Ok(SignInResponse {
            user_id: account.user_id,
            device_id: device.device_id,
            new_account,
            tokens: Some(tokens),
        })
    }

    /// `Login.Refresh`: exchanges a refresh token for new tokens of the same session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        if !refresh_token::is_well_formed(refresh_token) {
            return Err(Error::InvalidRefreshToken);
        }
        let now = self.clock.now_ms();
        let next = refresh_token::generate();
        let next_expires_at_ms = now.saturating_add(self.config.refresh_ttl_ms());
        let outcome = self
            .store
            .rotate_refresh_token(
                &refresh_token::hash(refresh_token),
                &refresh_token::hash(&next),
                next_expires_at_ms,
                now,
            )
            .await?;
        match outcome {
            RotateOutcome::Rotated { session } => Ok(self.tokens(
                &session.user_id,
                &session.device_id,
                &session.session_id,
                next,
                next_expires_at_ms,
                now,
            )),
            RotateOutcome::Reused { session_id } => {
                tracing::warn!(%session_id, "refresh token reused; session revoked");
                Err(Error::RefreshTokenReused)
            }
            RotateOutcome::Invalid => Err(Error::InvalidRefreshToken),
        }
    }

    /// `Login.SignOut`: revokes every session of the caller's device and removes the device.
    /// Signing out twice is not an error.
    pub async fn sign_out(&self, caller: &Caller) -> Result<()> {
        let now = self.clock.now_ms();
        let revoked = self
            .store
            .revoke_device_sessions(
                &caller.user_id,
                &caller.device_id,
                now,
                RevokeReason::SignOut,
            )
            .await?;
        tracing::info!(
            user_id = %caller.user_id,
            device_id = %caller.device_id,
            sessions = revoked.len(),
            "signed out"
        );
        Ok(())
    }

    /// `Login.Me`: the caller's account, device and the account's active devices.
    pub async fn me(&self, caller: &Caller) -> Result<MeResponse> {
        self.require_active_session(caller).await?;
        let account = self
            .store
            .account(&caller.user_id)
            .await?
            .ok_or(Error::Internal("active session without an account"))?;
        let devices = self.store.devices(&caller.user_id).await?;
        Ok(MeResponse {
            user_id: account.user_id,
            device_id: caller.device_id.clone(),
            phone: account.phone,
            account_created_at_ms: account.created_at_ms,
            devices: devices
                .into_iter()
                .map(|d| WireDevice {
                    device_id: d.device_id,
                    name: d.name,
                    platform: d.platform,
                    created_at_ms: d.created_at_ms,
                })
                .collect(),
        })
    }

    /// `LoginInternal.ListRevocations`: sessions revoked at or after `since_ms`; with
    /// `since_ms <= 0`, every revocation whose access tokens could still be unexpired.
    pub async fn list_revocations(&self, since_ms: i64) -> Result<ListRevocationsResponse> {
        let now = self.clock.now_ms();
        let keep_ms = self
            .config
            .access_ttl_ms()
            .saturating_add(REVOCATION_SKEW_MS);
        // Relevant while `revoked_at + keep > now`, i.e. `revoked_at >= now - keep + 1`.
        let since = if since_ms <= 0 {
            now.saturating_sub(keep_ms).saturating_add(1)
        } else {
            since_ms
        };
        let revocations = self.store.revocations_since(since).await?;
        Ok(ListRevocationsResponse {
            revocations: revocations
                .into_iter()
                .map(|r| WireRevocation {
                    session_id: r.session_id,
                    revoked_at_ms: r.revoked_at_ms,
                    forget_after_ms: r.revoked_at_ms.saturating_add(keep_ms),
                })
                .collect(),
            server_time_ms: now,
        })
    }

    /// A new access token for the session, with the given refresh token.
    fn tokens(
        &self,
        user_id: &str,
        device_id: &str,
        session_id: &str,
        refresh_token: String,
        refresh_expires_at_ms: i64,
        now: i64,
    ) -> Tokens {
        let claims = AccessClaims {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            session_id: session_id.to_owned(),
            issued_at_ms: now,
            expires_at_ms: now.saturating_add(self.config.access_ttl_ms()),
        };
        Tokens {
            access_token: self.issuer.issue(&claims),
            access_expires_at_ms: claims.expires_at_ms,
            refresh_token,
            refresh_expires_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use juntos_clock::Clock as _;
    use juntos_proto::error::{self, metadata_of, reason};
    use juntos_proto::login::v1::DeviceInfo;
    use tonic::{Code, Status};

    use super::*;
    use crate::config::LoginConfig;
    use crate::test_support::{Harness, PHONE, T0, assert_status, caller, device, sign_in_request};
    use juntos_token::{TokenError, TokenVerifier};

    const MINUTE: i64 = 60_000;

    #[tokio::test]
    async fn new_account_then_same_account_on_another_device() {
        let h = Harness::new();
        let first = h.sign_in("laptop").await.expect("sign in");
        assert!(first.new_account);
        assert_eq!(first.user_id.len(), 32);
        assert_eq!(first.device_id.len(), 32);
        assert_eq!(
            h.verifier.calls(),
            [("+1 5550000001".to_owned(), "123456".to_owned())]
        );

        h.clock.advance_ms(1000);
        let second = h.sign_in("phone").await.expect("sign in");
        assert!(!second.new_account);
        assert_eq!(second.user_id, first.user_id);
        assert_ne!(second.device_id, first.device_id);

        let me = h.service.me(&caller(&second)).await.expect("me");
        assert_eq!(me.user_id, first.user_id);
        assert_eq!(me.device_id, second.device_id);
        assert_eq!(me.phone, PHONE, "the normalised number from otp-service");
        assert_eq!(me.account_created_at_ms, T0);
        let names: Vec<&str> = me.devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["laptop", "phone"]);
        assert_eq!(me.devices[1].created_at_ms, T0 + 1000);
        assert_eq!(me.devices[1].platform, device("x").platform);
    }

    #[tokio::test]
    async fn tokens_of_a_sign_in() {
        let h = Harness::new();
        let response = h.sign_in("laptop").await.expect("sign in");
        let tokens = response.tokens.expect("tokens");
        assert_eq!(tokens.access_expires_at_ms, T0 + 15 * MINUTE);
        assert_eq!(tokens.refresh_expires_at_ms, T0 + 30 * 24 * 60 * MINUTE);
        assert!(tokens.refresh_token.starts_with("rt_"));

        let verifier = TokenVerifier::new(h.service.verification_keys());
        assert_eq!(verifier.key_ids(), [h.issuer.key_id().to_owned()]);
        let claims = verifier
            .verify(&tokens.access_token, h.clock.now_ms())
            .expect("valid");
        assert_eq!(claims.user_id, response.user_id);
        assert_eq!(claims.device_id, response.device_id);
        assert_eq!(claims.session_id.len(), 32);
        assert_eq!(claims.issued_at_ms, T0);
        assert_eq!(claims.expires_at_ms, tokens.access_expires_at_ms);

        h.clock.advance_ms(15 * MINUTE);
        assert_eq!(
            verifier.verify(&tokens.access_token, h.clock.now_ms()),
            Err(TokenError::Expired)
        );
    }

    #[tokio::test]
    async fn code_outcomes_map_to_errors() {
        let h = Harness::new();
        h.verifier.answer(Outcome::WrongCode, 3);
        let err = h.sign_in("a").await.expect_err("wrong code");
        let status = assert_status(err, Code::InvalidArgument, reason::WRONG_CODE);
        assert_eq!(metadata_of(&status, "attempts_left").as_deref(), Some("3"));

        for (outcome, expected) in [
            (Outcome::TooManyAttempts, reason::TOO_MANY_ATTEMPTS),
            (Outcome::Expired, reason::CODE_EXPIRED),
            (Outcome::NoCode, reason::NO_CODE),
        ] {
            h.verifier.answer(outcome, 0);
            let err = h.sign_in("a").await.expect_err("refused");
            assert_status(err, Code::FailedPrecondition, expected);
        }

        h.verifier.fail(error::status(
            Code::InvalidArgument,
            reason::INVALID_PHONE,
            "not E.164",
        ));
        let err = h.sign_in("a").await.expect_err("bad phone");
        let status = assert_status(err, Code::InvalidArgument, reason::INVALID_PHONE);
        assert_eq!(
            status.message(),
            "not E.164",
            "passed through as otp-service said it"
        );

        h.verifier.fail(Status::unavailable("down"));
        let err = h.sign_in("a").await.expect_err("otp down");
        assert_eq!(Status::from(err).code(), Code::Unavailable);

        // None of these created an account.
        let ok = h.sign_in("a").await.expect("sign in");
        assert!(ok.new_account);
    }

    #[tokio::test]
    async fn invalid_devices_and_phones_are_refused_before_the_code_is_checked() {
        let h = Harness::new();
        let good = device("ok");
        let bad_devices = [
            None,
            Some(DeviceInfo {
                name: " ".into(),
                ..good.clone()
            }),
            Some(DeviceInfo {
                name: "n".repeat(65),
                ..good.clone()
            }),
            Some(DeviceInfo {
                name: "tab\there".into(),
                ..good.clone()
            }),
            Some(DeviceInfo {
                identity_signing_key: vec![],
                ..good.clone()
            }),
            Some(DeviceInfo {
                identity_signing_key: vec![7; 33],
                ..good.clone()
            }),
            Some(DeviceInfo {
                identity_dh_key: vec![7; 31],
                ..good.clone()
            }),
        ];
        for device in bad_devices {
            let request = SignInRequest {
                device,
                ..sign_in_request("x")
            };
            let err = h
                .service
                .sign_in(request)
                .await
                .expect_err("invalid device");
            assert_status(err, Code::InvalidArgument, reason::INVALID_DEVICE);
        }
        for phone in ["", "   ", "+123456789012345678"] {
            let request = SignInRequest {
                phone: phone.into(),
                ..sign_in_request("x")
            };
            let err = h.service.sign_in(request).await.expect_err("invalid phone");
            assert_status(err, Code::InvalidArgument, reason::INVALID_PHONE);
        }
        for code in ["", "12345", "1234567", "12345a", "１２３４５６"] {
            let request = SignInRequest {
                code: code.into(),
                ..sign_in_request("x")
            };
            let err = h
                .service
                .sign_in(request)
                .await
                .expect_err("malformed code");
            assert_status(err, Code::InvalidArgument, reason::INVALID_CODE);
        }
        assert!(h.verifier.calls().is_empty(), "no code was consumed");
    }

    #[tokio::test]
    async fn refresh_rotates() {
        let h = Harness::new();
        let signed_in = h.sign_in("a").await.expect("sign in");
        let first = signed_in.tokens.clone().expect("tokens");
        let session = caller(&signed_in).session_id;

        h.clock.advance_ms(10 * MINUTE);
        let second = h
            .service
            .refresh(&first.refresh_token)
            .await
            .expect("refresh");
        assert_ne!(second.refresh_token, first.refresh_token);
        assert_eq!(second.access_expires_at_ms, T0 + 25 * MINUTE);
        assert_eq!(
            second.refresh_expires_at_ms,
            T0 + 10 * MINUTE + 30 * 24 * 60 * MINUTE
        );
        let verifier = TokenVerifier::new(h.service.verification_keys());
        let claims = verifier
            .verify(&second.access_token, h.clock.now_ms())
            .expect("valid");
        assert_eq!(
            (
                claims.user_id.as_str(),
                claims.device_id.as_str(),
                claims.session_id.as_str()
            ),
            (
                signed_in.user_id.as_str(),
                signed_in.device_id.as_str(),
                session.as_str()
            )
        );

        let third = h
            .service
            .refresh(&second.refresh_token)
            .await
            .expect("refresh again");
        assert_ne!(third.refresh_token, second.refresh_token);
        assert!(h.revocations(0).await.is_empty());
    }

    #[tokio::test]
    async fn reuse_revokes_the_session() {
        let h = Harness::new();
        let signed_in = h.sign_in("a").await.expect("sign in");
        let me = caller(&signed_in);
        let first = signed_in.tokens.expect("tokens");
        let second = h
            .service
            .refresh(&first.refresh_token)
            .await
            .expect("refresh");

        h.clock.advance_ms(1000);
        let err = h
            .service
            .refresh(&first.refresh_token)
            .await
            .expect_err("reuse");
        assert_status(err, Code::Unauthenticated, reason::REFRESH_TOKEN_REUSED);

        // The newest token of the family is dead too.
        let err = h
            .service
            .refresh(&second.refresh_token)
            .await
            .expect_err("revoked");
        assert_status(err, Code::Unauthenticated, reason::INVALID_REFRESH_TOKEN);
        let err = h.service.me(&me).await.expect_err("revoked");
        assert_status(err, Code::Unauthenticated, reason::SESSION_REVOKED);

        let listed = h.service.list_revocations(0).await.expect("list");
        assert_eq!(listed.revocations.len(), 1);
        assert_eq!(listed.revocations[0].session_id, me.session_id);
        assert_eq!(listed.revocations[0].revoked_at_ms, T0 + 1000);
    }

    #[tokio::test]
    async fn concurrent_refreshes_one_wins() {
        let h = Harness::new();
        let signed_in = h.sign_in("a").await.expect("sign in");
        let token = signed_in.tokens.expect("tokens").refresh_token;
        let (a, b) = tokio::join!(h.service.refresh(&token), h.service.refresh(&token));
        let (ok, err) = match (a, b) {
            (Ok(t), Err(e)) | (Err(e), Ok(t)) => (t, e),
            other => panic!("expected one winner: {other:?}"),
        };
        assert_status(err, Code::Unauthenticated, reason::REFRESH_TOKEN_REUSED);
        let err = h
            .service
            .refresh(&ok.refresh_token)
            .await
            .expect_err("family revoked");
        assert_status(err, Code::Unauthenticated, reason::INVALID_REFRESH_TOKEN);
    }

    #[tokio::test]
    async fn bad_and_expired_refresh_tokens() {
        let h = Harness::new();
        for token in ["", "rt_", "not-a-token", &format!("rt_{}", "A".repeat(43))] {
            let err = h.service.refresh(token).await.expect_err("invalid");
            assert_status(err, Code::Unauthenticated, reason::INVALID_REFRESH_TOKEN);
        }
        let signed_in = h.sign_in("a").await.expect("sign in");
        let token = signed_in.tokens.expect("tokens").refresh_token;
        h.clock.advance_ms(30 * 24 * 60 * MINUTE);
        let err = h.service.refresh(&token).await.expect_err("expired");
        assert_status(err, Code::Unauthenticated, reason::INVALID_REFRESH_TOKEN);
    }

    #[tokio::test]
    async fn sign_out_revokes_and_is_listed() {
        let h = Harness::new();
        let laptop = h.sign_in("laptop").await.expect("sign in");
        let phone = h.sign_in("phone").await.expect("sign in");
        let laptop_caller = caller(&laptop);

        h.clock.advance_ms(5000);
        h.service.sign_out(&laptop_caller).await.expect("sign out");
        h.service
            .sign_out(&laptop_caller)
            .await
            .expect("signing out twice is fine");

        let listed = h.service.list_revocations(0).await.expect("list");
        assert_eq!(listed.server_time_ms, T0 + 5000);
        assert_eq!(listed.revocations.len(), 1);
        let revocation = &listed.revocations[0];
        assert_eq!(revocation.session_id, laptop_caller.session_id);
        assert_eq!(revocation.revoked_at_ms, T0 + 5000);
        assert_eq!(revocation.forget_after_ms, T0 + 5000 + 15 * MINUTE + MINUTE);
        assert_eq!(h.revocations(T0 + 5000).await.len(), 1);
        assert!(h.revocations(T0 + 5001).await.is_empty());

        let err = h.service.me(&laptop_caller).await.expect_err("signed out");
        assert_status(err, Code::Unauthenticated, reason::SESSION_REVOKED);
        let refresh = laptop.tokens.expect("tokens").refresh_token;
        let err = h.service.refresh(&refresh).await.expect_err("signed out");
        assert_status(err, Code::Unauthenticated, reason::INVALID_REFRESH_TOKEN);

        let me = h
            .service
            .me(&caller(&phone))
            .await
            .expect("other device still in");
        let ids: Vec<&str> = me.devices.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, [phone.device_id.as_str()], "the laptop is removed");

        // Once no access token of the session can be valid, `since_ms = 0` drops it.
        h.clock.advance_ms(16 * MINUTE - 1);
        assert_eq!(h.revocations(0).await.len(), 1);
        h.clock.advance_ms(1);
        assert!(h.revocations(0).await.is_empty());
    }

    #[tokio::test]
    async fn device_cap() {
        let config = LoginConfig {
            max_devices_per_account: 2,
            ..LoginConfig::default()
        };
        let h = Harness::with_config(config);
        let first = h.sign_in("one").await.expect("sign in");
        h.sign_in("two").await.expect("sign in");
        let err = h.sign_in("three").await.expect_err("cap");
        assert_status(err, Code::ResourceExhausted, reason::TOO_MANY_DEVICES);

        h.service.sign_out(&caller(&first)).await.expect("sign out");
        h.sign_in("three").await.expect("a slot is free again");
    }
}
