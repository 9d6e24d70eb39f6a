//! `Client` against an in-process fake of the gateway's Otp and Login services.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use juntos_clock::ManualClock;
use juntos_proto::error::{reason, resource_exhausted, status, status_with_metadata};
use juntos_proto::login::v1::login_server::{Login, LoginServer};
use juntos_proto::otp::v1 as otp;
use juntos_proto::otp::v1::otp_server::{Otp, OtpServer};
use tonic::{Code, Request, Response, Status};

use juntos_proto::login::v1 as pb;

use super::*;
use crate::account::platform;
use crate::error::ClientError;
use crate::gateway::REFRESH_MARGIN_MS;
use crate::shared::DATABASE_FILE;

const NOW_MS: i64 = 1_700_000_000_000;
const GOOD_CODE: &str = "123456";

/// What the fake server knows and has seen.
#[derive(Debug, Default)]
struct State {
    /// Token generation: the live tokens are `a{gen}` / `r{gen}`.
    generation: u32,
    /// Lifetime of issued access tokens, from NOW_MS.
    access_lifetime_ms: i64,
    refreshes: u32,
    reuse_detected: bool,
    /// Refresh answers INVALID_REFRESH_TOKEN.
    refresh_invalid: bool,
    /// The live access token is refused as expired (until the next refresh).
    access_expired: bool,
    /// Authenticated calls answer SESSION_REVOKED.
    revoked: bool,
    signed_out: bool,
    /// The identity keys each sign-in presented.
    sign_in_keys: Vec<(Vec<u8>, Vec<u8>)>,
    sign_in_platform: Option<i32>,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<Mutex<State>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().expect("fake state")
    }

    fn tokens(state: &State) -> pb::Tokens {
        pb::Tokens {
            access_token: format!("a{}", state.generation),
            access_expires_at_ms: NOW_MS + state.access_lifetime_ms,
            refresh_token: format!("r{}", state.generation),
            refresh_expires_at_ms: NOW_MS + 86_400_000,
        }
    }

    /// Checks the bearer token of an authenticated call.
    fn authenticate<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let state = self.state();
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let Some(token) = bearer.and_then(|b| b.strip_prefix("Bearer ")) else {
            return Err(status(
                Code::Unauthenticated,
                reason::MISSING_TOKEN,
                "no token",
            ));
        };
        if state.revoked {
            return Err(status(
                Code::Unauthenticated,
                reason::SESSION_REVOKED,
                "revoked",
            ));
        }
        if token != format!("a{}", state.generation) || state.access_expired {
            return Err(status(
                Code::Unauthenticated,
                reason::TOKEN_EXPIRED,
                "expired",
            ));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Otp for Fake {
    async fn request_code(
        &self,
        request: Request<otp::RequestCodeRequest>,
    ) -> Result<Response<otp::RequestCodeResponse>, Status> {
        match request.into_inner().phone.as_str() {
            "+12015550123" => Ok(Response::new(otp::RequestCodeResponse {
                code_length: 6,
                expires_in_seconds: 300,
                resend_after_seconds: 30,
            })),
            "+12015550124" => Err(resource_exhausted(
                reason::RESEND_TOO_SOON,
                "wait",
                Duration::from_millis(12_500),
            )),
            _ => Err(status(
                Code::InvalidArgument,
                reason::INVALID_PHONE,
                "expected E.164",
            )),
        }
    }

    async fn verify_code(
        &self,
        _: Request<otp::VerifyCodeRequest>,
    ) -> Result<Response<otp::VerifyCodeResponse>, Status> {
        Err(Status::unimplemented("internal"))
    }
}

#[tonic::async_trait]
impl Login for Fake {
    async fn sign_in(
        &self,
        request: Request<pb::SignInRequest>,
    ) -> Result<Response<pb::SignInResponse>, Status> {
        let request = request.into_inner();
        let device = request
            .device
            .ok_or_else(|| Status::invalid_argument("no device"))?;
        let mut state = self.state();
        state
            .sign_in_keys
            .push((device.identity_signing_key, device.identity_dh_key));
        state.sign_in_platform = Some(device.platform);
        if request.code != GOOD_CODE {
            let meta = HashMap::from([("attempts_left".to_owned(), "4".to_owned())]);
            return Err(status_with_metadata(
                Code::InvalidArgument,
                reason::WRONG_CODE,
                "wrong code",
                meta,
            ));
        }
        state.generation += 1;
        state.revoked = false;
        state.signed_out = false;
        Ok(Response::new(pb::SignInResponse {
            user_id: "user-1".into(),
            device_id: format!("device-{}", state.sign_in_keys.len()),
            new_account: true,
            tokens: Some(Self::tokens(&state)),
        }))
    }

    async fn refresh(
        &self,
        request: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        let presented = request.into_inner().refresh_token;
        // Widen the window in which a second refresh could slip in.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut state = self.state();
        if state.refresh_invalid {
            return Err(status(
                Code::Unauthenticated,
                reason::INVALID_REFRESH_TOKEN,
                "unknown",
            ));
        }
        if presented != format!("r{}", state.generation) {
            state.reuse_detected = true;
            return Err(status(
                Code::Unauthenticated,
                reason::REFRESH_TOKEN_REUSED,
                "reused",
            ));
        }
        state.generation += 1;
        state.refreshes += 1;
        state.access_expired = false;
        state.access_lifetime_ms = 900_000;
        Ok(Response::new(pb::RefreshResponse {
            tokens: Some(Self::tokens(&state)),
        }))
    }

    async fn sign_out(
        &self,
        request: Request<pb::SignOutRequest>,
    ) -> Result<Response<pb::SignOutResponse>, Status> {
        self.authenticate(&request)?;
        self.state().signed_out = true;
        self.state().revoked = true;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    async fn me(
        &self,
        request: Request<pb::MeRequest>,
    ) -> Result<Response<pb::MeResponse>, Status> {
        self.authenticate(&request)?;
        Ok(Response::new(pb::MeResponse {
            user_id: "user-1".into(),
            device_id: "device-1".into(),
            phone: "+12015550123".into(),
            account_created_at_ms: NOW_MS,
            devices: vec![pb::Device {
                device_id: "device-1".into(),
                name: "test".into(),
                platform: pb::Platform::Linux.into(),
                created_at_ms: NOW_MS,
            }],
        }))
    }

    async fn get_settings(
        &self,
        _: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }

    async fn update_settings(
        &self,
        _: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::Settings>, Status> {
        Err(Status::unimplemented("not in these tests"))
    }
}

/// A fake server on a free loopback port; its URL.
async fn serve(fake: Fake) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(LoginServer::new(fake.clone()))
            .add_service(OtpServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

struct Setup {
    fake: Fake,
    client: Arc<Client>,
    clock: Arc<ManualClock>,
    home: tempfile::TempDir,
}

/// A client, signed in when `signed_in`, whose access token lives `access_lifetime_ms`.
async fn setup(access_lifetime_ms: i64, signed_in: bool) -> Setup {
    let fake = Fake::default();
    fake.state().access_lifetime_ms = access_lifetime_ms;
    let url = serve(fake.clone()).await;
    let home = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(NOW_MS);
    let client = Client::with_clock(&url, home.path().join("home"), clock.clone()).expect("client");
    if signed_in {
        client
            .sign_in("+12015550123".into(), GOOD_CODE.into(), "test".into())
            .await
            .expect("sign in");
    }
    Setup {
        fake,
        client,
        clock,
        home,
    }
}

#[tokio::test]
async fn sign_in_stores_session_and_sends_public_keys() {
    let s = setup(900_000, false).await;
    assert!(!s.client.is_signed_in());
    assert!(matches!(s.client.me().await, Err(ClientError::NotSignedIn)));

    let account = s
        .client
        .sign_in("+12015550123".into(), GOOD_CODE.into(), "test".into())
        .await
        .expect("sign in");
    assert_eq!(
        account,
        Account {
            user_id: "user-1".into(),
            device_id: "device-1".into(),
            new_account: true
        }
    );
    assert_eq!(
        s.client.session(),
        Some(SessionInfo {
            user_id: "user-1".into(),
            device_id: "device-1".into()
        })
    );

    // The public halves of the stored keys, nothing else, went to the server.
    let keys = s
        .client
        .shared
        .store
        .identity()
        .expect("read")
        .expect("keys stored");
    let (signing, dh) = s.fake.state().sign_in_keys[0].clone();
    assert_eq!(signing, keys.signing_public());
    assert_eq!(dh, keys.dh_public());
    assert_ne!(signing, keys.signing_secret_bytes().to_vec());
    assert_eq!(s.fake.state().sign_in_platform, Some(platform().into()));

    let me = s.client.me().await.expect("me");
    assert_eq!(
        (me.user_id.as_str(), me.device_id.as_str()),
        ("user-1", "device-1")
    );
    assert_eq!(me.devices.len(), 1);

    let again = s
        .client
        .sign_in("+12015550123".into(), GOOD_CODE.into(), "test".into())
        .await;
    assert!(
        matches!(again, Err(ClientError::InvalidInput { .. })),
        "{again:?}"
    );

    // A new Client on the same home is still signed in, without the network.
    drop(s.client);
    let client = Client::new(
        "http://127.0.0.1:1".into(),
        s.home.path().join("home").display().to_string(),
    )
    .expect("reopen");
    assert_eq!(
        client.session().map(|s| s.device_id),
        Some("device-1".to_owned())
    );
}

#[tokio::test]
async fn identity_keys_survive_a_failed_sign_in() {
    let s = setup(900_000, false).await;
    let wrong = s
        .client
        .sign_in("+12015550123".into(), "000000".into(), "test".into())
        .await;
    assert!(
        matches!(wrong, Err(ClientError::WrongCode { attempts_left: 4 })),
        "{wrong:?}"
    );
    assert!(!s.client.is_signed_in());
    s.client
        .sign_in("+12015550123".into(), GOOD_CODE.into(), "test".into())
        .await
        .expect("sign in");
    let keys = s.fake.state().sign_in_keys.clone();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the retry presents the same identity");
}

#[tokio::test]
async fn request_code_answers_and_errors() {
    let s = setup(900_000, false).await;
    let sent = s
        .client
        .request_code("+12015550123".into())
        .await
        .expect("sent");
    assert_eq!(
        sent,
        CodeRequest {
            code_length: 6,
            expires_in_seconds: 300,
            resend_after_seconds: 30
        }
    );
    let limited = s.client.request_code("+12015550124".into()).await;
    assert!(
        matches!(&limited, Err(ClientError::RateLimited { retry_after_seconds: 13, reason }) if reason == "RESEND_TOO_SOON"),
        "{limited:?}"
    );
    let invalid = s.client.request_code("12345".into()).await;
    assert!(
        matches!(invalid, Err(ClientError::InvalidPhoneNumber { .. })),
        "{invalid:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_refresh_once_before_expiry() {
    // The access token expires in 30 s: inside the refresh margin.
    let s = setup(30_000, true).await;
    let calls = (0..8).map(|_| {
        let client = s.client.clone();
        tokio::spawn(async move { client.me().await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("task").expect("me");
    }
    let (refreshes, reused) = {
        let state = s.fake.state();
        (state.refreshes, state.reuse_detected)
    };
    assert_eq!(refreshes, 1);
    assert!(!reused);

    // Fresh for 15 minutes now: no refresh until the clock nears the end.
    s.client.me().await.expect("me");
    assert_eq!(s.fake.state().refreshes, 1);
    s.clock.advance_ms(900_000 - REFRESH_MARGIN_MS + 1);
    s.client.me().await.expect("me");
    assert_eq!(s.fake.state().refreshes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_expired_answer_refreshes_once_and_retries() {
    // Valid by the local clock, but the server says expired (a skewed clock).
    let s = setup(900_000, true).await;
    s.fake.state().access_expired = true;
    let calls = (0..5).map(|_| {
        let client = s.client.clone();
        tokio::spawn(async move { client.me().await })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.expect("task").expect("me after refresh");
    }
    let (refreshes, reused) = {
        let state = s.fake.state();
        (state.refreshes, state.reuse_detected)
    };
    assert_eq!(refreshes, 1);
    assert!(!reused);
    // The rotated tokens were stored.
    let stored = s
        .client
        .shared
        .store
        .session()
        .expect("read")
        .expect("session");
    assert_eq!(stored.tokens.refresh_token, "r2");
}

#[tokio::test]
async fn refused_refresh_ends_the_session() {
    let s = setup(30_000, true).await;
    s.fake.state().refresh_invalid = true;
    // Whatever sign-in left behind (it may already have refreshed once), it is stale now.
    s.clock.advance_ms(3_600_000);
    let ended = s.client.me().await;
    assert!(matches!(ended, Err(ClientError::SessionEnded)), "{ended:?}");
    assert!(!s.client.is_signed_in());
    assert!(matches!(s.client.me().await, Err(ClientError::NotSignedIn)));
}

#[tokio::test]
async fn revoked_session_ends_locally() {
    let s = setup(900_000, true).await;
    s.fake.state().revoked = true;
    let ended = s.client.me().await;
    assert!(matches!(ended, Err(ClientError::SessionEnded)), "{ended:?}");
    assert_eq!(s.client.session(), None);
    assert_eq!(
        s.fake.state().refreshes,
        0,
        "a revoked session is not refreshed"
    );
}

#[tokio::test]
async fn sign_out_clears_session_and_keys() {
    let s = setup(900_000, true).await;
    s.client.sign_out().await.expect("sign out");
    assert!(s.fake.state().signed_out);
    assert!(!s.client.is_signed_in());
    assert!(s.client.shared.store.identity().expect("read").is_none());
    assert!(matches!(
        s.client.sign_out().await,
        Err(ClientError::NotSignedIn)
    ));

    // Signing in again makes a new identity.
    s.client
        .sign_in("+12015550123".into(), GOOD_CODE.into(), "test".into())
        .await
        .expect("sign in");
    let keys = s.fake.state().sign_in_keys.clone();
    assert_ne!(keys[0], keys[1]);
}

#[tokio::test]
async fn sign_out_of_an_ended_session_succeeds() {
    let s = setup(900_000, true).await;
    s.fake.state().revoked = true;
    s.client
        .sign_out()
        .await
        .expect("already ended counts as signed out");
    assert!(!s.client.is_signed_in());
}

#[tokio::test]
async fn unreachable_server_is_a_network_error() {
    let s = setup(900_000, false).await;
    // A port nothing listens on (bound, then closed).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let client = Client::new(
        format!("http://127.0.0.1:{port}"),
        s.home.path().join("other").display().to_string(),
    )
    .expect("client");
    let err = client
        .request_code("+12015550123".into())
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Network { .. }), "{err:?}");
    assert!(err.to_string().starts_with("network error: "));
}

#[test]
fn constructor_checks_arguments() {
    let home = tempfile::tempdir().expect("tempdir");
    let dir = home.path().join("a/b").display().to_string();
    assert!(matches!(
        Client::new("not a url".into(), dir.clone()),
        Err(ClientError::InvalidInput { .. })
    ));
    assert!(matches!(
        Client::new("http://127.0.0.1:7700".into(), String::new()),
        Err(ClientError::InvalidInput { .. })
    ));
    // No runtime needed: nothing connects yet.
    Client::new("http://127.0.0.1:7700".into(), dir).expect("client");
    let db = home.path().join("a/b").join(DATABASE_FILE);
    assert!(db.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.path().join("a/b"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}

#[test]
fn example_phone_number_is_valid() {
    // The Python test signs in with these numbers; the server requires `is_valid()`.
    for phone in ["+12015550123", "+12015550124"] {
        let number = phonenumber::parse(None, phone).expect("parses");
        assert!(phonenumber::is_valid(&number), "{phone}");
    }
    let number = phonenumber::parse(None, "+15555550100").expect("parses");
    assert!(!phonenumber::is_valid(&number), "555 is no area code");
}
