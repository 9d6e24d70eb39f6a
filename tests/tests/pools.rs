//! Gateway pools: several processes per role behind one gateway, health checks taking dead
//! ones out of rotation, idempotent calls retried on another endpoint, DNS-named endpoints, and
//! streams to a dead chat pod ended so clients reconnect.

use std::time::{Duration, Instant};

use juntos_proto::chat::v1::ClientFrame;
use juntos_proto::chat::v1::chat_client::ChatClient;
use juntos_proto::login::v1::MeRequest;
use juntos_proto::login::v1::login_client::LoginClient;
use juntos_tests::raw::{self, authed};
use juntos_tests::{ALICE, System};
use tonic::transport::Channel;

/// Signs ALICE in through the gateway; her access token.
async fn access_token(sys: &System, channel: &Channel) -> String {
    raw::sign_in(sys, channel, ALICE, "a")
        .await
        .tokens
        .expect("tokens")
        .access_token
}

async fn me(channel: &Channel, token: &str) -> Result<String, tonic::Status> {
    LoginClient::new(channel.clone())
        .me(authed(MeRequest {}, token))
        .await
        .map(|r| r.into_inner().user_id)
}

/// Opens a Connect stream that sends nothing and waits for how it ends.
async fn connect(
    channel: &Channel,
    token: &str,
) -> tonic::Streaming<juntos_proto::chat::v1::ServerFrame> {
    ChatClient::new(channel.clone())
        .connect(authed(tokio_stream::pending::<ClientFrame>(), token))
        .await
        .expect("stream opened")
        .into_inner()
}

#[tokio::test]
async fn requesting_codes_keeps_working_after_an_otp_pod_is_killed() {
    let sys = System::builder()
        .otp_pods(2)
        .with_redis()
        .arg("--health-interval-secs", "1")
        .start()
        .await;
    let channel = sys.channel().await;
    let phone = |i: usize| format!("+120155501{i:02}");
    for i in 10..14 {
        raw::request_code(&channel, &phone(i))
            .await
            .expect("both pods serve");
    }

    sys.signal("otp", 0, "KILL");
    // RequestCode is not retried (it sends an SMS), so calls to the dead pod fail until the
    // health checker takes it out; then every call succeeds.
    let started = Instant::now();
    let mut i = 20;
    let mut in_a_row = 0;
    while in_a_row < 6 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the dead otp pod was never taken out of rotation"
        );
        in_a_row = match raw::request_code(&channel, &phone(i)).await {
            Ok(_) => in_a_row + 1,
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                0
            }
        };
        i += 1;
    }
}

#[tokio::test]
async fn idempotent_calls_retry_on_another_login_pod_right_after_one_dies() {
    // The default 2 s health interval: the dead pod stays in rotation for a while, so only the
    // retry keeps these calls succeeding.
    let sys = System::builder().login_pods(2).start().await;
    let channel = sys.channel().await;
    let token = access_token(&sys, &channel).await;
    let user = me(&channel, &token).await.expect("me");

    sys.signal("login", 0, "KILL");
    for _ in 0..6 {
        assert_eq!(
            me(&channel, &token).await.expect("me on the first try"),
            user
        );
    }
}

#[tokio::test]
async fn dns_names_work_as_endpoint_lists() {
    let sys = System::builder().dns_endpoints().chat_pods(1).start().await;
    let channel = sys.channel().await;
    let token = access_token(&sys, &channel).await;
    me(&channel, &token)
        .await
        .expect("me through dns:///localhost");
    ChatClient::new(channel.clone())
        .sync(authed(
            juntos_proto::chat::v1::SyncRequest::default(),
            &token,
        ))
        .await
        .expect("sync through dns:///localhost");
}

#[tokio::test]
async fn a_connect_stream_ends_promptly_when_its_chat_pod_is_killed() {
    let sys = System::builder().chat_pods(1).start().await;
    let channel = sys.channel().await;
    let token = access_token(&sys, &channel).await;
    let mut stream = connect(&channel, &token).await;
    let open = tokio::time::timeout(Duration::from_millis(300), stream.message()).await;
    assert!(open.is_err(), "the stream stays open while the pod lives");

    sys.signal("chat", 0, "KILL");
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                end => return end,
            }
        }
    })
    .await
    .expect("the stream ended within 3 s of the kill");
    let status = ended.expect_err("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn a_connect_stream_to_a_frozen_chat_pod_is_ended_by_the_health_checks() {
    let sys = System::builder()
        .chat_pods(1)
        .arg("--health-interval-secs", "1")
        .start()
        .await;
    let channel = sys.channel().await;
    let token = access_token(&sys, &channel).await;
    let mut stream = connect(&channel, &token).await;

    // A stopped process keeps its connections open: only the health checks can tell.
    sys.signal("chat", 0, "STOP");
    let ended = tokio::time::timeout(Duration::from_secs(8), stream.message())
        .await
        .expect("the stream ended once the pod was marked unhealthy");
    let status = ended.expect_err("the stream ends with an error");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(raw::reason(&status), "UPSTREAM_UNAVAILABLE");
}
