//! The tonic servers: unpack the request, call [`LoginService`], pack the answer. One file per
//! proto service: `login.rs` (`juntos.login.v1.Login`), `login_internal.rs` (`LoginInternal`) and
//! `directory.rs` (`Directory`); [`servers`] builds all three over one service.

use std::sync::Arc;

use juntos_proto::login::v1::directory_server::DirectoryServer;
use juntos_proto::login::v1::login_internal_server::LoginInternalServer;
use juntos_proto::login::v1::login_server::LoginServer;

use crate::service::LoginService;

mod directory;
mod login;
mod login_internal;

pub use directory::DirectoryGrpc;
pub use login::LoginGrpc;
pub use login_internal::LoginInternalGrpc;

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

/// Fixtures for the tests over the wire: a fake otp-service and a login-service on loopback.
#[cfg(test)]
mod fixtures {
    use std::net::SocketAddr;

    use juntos_proto::error::reason;
    use juntos_proto::meta;
    use juntos_proto::otp::v1::otp_server::{Otp, OtpServer};
    use juntos_proto::otp::v1::verify_code_response::Outcome;
    use juntos_proto::otp::v1::{
        RequestCodeRequest, RequestCodeResponse, VerifyCodeRequest, VerifyCodeResponse,
    };
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::{Channel, Server};
    use tonic::{Code, Request, Response, Status};

    use super::*;
    use crate::code_verifier::OtpCodeVerifier;
    use crate::config::LoginConfig;
    use crate::store::SqliteStore;
    use crate::test_support::T0;
    use juntos_token::TokenIssuer;

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

    pub(super) async fn channel(addr: SocketAddr) -> Channel {
        Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }

    /// Starts a fake otp-service and login-service on loopback; the login address.
    pub(super) async fn start() -> SocketAddr {
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

    pub(super) fn with_caller<T>(
        message: T,
        user: &str,
        device: &str,
        session: &str,
    ) -> Request<T> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert(meta::USER_ID, user.parse().expect("ascii"));
        md.insert(meta::DEVICE_ID, device.parse().expect("ascii"));
        md.insert(meta::SESSION_ID, session.parse().expect("ascii"));
        request
    }
}
