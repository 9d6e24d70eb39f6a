//! Phone sign-in end to end through the gateway of `juntos all`, driven by client-core as an app
//! would, and by raw gRPC where the wire itself is the point.

use std::time::{Duration, Instant};

use juntos_client::ClientError;
use juntos_proto::error::retry_after_of;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_proto::login::v1::{MeRequest, RefreshRequest, SignOutRequest};
use juntos_tests::clients::{another_device, awaiting_code};
use juntos_tests::raw::{self, authed, reason};
use juntos_tests::{ALICE, BOB, CAROL, System};
use tonic::Code;

#[tokio::test]
async fn full_sign_in_then_a_second_device_joins_the_same_account() {
    let sys = System::start().await;
    let phone = sys.client("phone");
    let sent = phone
        .request_code(ALICE.to_owned())
        .await
        .expect("code requested");
    assert_eq!(sent.code_length, 6);
    assert_eq!(sent.expires_in_seconds, 300);
    let account = phone
        .sign_in(ALICE.to_owned(), sys.last_code(ALICE), "phone".to_owned())
        .await
        .expect("signed in");
    assert!(account.new_account);
    let me = phone.me().await.expect("me");
    assert_eq!(
        (me.user_id.as_str(), me.device_id.as_str()),
        (account.user_id.as_str(), account.device_id.as_str())
    );
    assert_eq!(me.phone, ALICE);

    // Another device of the same person: same account, a new device.
    sys.advance_clock(Duration::from_secs(31));
    let (laptop, second) = another_device(&sys, "laptop", ALICE).await;
    assert!(!second.new_account);
    assert_eq!(second.user_id, account.user_id);
    assert_ne!(second.device_id, account.device_id);
    let devices = laptop.me().await.expect("me").devices;
    assert_eq!(devices.len(), 2, "both devices are listed");

    // The console sender wrote one JSON line per code with the full number.
    let outbox = sys.sms_outbox();
    assert_eq!(outbox.len(), 2);
    assert!(
        outbox
            .iter()
            .all(|(to, body)| to == ALICE && body.contains("Juntos"))
    );
}

#[tokio::test]
async fn the_fifth_wrong_code_burns_it() {
    let sys = System::start().await;
    let client = awaiting_code(&sys, "a", ALICE).await;
    let right = sys.last_code(ALICE);
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (1..=4).rev() {
        match client
            .sign_in(ALICE.to_owned(), wrong.to_owned(), "a".to_owned())
            .await
        {
            Err(ClientError::WrongCode { attempts_left }) => assert_eq!(attempts_left, left),
            other => panic!("expected WrongCode, got {other:?}"),
        }
    }
    let fifth = client
        .sign_in(ALICE.to_owned(), wrong.to_owned(), "a".to_owned())
        .await;
    assert!(
        matches!(fifth, Err(ClientError::TooManyAttempts)),
        "got {fifth:?}"
    );
    let after = client
        .sign_in(ALICE.to_owned(), right, "a".to_owned())
        .await;
    assert!(
        matches!(after, Err(ClientError::NoCodePending)),
        "the burned code stays burned: {after:?}"
    );
}

#[tokio::test]
async fn a_code_expires_after_five_minutes_and_is_single_use() {
    let sys = System::start().await;
    let client = awaiting_code(&sys, "a", ALICE).await;
    let code = sys.last_code(ALICE);
    sys.advance_clock(Duration::from_secs(5 * 60 + 1));
    let expired = client.sign_in(ALICE.to_owned(), code, "a".to_owned()).await;
    assert!(
        matches!(expired, Err(ClientError::CodeExpired)),
        "got {expired:?}"
    );
    assert_eq!(expired.expect_err("expired").to_string().lines().count(), 1);

    client
        .request_code(ALICE.to_owned())
        .await
        .expect("new code");
    let code = sys.last_code(ALICE);
    client
        .sign_in(ALICE.to_owned(), code.clone(), "a".to_owned())
        .await
        .expect("signed in");
    let other = sys.client("b");
    let reused = other.sign_in(ALICE.to_owned(), code, "b".to_owned()).await;
    assert!(
        matches!(reused, Err(ClientError::NoCodePending)),
        "a code works once: {reused:?}"
    );
}

#[tokio::test]
async fn resends_follow_the_schedule() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let first = raw::request_code(&channel, ALICE)
        .await
        .expect("first code");
    assert_eq!(first.resend_after_seconds, 30);
    for (wait, next_wait) in [(30, 60), (60, 300), (300, 600), (600, 600)] {
        let refused = raw::request_code(&channel, ALICE)
            .await
            .expect_err("too soon");
        assert_eq!(refused.code(), Code::ResourceExhausted);
        assert_eq!(reason(&refused), "RESEND_TOO_SOON");
        let retry = retry_after_of(&refused).expect("retry info");
        assert!(
            retry <= Duration::from_secs(wait) && retry > Duration::from_secs(wait - 2),
            "retry {retry:?} for {wait}"
        );
        sys.advance_clock(Duration::from_secs(wait) - Duration::from_secs(2));
        assert!(
            raw::request_code(&channel, ALICE).await.is_err(),
            "still too soon just before {wait} s"
        );
        sys.advance_clock(Duration::from_secs(3));
        let sent = raw::request_code(&channel, ALICE)
            .await
            .expect("allowed again");
        assert_eq!(sent.resend_after_seconds, next_wait);
    }
    // The client shows the wait as a rate limit with a retry time.
    match sys.client("a").request_code(ALICE.to_owned()).await {
        Err(ClientError::RateLimited {
            retry_after_seconds,
            ..
        }) => assert!(retry_after_seconds > 590),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

#[tokio::test]
async fn at_most_ten_codes_per_number_per_day() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    for _ in 0..10 {
        raw::request_code(&channel, ALICE)
            .await
            .expect("within the daily cap");
        sys.advance_clock(Duration::from_secs(601));
    }
    let refused = raw::request_code(&channel, ALICE)
        .await
        .expect_err("11th code");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "DAILY_LIMIT");
    assert!(retry_after_of(&refused).expect("retry info") > Duration::from_secs(3600));
    // Other numbers are unaffected; the next day the number gets codes again.
    raw::request_code(&channel, BOB)
        .await
        .expect("another number");
    sys.advance_clock(Duration::from_secs(24 * 3600));
    raw::request_code(&channel, ALICE).await.expect("a new day");
}

#[tokio::test]
async fn the_country_budget_stops_sms_pumping() {
    let sys = System::builder()
        .arg("--otp-country-budget-per-hour", "2")
        .start()
        .await;
    let channel = sys.channel().await;
    raw::request_code(&channel, ALICE).await.expect("+1 first");
    raw::request_code(&channel, BOB).await.expect("+1 second");
    let refused = raw::request_code(&channel, "+12015550103")
        .await
        .expect_err("+1 budget spent");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(reason(&refused), "COUNTRY_BUDGET");
    assert!(retry_after_of(&refused).is_some());
    raw::request_code(&channel, CAROL)
        .await
        .expect("+44 has its own budget");
    sys.advance_clock(Duration::from_secs(3601));
    raw::request_code(&channel, "+12015550103")
        .await
        .expect("the next hour");
}

#[tokio::test]
async fn answers_are_identical_for_known_and_unknown_numbers() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    raw::sign_in(&sys, &channel, ALICE, "alice").await;
    sys.advance_clock(Duration::from_secs(31));
    let known = raw::request_code(&channel, ALICE)
        .await
        .expect("known number");
    let unknown = raw::request_code(&channel, BOB)
        .await
        .expect("unknown number");
    assert_eq!(known, unknown);
    // Within the resend wait both are refused alike (the wait differs only by the schedule).
    let known = raw::request_code(&channel, ALICE)
        .await
        .expect_err("too soon");
    let unknown = raw::request_code(&channel, BOB)
        .await
        .expect_err("too soon");
    assert_eq!(
        (known.code(), reason(&known)),
        (unknown.code(), reason(&unknown))
    );
    assert_eq!(known.message(), unknown.message());
}

#[tokio::test]
async fn invalid_numbers_are_refused_with_a_clear_error() {
    let sys = System::start().await;
    let client = sys.client("a");
    for junk in [
        "5551234567",
        "+1 201 555 0101",
        "+1",
        "+999123456789",
        "",
        "+12015550101x",
    ] {
        match client.request_code(junk.to_owned()).await {
            Err(ClientError::InvalidPhoneNumber { message }) => {
                assert!(message.contains("E.164"), "{message}")
            }
            other => panic!("{junk:?}: expected InvalidPhoneNumber, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let signed_in = raw::sign_in(&sys, &channel, ALICE, "a").await;
    let mut login = LoginClient::new(channel.clone());
    let first = signed_in.tokens.expect("tokens");
    let refresh = |token: &str| RefreshRequest {
        refresh_token: token.to_owned(),
    };

    let second = login
        .refresh(refresh(&first.refresh_token))
        .await
        .expect("rotated")
        .into_inner()
        .tokens
        .expect("tokens");
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(second.access_token, first.access_token);
    let third = login
        .refresh(refresh(&second.refresh_token))
        .await
        .expect("rotated")
        .into_inner()
        .tokens
        .expect("tokens");
    login
        .me(authed(MeRequest {}, &third.access_token))
        .await
        .expect("new access token works");

    // The first token again: reuse is detected and the whole family is revoked.
    let reused = login
        .refresh(refresh(&first.refresh_token))
        .await
        .expect_err("reuse");
    assert_eq!(
        (reused.code(), reason(&reused)),
        (Code::Unauthenticated, "REFRESH_TOKEN_REUSED".to_owned())
    );
    let newest = login
        .refresh(refresh(&third.refresh_token))
        .await
        .expect_err("family revoked");
    assert_eq!(
        (newest.code(), reason(&newest)),
        (Code::Unauthenticated, "INVALID_REFRESH_TOKEN".to_owned())
    );
    let revoked = wait_for_refusal(&mut login, &third.access_token).await;
    assert_eq!(reason(&revoked), "SESSION_REVOKED");
}

#[tokio::test]
async fn sign_out_revokes_within_a_second() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let signed_in = raw::sign_in(&sys, &channel, ALICE, "a").await;
    let tokens = signed_in.tokens.expect("tokens");
    let mut login = LoginClient::new(channel.clone());
    login
        .me(authed(MeRequest {}, &tokens.access_token))
        .await
        .expect("signed in");
    login
        .sign_out(authed(SignOutRequest {}, &tokens.access_token))
        .await
        .expect("signed out");
    let started = Instant::now();
    let refused = wait_for_refusal(&mut login, &tokens.access_token).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "revocation took {:?}",
        started.elapsed()
    );
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::Unauthenticated, "SESSION_REVOKED".to_owned())
    );
    let refresh = login
        .refresh(RefreshRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .expect_err("revoked");
    assert_eq!(reason(&refresh), "INVALID_REFRESH_TOKEN");

    // The client library: sign out, then it knows it is signed out.
    let client = sys.client("b");
    sys.advance_clock(Duration::from_secs(31));
    client.request_code(ALICE.to_owned()).await.expect("code");
    client
        .sign_in(ALICE.to_owned(), sys.last_code(ALICE), "b".to_owned())
        .await
        .expect("signed in");
    client.sign_out().await.expect("signed out");
    assert!(!client.is_signed_in());
    assert!(matches!(client.me().await, Err(ClientError::NotSignedIn)));
}

#[tokio::test]
async fn access_tokens_expire_and_the_client_refreshes_by_itself() {
    let sys = System::start().await;
    let channel = sys.channel().await;
    let signed_in = raw::sign_in(&sys, &channel, ALICE, "raw").await;
    let client = sys.client("app");
    sys.advance_clock(Duration::from_secs(31));
    client.request_code(ALICE.to_owned()).await.expect("code");
    client
        .sign_in(ALICE.to_owned(), sys.last_code(ALICE), "app".to_owned())
        .await
        .expect("signed in");

    sys.advance_clock(Duration::from_secs(16 * 60));
    let mut login = LoginClient::new(channel);
    let expired = login
        .me(authed(
            MeRequest {},
            &signed_in.tokens.expect("tokens").access_token,
        ))
        .await
        .expect_err("expired");
    assert_eq!(
        (expired.code(), reason(&expired)),
        (Code::Unauthenticated, "TOKEN_EXPIRED".to_owned())
    );
    // The app's client sees the expiry, refreshes once, and the call succeeds.
    let me = client.me().await.expect("refreshed transparently");
    assert_eq!(me.phone, ALICE);
    client.me().await.expect("and keeps working");
}

/// Calls `Me` with `token` until the gateway refuses it (at most 2 s).
async fn wait_for_refusal(
    login: &mut LoginClient<tonic::transport::Channel>,
    token: &str,
) -> tonic::Status {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match login.me(authed(MeRequest {}, token)).await {
            Err(status) => return status,
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(_) => panic!("the token still works after 2 s"),
        }
    }
}
