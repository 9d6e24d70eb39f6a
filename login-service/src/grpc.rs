//! The tonic servers: unpack the request, call [`LoginService`], pack the answer.

use std::sync::Arc;

use juntos_proto::login::v1::directory_server::{Directory, DirectoryServer};
use juntos_proto::login::v1::login_internal_server::{LoginInternal, LoginInternalServer};
use juntos_proto::login::v1::login_server::{Login, LoginServer};
use juntos_proto::login::v1::{
    ActiveDevicesRequest, ActiveDevicesResponse, FetchBundlesRequest, FetchBundlesResponse,
    GetProfilesRequest, GetProfilesResponse, GetSettingsRequest, GetVerificationKeysRequest,
    GetVerificationKeysResponse, ListDevicesRequest, ListDevicesResponse, ListRevocationsRequest,
    ListRevocationsResponse, MeRequest, MeResponse, PrekeyStatusRequest, PrekeyStatusResponse,
    RefreshRequest, RefreshResponse, ResolvePhonesRequest, ResolvePhonesResponse, Settings,
    SignInRequest, SignInResponse, SignOutRequest, SignOutResponse, UpdateSettingsRequest,
    UploadPrekeysRequest, UploadPrekeysResponse, VerificationKey, VisibleToRequest,
    VisibleToResponse,
};
use juntos_proto::meta::Caller;
use tonic::{Request, Response, Status};

use crate::service::LoginService;

/// The public `juntos.login.v1.Login` service, the internal `LoginInternal` one and the public
/// `Directory` one (key directory and contacts; every method needs the gateway's verified
/// caller), all sharing `service`.
pub fn servers(
    service: Arc<LoginService>,
) -> (
    LoginServer<LoginGrpc>,
    LoginInternalServer<LoginInternalGrpc>,
    DirectoryServer<DirectoryGrpc>,
) {
    (
        LoginServer::new(LoginGrpc {
            service: Arc::clone(&service),
        }),
        LoginInternalServer::new(LoginInternalGrpc {
            service: Arc::clone(&service),
        }),
        DirectoryServer::new(DirectoryGrpc { service }),
    )
}

/// `juntos.login.v1.Login`.
#[derive(Debug, Clone)]
pub struct LoginGrpc {
    service: Arc<LoginService>,
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

/// `juntos.login.v1.LoginInternal` (for the gateway; never routed from outside).
#[derive(Debug, Clone)]
pub struct LoginInternalGrpc {
    service: Arc<LoginService>,
}

#[tonic::async_trait]
impl LoginInternal for LoginInternalGrpc {
    async fn get_verification_keys(
        &self,
        _request: Request<GetVerificationKeysRequest>,
    ) -> Result<Response<GetVerificationKeysResponse>, Status> {
        let keys = self
            .service
            .verification_keys()
            .into_iter()
            .map(|(key_id, public_key)| VerificationKey {
                key_id,
                public_key: public_key.to_vec(),
            })
            .collect();
        Ok(Response::new(GetVerificationKeysResponse { keys }))
    }

    async fn list_revocations(
        &self,
        request: Request<ListRevocationsRequest>,
    ) -> Result<Response<ListRevocationsResponse>, Status> {
        let since_ms = request.into_inner().since_ms;
        Ok(Response::new(
            self.service.list_revocations(since_ms).await?,
        ))
    }

    async fn active_devices(
        &self,
        request: Request<ActiveDevicesRequest>,
    ) -> Result<Response<ActiveDevicesResponse>, Status> {
        let user_ids = request.into_inner().user_ids;
        Ok(Response::new(self.service.active_devices(user_ids).await?))
    }

    async fn visible_to(
        &self,
        request: Request<VisibleToRequest>,
    ) -> Result<Response<VisibleToResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            self.service
                .visible_to(
                    &request.viewer_user_id,
                    &request.owner_user_ids,
                    request.aspect,
                )
                .await?,
        ))
    }
}

/// `juntos.login.v1.Directory`: the key directory and contact discovery. The caller is read
/// from the gateway's identity headers only.
#[derive(Debug, Clone)]
pub struct DirectoryGrpc {
    service: Arc<LoginService>,
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
    use std::net::SocketAddr;

    use juntos_proto::error::{metadata_of, reason, reason_of};
    use juntos_proto::login::v1::directory_client::DirectoryClient;
    use juntos_proto::login::v1::login_client::LoginClient;
    use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
    use juntos_proto::meta;
    use juntos_proto::otp::v1::otp_server::{Otp, OtpServer};
    use juntos_proto::otp::v1::verify_code_response::Outcome;
    use juntos_proto::otp::v1::{
        RequestCodeRequest, RequestCodeResponse, VerifyCodeRequest, VerifyCodeResponse,
    };
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::Code;
    use tonic::transport::{Channel, Server};

    use super::*;
    use crate::code_verifier::OtpCodeVerifier;
    use crate::config::LoginConfig;
    use crate::store::SqliteStore;
    use crate::test_support::{T0, sign_in_request};
    use juntos_token::{TokenIssuer, TokenVerifier};

    /// An otp-service that accepts "123456" for any E.164 number and refuses anything not
    /// starting with `+`.
    struct FakeOtp;

    #[tonic::async_trait]
    impl Otp for FakeOtp {
        async fn request_code(
            &self,
            _request: Request<RequestCodeRequest>,
        ) -> Result<Response<RequestCodeResponse>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn verify_code(
            &self,
            request: Request<VerifyCodeRequest>,
        ) -> Result<Response<VerifyCodeResponse>, Status> {
            let request = request.into_inner();
            if !request.phone.starts_with('+') {
                return Err(juntos_proto::error::status(
                    Code::InvalidArgument,
                    reason::INVALID_PHONE,
                    "expected E.164",
                ));
            }
            let phone: String = request
                .phone
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            let response = if request.code == "123456" {
                VerifyCodeResponse {
                    outcome: Outcome::Ok as i32,
                    attempts_left: 0,
                    phone,
                }
            } else {
                VerifyCodeResponse {
                    outcome: Outcome::WrongCode as i32,
                    attempts_left: 2,
                    phone: String::new(),
                }
            };
            Ok(Response::new(response))
        }
    }

    async fn listen() -> (TcpListenerStream, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        (TcpListenerStream::new(listener), addr)
    }

    async fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Starts a fake otp-service and login-service on loopback; the login address.
    async fn start() -> SocketAddr {
        let (otp_incoming, otp_addr) = listen().await;
        tokio::spawn(
            Server::builder()
                .add_service(OtpServer::new(FakeOtp))
                .serve_with_incoming(otp_incoming),
        );
        let verifier = Arc::new(OtpCodeVerifier::new(channel(otp_addr).await));
        let service = Arc::new(LoginService::new(
            LoginConfig::default(),
            Arc::new(SqliteStore::open_temporary().expect("store")),
            verifier,
            TokenIssuer::from_seed(&[42; 32]).expect("seed"),
            juntos_clock::ManualClock::new(T0),
        ));
        let (login, internal, directory) = servers(service);
        let (incoming, addr) = listen().await;
        tokio::spawn(
            Server::builder()
                .add_service(login)
                .add_service(internal)
                .add_service(directory)
                .serve_with_incoming(incoming),
        );
        addr
    }

    fn with_caller<T>(message: T, user: &str, device: &str, session: &str) -> Request<T> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(meta::USER_ID, user.parse().expect("ascii"));
        md.insert(meta::DEVICE_ID, device.parse().expect("ascii"));
        md.insert(meta::SESSION_ID, session.parse().expect("ascii"));
        request
    }

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
