//! The gateway as the one public endpoint: what it routes, what it refuses, which headers it
//! trusts, and its limits.

use std::time::Duration;

use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::login_internal_client::LoginInternalClient;
use juntos_proto::login::v1::{GetVerificationKeysRequest, ListRevocationsRequest, MeRequest};
use juntos_proto::otp::v1::otp_client::OtpClient;
use juntos_proto::otp::v1::{RequestCodeRequest, VerifyCodeRequest};
use juntos_tests::raw::{self, authed, reason};
use juntos_tests::{ALICE, BOB, CAROL, System};
use tonic::Code;
use tonic::metadata::MetadataValue;

#[tokio::test]
async fn spoofed_identity_headers_are_ignored() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let alice = raw::sign_in(&sys, &channel, ALICE, "a").await;
    let bob = raw::sign_in(&sys, &channel, BOB, "b").await;
    let mut login = LoginClient::new(channel);

    // Alice's token with Bob's identity in the headers: the gateway's verified identity wins.
    let mut request = authed(MeRequest {}, &alice.tokens.expect("tokens").access_token);
    for (name, value) in [
        ("x-juntos-user-id", bob.user_id.as_str()),
        ("x-juntos-device-id", bob.device_id.as_str()),
        ("x-juntos-session-id", "forged"),
    ] {
        request
            .metadata_mut()
            .insert(name, MetadataValue::try_from(value).expect("value"));
    }
    let me = login.me(request).await.expect("me").into_inner();
    assert_eq!(
        (me.user_id, me.device_id, me.phone),
        (alice.user_id, alice.device_id, ALICE.to_owned())
    );

    // Identity headers without a token get nowhere.
    let mut request = tonic::Request::new(MeRequest {});
    request.metadata_mut().insert(
        "x-juntos-user-id",
        MetadataValue::try_from(bob.user_id.as_str()).expect("value"),
    );
    request.metadata_mut().insert(
        "x-juntos-device-id",
        MetadataValue::try_from(bob.device_id.as_str()).expect("value"),
    );
    request
        .metadata_mut()
        .insert("x-juntos-session-id", MetadataValue::from_static("s"));
    let refused = login.me(request).await.expect_err("no token");
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::Unauthenticated, "MISSING_TOKEN".to_owned())
    );

    let refused = login
        .me(authed(MeRequest {}, "v4.public.forged"))
        .await
        .expect_err("bad token");
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::Unauthenticated, "INVALID_TOKEN".to_owned())
    );
}

#[tokio::test]
async fn spoofed_client_addresses_do_not_escape_the_per_address_limit() {
    let sys = System::builder()
        .arg("--otp-ip-limit-per-hour", "3")
        .start()
        .await;
    let mut otp = OtpClient::new(sys.channel().await);
    let phones = [ALICE, BOB, CAROL, "+12015550104"];
    let mut answers = Vec::new();
    for (i, phone) in phones.iter().enumerate() {
        let mut request = tonic::Request::new(RequestCodeRequest {
            phone: (*phone).to_owned(),
        });
        let fake = format!("203.0.113.{i}");
        for name in ["x-juntos-client-ip", "x-forwarded-for", "x-real-ip"] {
            request
                .metadata_mut()
                .insert(name, MetadataValue::try_from(fake.as_str()).expect("value"));
        }
        answers.push(otp.request_code(request).await);
    }
    assert!(answers[..3].iter().all(Result::is_ok), "{answers:?}");
    let refused = answers[3]
        .as_ref()
        .expect_err("fourth request from the same address");
    assert_eq!(
        (refused.code(), reason(refused)),
        (Code::ResourceExhausted, "IP_LIMIT".to_owned())
    );
}

#[tokio::test]
async fn internal_methods_are_unreachable_from_outside() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let alice = raw::sign_in(&sys, &channel, ALICE, "a").await;
    let token = alice.tokens.expect("tokens").access_token;

    let verify = OtpClient::new(channel.clone())
        .verify_code(authed(
            VerifyCodeRequest {
                phone: ALICE.to_owned(),
                code: "123456".to_owned(),
            },
            &token,
        ))
        .await
        .expect_err("internal");
    assert_eq!(
        (verify.code(), reason(&verify)),
        (Code::PermissionDenied, "NOT_PUBLIC".to_owned())
    );
    let mut internal = LoginInternalClient::new(channel.clone());
    let keys = internal
        .get_verification_keys(GetVerificationKeysRequest {})
        .await
        .expect_err("internal");
    assert_eq!(keys.code(), Code::PermissionDenied);
    let revocations = internal
        .list_revocations(authed(ListRevocationsRequest { since_ms: 0 }, &token))
        .await
        .expect_err("internal");
    assert_eq!(revocations.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn the_gateway_serves_health_and_reflection() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for wanted in [
        "juntos.otp.v1.Otp",
        "juntos.login.v1.Login",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == wanted),
            "{wanted} missing from {names:?}"
        );
    }
    // Only what a client may call: internal services are not even described.
    assert!(
        !names.iter().any(|n| n.ends_with("Internal")),
        "internal services listed: {names:?}"
    );

    // Health answers for public services only.
    let mut health = tonic_health::pb::health_client::HealthClient::new(sys.channel().await);
    let check = |service: &str| tonic_health::pb::HealthCheckRequest {
        service: service.to_owned(),
    };
    let chat = health
        .check(check("juntos.chat.v1.Chat"))
        .await
        .expect("chat health")
        .into_inner();
    assert_eq!(
        chat.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let internal = health
        .check(check("juntos.login.v1.LoginInternal"))
        .await
        .expect_err("not a public service");
    assert_eq!(internal.code(), Code::NotFound);
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let sys = System::builder()
        .arg("--max-message-bytes", "4096")
        .start()
        .await;
    let mut otp = OtpClient::new(sys.channel().await);
    let refused = otp
        .request_code(RequestCodeRequest {
            phone: "+".repeat(64 * 1024),
        })
        .await
        .expect_err("too large");
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE".to_owned())
    );
    // A normal request on the same connection still works.
    otp.request_code(RequestCodeRequest {
        phone: ALICE.to_owned(),
    })
    .await
    .expect("normal size");
}

#[tokio::test]
async fn the_per_address_token_bucket_limits_bursts() {
    let sys = System::builder()
        .arg("--ip-rate", "1")
        .arg("--ip-burst", "3")
        .start()
        .await;
    // Let the readiness probe's tokens refill before measuring.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut login = LoginClient::new(sys.channel().await);
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(login.me(MeRequest {}).await.expect_err("no token").code());
    }
    assert_eq!(
        codes,
        [
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::ResourceExhausted
        ]
    );
}

#[tokio::test]
async fn unknown_methods_are_unimplemented() {
    let sys = System::start().await;
    let mut grpc = tonic::client::Grpc::new(sys.channel().await);
    grpc.ready().await.expect("ready");
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let status = grpc
        .unary(
            tonic::Request::new(()),
            "/other.v1.Service/Method".parse().expect("path"),
            codec,
        )
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::Unimplemented);
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let mut sys = System::start().await;
    let status = sys.processes()[0].terminate();
    assert!(status.success(), "juntos exited with {status}");
}
