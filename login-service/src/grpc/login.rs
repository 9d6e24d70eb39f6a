//! `juntos.login.v1.Login`: sign-in, refresh, sign-out, who-am-I and the caller's own settings.

use std::sync::Arc;

use juntos_proto::login::v1::login_server::Login;
use juntos_proto::login::v1::{
    GetSettingsRequest, MeRequest, MeResponse, RefreshRequest, RefreshResponse, Settings,
    SignInRequest, SignInResponse, SignOutRequest, SignOutResponse, UpdateSettingsRequest,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status};

use crate::service::LoginService;

/// `juntos.login.v1.Login`.
#[derive(Debug, Clone)]
pub struct LoginGrpc {
    pub(super) service: Arc<LoginService>,
}

#[tonic::async_trait]
impl Login for LoginGrpc {
    async fn sign_in(
        &self,
        request: Request<SignInRequest>,
    ) -> Result<Response<SignInResponse>, Status> {
        Ok(Response::new(
            self.service.sign_in(request.into_inner()).await?,
        ))
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let tokens = self
            .service
            .refresh(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(RefreshResponse {
            tokens: Some(tokens),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<SignOutRequest>,
    ) -> Result<Response<SignOutResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        self.service.sign_out(&caller).await?;
        Ok(Response::new(SignOutResponse {}))
    }

    async fn me(&self, request: Request<MeRequest>) -> Result<Response<MeResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        Ok(Response::new(self.service.me(&caller).await?))
    }

    async fn get_settings(
        &self,
        request: Request<GetSettingsRequest>,
    ) -> Result<Response<Settings>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        Ok(Response::new(self.service.get_settings(&caller).await?))
    }

    async fn update_settings(
        &self,
        request: Request<UpdateSettingsRequest>,
    ) -> Result<Response<Settings>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let request = request.into_inner();
        Ok(Response::new(
            self.service.update_settings(&caller, request).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use juntos_proto::error::{metadata_of, reason, reason_of};
    use juntos_proto::login::v1::login_client::LoginClient;
    use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
    use juntos_proto::login::v1::{GetVerificationKeysRequest, ListRevocationsRequest};
    use tonic::Code;

    use super::*;
    use crate::grpc::fixtures::{channel, start, with_caller};
    use crate::test_support::{T0, sign_in_request};
    use juntos_token::TokenVerifier;

    #[tokio::test]
    async fn end_to_end_over_grpc() {
        let addr = start().await;
        let mut login = LoginClient::new(channel(addr).await);
        let mut internal = LoginInternalClient::new(channel(addr).await);

        // Wrong code: the ErrorInfo survives the wire.
        let wrong = SignInRequest {
            code: "000000".into(),
            ..sign_in_request("laptop")
        };
        let err = login.sign_in(wrong).await.expect_err("wrong code");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&err).as_deref(), Some(reason::WRONG_CODE));
        assert_eq!(metadata_of(&err, "attempts_left").as_deref(), Some("2"));

        // otp-service's INVALID_ARGUMENT passes through.
        let bad_phone = SignInRequest {
            phone: "15550000001".into(),
            ..sign_in_request("laptop")
        };
        let err = login.sign_in(bad_phone).await.expect_err("bad phone");
        assert_eq!(reason_of(&err).as_deref(), Some(reason::INVALID_PHONE));

        let signed_in = login
            .sign_in(sign_in_request("laptop"))
            .await
            .expect("sign in")
            .into_inner();
        assert!(signed_in.new_account);
        let tokens = signed_in.tokens.expect("tokens");

        let keys = internal
            .get_verification_keys(GetVerificationKeysRequest {})
            .await
            .expect("keys")
            .into_inner()
            .keys;
        assert_eq!(keys.len(), 1);
        let public: [u8; 32] = keys[0].public_key.as_slice().try_into().expect("32 bytes");
        let verifier = TokenVerifier::new(vec![(keys[0].key_id.clone(), public)]);
        let claims = verifier.verify(&tokens.access_token, T0).expect("valid");

        // Me needs the gateway's identity headers.
        let err = login.me(MeRequest {}).await.expect_err("no caller");
        assert_eq!(err.code(), Code::Unauthenticated);
        let me = login
            .me(with_caller(
                MeRequest {},
                &claims.user_id,
                &claims.device_id,
                &claims.session_id,
            ))
            .await
            .expect("me")
            .into_inner();
        assert_eq!(me.phone, "+15550000001");
        assert_eq!(me.devices.len(), 1);

        let refreshed = login
            .refresh(RefreshRequest {
                refresh_token: tokens.refresh_token.clone(),
            })
            .await
            .expect("refresh")
            .into_inner();
        assert!(refreshed.tokens.is_some());

        login
            .sign_out(with_caller(
                SignOutRequest {},
                &claims.user_id,
                &claims.device_id,
                &claims.session_id,
            ))
            .await
            .expect("sign out");
        let revocations = internal
            .list_revocations(ListRevocationsRequest { since_ms: 0 })
            .await
            .expect("revocations")
            .into_inner();
        assert_eq!(revocations.server_time_ms, T0);
        assert_eq!(revocations.revocations.len(), 1);
        assert_eq!(revocations.revocations[0].session_id, claims.session_id);
    }
}
