//! `juntos.login.v1.Directory`: the key directory (prekeys, device lists), contact discovery and
//! profiles, for the gateway's verified caller only.

use std::sync::Arc;

use juntos_proto::login::v1::directory_server::Directory;
use juntos_proto::login::v1::{
    FetchBundlesRequest, FetchBundlesResponse, GetProfilesRequest, GetProfilesResponse,
    ListDevicesRequest, ListDevicesResponse, PrekeyStatusRequest, PrekeyStatusResponse,
    ResolvePhonesRequest, ResolvePhonesResponse, UploadPrekeysRequest, UploadPrekeysResponse,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status};

use crate::service::LoginService;

/// `juntos.login.v1.Directory`: the key directory and contact discovery. The caller is read
/// from the gateway's identity headers only.
#[derive(Debug, Clone)]
pub struct DirectoryGrpc {
    pub(super) service: Arc<LoginService>,
}

#[tonic::async_trait]
impl Directory for DirectoryGrpc {
    async fn upload_prekeys(
        &self,
        request: Request<UploadPrekeysRequest>,
    ) -> Result<Response<UploadPrekeysResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        Ok(Response::new(
            self.service
                .upload_prekeys(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn prekey_status(
        &self,
        request: Request<PrekeyStatusRequest>,
    ) -> Result<Response<PrekeyStatusResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        Ok(Response::new(self.service.prekey_status(&caller).await?))
    }

    async fn fetch_bundles(
        &self,
        request: Request<FetchBundlesRequest>,
    ) -> Result<Response<FetchBundlesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user_id = request.into_inner().user_id;
        Ok(Response::new(
            self.service.fetch_bundles(&caller, &user_id).await?,
        ))
    }

    async fn list_devices(
        &self,
        request: Request<ListDevicesRequest>,
    ) -> Result<Response<ListDevicesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user_ids = request.into_inner().user_ids;
        Ok(Response::new(
            self.service.list_devices(&caller, user_ids).await?,
        ))
    }

    async fn resolve_phones(
        &self,
        request: Request<ResolvePhonesRequest>,
    ) -> Result<Response<ResolvePhonesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let phones = request.into_inner().phones;
        Ok(Response::new(
            self.service.resolve_phones(&caller, phones).await?,
        ))
    }

    async fn get_profiles(
        &self,
        request: Request<GetProfilesRequest>,
    ) -> Result<Response<GetProfilesResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user_ids = request.into_inner().user_ids;
        Ok(Response::new(
            self.service.get_profiles(&caller, user_ids).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use juntos_proto::error::{reason, reason_of};
    use juntos_proto::login::v1::ActiveDevicesRequest;
    use juntos_proto::login::v1::directory_client::DirectoryClient;
    use juntos_proto::login::v1::login_client::LoginClient;
    use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
    use tonic::Code;

    use super::*;
    use crate::grpc::fixtures::{channel, start, with_caller};
    use crate::test_support::{T0, sign_in_request};
    use juntos_token::{TokenIssuer, TokenVerifier};

    #[tokio::test]
    async fn directory_over_grpc() {
        use ed25519_dalek::Signer as _;
        use juntos_proto::login::v1::{OneTimePrekey, SignedPrekey};

        let addr = start().await;
        let mut login = LoginClient::new(channel(addr).await);
        let mut internal = LoginInternalClient::new(channel(addr).await);
        let mut directory = DirectoryClient::new(channel(addr).await);

        let signed_in = login
            .sign_in(sign_in_request("laptop"))
            .await
            .expect("sign in")
            .into_inner();
        let keys = TokenVerifier::new(vec![
            TokenIssuer::from_seed(&[42; 32])
                .expect("seed")
                .verification_key(),
        ]);
        let claims = keys
            .verify(&signed_in.tokens.expect("tokens").access_token, T0)
            .expect("valid");
        let me = (
            claims.user_id.clone(),
            claims.device_id.clone(),
            claims.session_id.clone(),
        );
        fn as_caller<T>(message: T, me: &(String, String, String)) -> Request<T> {
            with_caller(message, &me.0, &me.1, &me.2)
        }

        // Only the gateway's verified caller is accepted.
        let err = directory
            .prekey_status(PrekeyStatusRequest {})
            .await
            .expect_err("no caller");
        assert_eq!(err.code(), Code::Unauthenticated);

        let public_key = vec![5; 32];
        let mut message = b"juntos-signed-prekey-v1".to_vec();
        message.extend_from_slice(&9_u32.to_be_bytes());
        message.extend_from_slice(&public_key);
        let signature =
            ed25519_dalek::SigningKey::from_bytes(&crate::test_support::DEVICE_SIGNING_SEED)
                .sign(&message)
                .to_bytes()
                .to_vec();
        let mut bad = SignedPrekey {
            key_id: 9,
            public_key,
            signature,
        };
        let good = bad.clone();
        bad.signature[0] ^= 1;
        let err = directory
            .upload_prekeys(as_caller(
                UploadPrekeysRequest {
                    signed_prekey: Some(bad),
                    one_time_prekeys: vec![],
                },
                &me,
            ))
            .await
            .expect_err("bad signature");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(reason_of(&err).as_deref(), Some(reason::INVALID_PREKEY));

        let uploaded = directory
            .upload_prekeys(as_caller(
                UploadPrekeysRequest {
                    signed_prekey: Some(good.clone()),
                    one_time_prekeys: vec![OneTimePrekey {
                        key_id: 1,
                        public_key: vec![6; 32],
                    }],
                },
                &me,
            ))
            .await
            .expect("upload")
            .into_inner();
        assert_eq!(uploaded.one_time_prekeys_left, 1);
        let status = directory
            .prekey_status(as_caller(PrekeyStatusRequest {}, &me))
            .await
            .expect("status")
            .into_inner();
        assert!(status.refill && status.has_signed_prekey);

        // The account's second device fetches the laptop's bundle.
        let phone = login
            .sign_in(sign_in_request("phone"))
            .await
            .expect("sign in")
            .into_inner();
        let phone = keys
            .verify(&phone.tokens.expect("tokens").access_token, T0)
            .expect("valid");
        let other = (phone.user_id, phone.device_id, phone.session_id);
        let bundles = directory
            .fetch_bundles(as_caller(
                FetchBundlesRequest {
                    user_id: claims.user_id.clone(),
                },
                &other,
            ))
            .await
            .expect("fetch")
            .into_inner()
            .bundles;
        assert_eq!(bundles.len(), 1);
        assert_eq!(bundles[0].device_id, claims.device_id);
        assert_eq!(bundles[0].signed_prekey.as_ref(), Some(&good));
        assert_eq!(
            bundles[0].one_time_prekey.as_ref().map(|k| k.key_id),
            Some(1)
        );
        let err = directory
            .fetch_bundles(as_caller(
                FetchBundlesRequest {
                    user_id: "nobody".into(),
                },
                &me,
            ))
            .await
            .expect_err("unknown user");
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(reason_of(&err).as_deref(), Some(reason::NO_SUCH_USER));

        let listed = directory
            .list_devices(as_caller(
                ListDevicesRequest {
                    user_ids: vec![claims.user_id.clone()],
                },
                &me,
            ))
            .await
            .expect("list")
            .into_inner();
        let mut listed: Vec<&str> = listed.users[0]
            .devices
            .iter()
            .map(|d| d.device_id.as_str())
            .collect();
        listed.sort_unstable();
        let mut both = [claims.device_id.as_str(), other.1.as_str()];
        both.sort_unstable();
        assert_eq!(listed, both);
        let resolved = directory
            .resolve_phones(as_caller(
                ResolvePhonesRequest {
                    phones: vec!["junk".into()],
                },
                &me,
            ))
            .await
            .expect("resolve")
            .into_inner();
        assert!(resolved.contacts.is_empty());
        let err = directory
            .resolve_phones(as_caller(
                ResolvePhonesRequest {
                    phones: vec!["+12015550123".into(); 1001],
                },
                &me,
            ))
            .await
            .expect_err("too many");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(
            reason_of(&err).as_deref(),
            Some(juntos_proto::error::reason::BATCH_TOO_LARGE)
        );

        let active = internal
            .active_devices(ActiveDevicesRequest {
                user_ids: vec![claims.user_id.clone(), "nobody".into()],
            })
            .await
            .expect("active")
            .into_inner();
        assert_eq!(active.users.len(), 1);
        let mut active: Vec<&str> = active.users[0]
            .device_ids
            .iter()
            .map(String::as_str)
            .collect();
        active.sort_unstable();
        assert_eq!(active, both);
    }
}
