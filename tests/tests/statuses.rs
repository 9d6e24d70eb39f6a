//! Statuses end to end through the gateway of `juntos all`, driven by client-core: audiences,
//! the 100-in-24-hours limit with the exact wait, expiry at 24 hours (the server's clock moved
//! forward), early deletion, "seen" reports, and no plaintext in the server's stores.

use std::time::Duration;

use juntos_client::{Client, ClientError, StatusAudience, StatusInfo};
use juntos_tests::clients::{assert_no_plaintext, bulk_builder, signed_in};
use juntos_tests::{ALICE, BOB, CAROL, System};

const DAVE: &str = "+12015550104";
const EVE: &str = "+12015550105";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

async fn system() -> System {
    bulk_builder().arg("--status-sweep-secs", "1").start().await
}

/// The statuses `client` sees after picking up what waits in its mailbox (the posters' keys).
async fn seen(client: &Client) -> Vec<StatusInfo> {
    client.sync_now().await.expect("sync");
    client.statuses().list().await.expect("statuses")
}

fn texts(statuses: &[StatusInfo]) -> Vec<String> {
    statuses.iter().map(|s| s.text.clone()).collect()
}

#[tokio::test]
async fn statuses_reach_exactly_their_audience_and_the_poster_learns_who_saw_them() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let carol = signed_in(&sys, "carol", CAROL).await;
    let dave = signed_in(&sys, "dave", DAVE).await;
    let eve = signed_in(&sys, "eve", EVE).await;
    // Alice's contacts: Bob, Carol and Dave (found by number); Eve is a stranger to her.
    alice
        .profile()
        .get(vec![BOB.to_owned(), CAROL.to_owned(), DAVE.to_owned()])
        .await
        .expect("look up contacts");

    let everyone = alice
        .statuses()
        .post("gone sailing".to_owned(), StatusAudience::Contacts)
        .await
        .expect("post");
    assert!(everyone.own);
    assert_eq!(everyone.expires_ms - everyone.posted_ms, DAY_MS);
    let not_carol = alice
        .statuses()
        .post(
            "surprise party for carol".to_owned(),
            StatusAudience::ContactsExcept {
                excluded: vec![CAROL.to_owned()],
            },
        )
        .await
        .expect("post");
    alice
        .statuses()
        .post(
            "dave only".to_owned(),
            StatusAudience::Only {
                members: vec![DAVE.to_owned()],
            },
        )
        .await
        .expect("post");

    // Newest first.
    assert_eq!(
        texts(&seen(&bob).await),
        ["surprise party for carol", "gone sailing"]
    );
    assert_eq!(texts(&seen(&carol).await), ["gone sailing"]);
    assert_eq!(
        texts(&seen(&dave).await),
        ["dave only", "surprise party for carol", "gone sailing"]
    );
    assert!(seen(&eve).await.is_empty(), "a stranger sees nothing");
    let own = seen(&alice).await;
    assert_eq!(own.len(), 3);
    assert!(own.iter().all(|s| s.own && s.seen_by.is_empty()));

    // Bob views one: Alice learns it (encrypted, through her mailbox).
    let on_bob = seen(&bob).await;
    assert!(on_bob.iter().all(|s| !s.viewed));
    let viewed = bob
        .statuses()
        .view(everyone.status_id.clone())
        .await
        .expect("view");
    assert!(viewed.viewed);
    assert_eq!(bob.flush_outbox().await.expect("flush"), 0);
    let bob_id = bob.session().expect("bob").user_id;
    let own = seen(&alice).await;
    let first = own
        .iter()
        .find(|s| s.status_id == everyone.status_id)
        .expect("alice's status");
    assert_eq!(first.seen_by, [bob_id]);

    // Alice deletes one early: gone for everyone.
    alice
        .statuses()
        .delete(not_carol.status_id.clone())
        .await
        .expect("delete");
    assert_eq!(texts(&seen(&bob).await), ["gone sailing"]);
    assert_eq!(seen(&alice).await.len(), 2);
    let again = alice
        .statuses()
        .delete(not_carol.status_id.clone())
        .await
        .expect_err("already gone");
    assert!(!matches!(again, ClientError::Network { .. }), "{again}");
}

#[tokio::test]
async fn the_101st_status_of_a_day_waits_for_the_oldest_to_expire() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let only_bob = || StatusAudience::Only {
        members: vec![BOB.to_owned()],
    };
    alice
        .statuses()
        .post("first".to_owned(), only_bob())
        .await
        .expect("post 1");
    sys.advance_clock(Duration::from_secs(600));
    for i in 2..=100 {
        alice
            .statuses()
            .post(format!("status {i}"), only_bob())
            .await
            .unwrap_or_else(|e| panic!("post {i}: {e}"));
    }
    let refused = alice
        .statuses()
        .post("one too many".to_owned(), only_bob())
        .await
        .expect_err("the 101st");
    let ClientError::RateLimited {
        retry_after_seconds,
        reason,
    } = refused
    else {
        panic!("expected a rate limit, got {refused}");
    };
    assert_eq!(reason, "STATUS_LIMIT");
    // The first status expires 24 h after it was posted, 10 minutes ago (give or take the
    // seconds these posts took).
    let expected = 24 * 60 * 60 - 600;
    assert!(
        (expected - 120..=expected).contains(&retry_after_seconds),
        "retry after {retry_after_seconds} s, expected about {expected}"
    );
    assert_eq!(seen(&bob).await.len(), 100);

    // Once the first expires, one more fits (and only one).
    sys.advance_clock(Duration::from_secs(retry_after_seconds + 1));
    alice
        .statuses()
        .post("room again".to_owned(), only_bob())
        .await
        .expect("a slot freed");
    let refused = alice
        .statuses()
        .post("and again".to_owned(), only_bob())
        .await
        .expect_err("full again");
    assert!(
        matches!(refused, ClientError::RateLimited { .. }),
        "{refused}"
    );
    let on_bob = seen(&bob).await;
    assert_eq!(on_bob.len(), 100, "the first expired, one came");
    assert_eq!(on_bob[0].text, "room again");
}

#[tokio::test]
async fn statuses_expire_after_24_hours_everywhere_and_the_server_keeps_no_plaintext() {
    let sys = system().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let secret = "the key is under the mat";
    alice
        .statuses()
        .post(
            secret.to_owned(),
            StatusAudience::Only {
                members: vec![BOB.to_owned()],
            },
        )
        .await
        .expect("post");
    assert_eq!(texts(&seen(&bob).await), [secret]);
    assert_no_plaintext(&sys, &[secret]);

    // A minute short of a day: still there.
    sys.advance_clock(Duration::from_secs(24 * 60 * 60 - 60));
    assert_eq!(seen(&bob).await.len(), 1);
    sys.advance_clock(Duration::from_secs(61));
    assert!(seen(&bob).await.is_empty(), "expired for the viewer");
    assert!(seen(&alice).await.is_empty(), "and for the poster");
    // The server's sweeper deletes it (every second here).
    let mut left = i64::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let db = rusqlite::Connection::open_with_flags(
            sys.data_dir().join("media.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open media.db");
        left = db
            .query_row("SELECT count(*) FROM statuses", [], |r| r.get(0))
            .expect("count");
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "the server deleted the expired status");
}
