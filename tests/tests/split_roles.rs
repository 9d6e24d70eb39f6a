//! The roles as separate processes, as in a cluster: otp on a real Redis, SMS through the fake
//! Twilio, login and the gateway on their own.

use juntos_client::ClientError;
use juntos_tests::clients::awaiting_code;
use juntos_tests::raw::{self, reason};
use juntos_tests::{ALICE, BOB, System};
use tonic::Code;

/// The roles as separate processes, otp on Redis and SMS through the fake Twilio.
async fn split_system() -> System {
    System::builder()
        .split_roles()
        .with_redis()
        .with_twilio()
        .start()
        .await
}

#[tokio::test]
async fn sign_in_across_separate_roles_with_redis_and_twilio() {
    let sys = split_system().await;
    let client = awaiting_code(&sys, "a", ALICE).await;
    let twilio = sys.twilio.as_ref().expect("twilio");
    let sent = twilio.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].to.as_str(), sent[0].from.as_str()),
        (ALICE, juntos_tests::twilio_from())
    );
    let account = client
        .sign_in(ALICE.to_owned(), sys.last_code(ALICE), "a".to_owned())
        .await
        .expect("signed in");
    assert_eq!(client.me().await.expect("me").user_id, account.user_id);

    // Codes live in Redis: the wrong-code count and burning work there too.
    let other = awaiting_code(&sys, "b", BOB).await;
    for _ in 0..4 {
        let wrong = other
            .sign_in(BOB.to_owned(), "000000".to_owned(), "b".to_owned())
            .await;
        assert!(
            matches!(wrong, Err(ClientError::WrongCode { .. })),
            "{wrong:?}"
        );
    }
    let fifth = other
        .sign_in(BOB.to_owned(), "000000".to_owned(), "b".to_owned())
        .await;
    assert!(
        matches!(fifth, Err(ClientError::TooManyAttempts)),
        "{fifth:?}"
    );
}

#[tokio::test]
async fn twilio_server_errors_are_retried_and_client_errors_are_not() {
    let sys = split_system().await;
    let twilio = sys.twilio.as_ref().expect("twilio");
    let channel = sys.channel().await;

    twilio.fail_next(503, 2);
    raw::request_code(&channel, ALICE)
        .await
        .expect("sent on the third try");
    assert_eq!(twilio.requests(), 3);
    assert_eq!(twilio.messages().len(), 1);

    twilio.fail_next(400, 1);
    let refused = raw::request_code(&channel, BOB)
        .await
        .expect_err("rejected by the provider");
    assert_eq!(
        (refused.code(), reason(&refused)),
        (Code::InvalidArgument, "SMS_REJECTED".to_owned())
    );
    assert_eq!(twilio.requests(), 4, "a 4xx is not retried");

    twilio.fail_next(503, 10);
    let down = raw::request_code(&channel, "+12015550104")
        .await
        .expect_err("provider down");
    assert_eq!(
        (down.code(), reason(&down)),
        (Code::Unavailable, "SMS_UNAVAILABLE".to_owned())
    );
}
