//! The behavioural suite every [`StatusStore`] backend must pass. Each case takes a fresh, empty
//! store; a backend's tests run every case with one line, [`status_store_suite!`] (in
//! `sqlite.rs`, and in `mongo/tests.rs`, which runs them on SecantusDB or
//! `JUNTOS_TEST_MONGODB_URI`).
//!
//! Times are in the year 2100, so that a MongoDB TTL monitor (which goes by the wall clock)
//! never removes a test's statuses: expiry here is only ever what the store does at `now_ms`.

use super::{NewStatus, PostLimit, PostOutcome, StatusPage, StatusStore, StoredStatus};
use crate::status_id;

/// Runs every case of this suite, each as its own test, against the store `$fresh` makes:
/// `$fresh` is an expression evaluated inside each (async) test, so it may `.await`, evaluating
/// to `(guard, store)`; the guard (a temporary directory, a test server) lives as long as the
/// test. Invoke it at the level of a backend's test module: `status_store_suite!(fresh().await);`.
macro_rules! status_store_suite {
    ($fresh:expr) => {
        $crate::store::statuses::suite::status_store_suite!(
            @cases $fresh;
            post_and_list_round_trip,
            listing_follows_the_audience,
            listing_is_newest_first_and_paged,
            expired_statuses_are_not_listed,
            a_retried_post_returns_the_first_status,
            an_expired_client_status_id_can_be_posted_again,
            the_limit_counts_a_rolling_window,
            deleted_statuses_still_count_towards_the_limit,
            delete_only_the_posters_unexpired_statuses,
            sweep_removes_expired_statuses,
            concurrent_posts_never_pass_the_limit,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_guard, store) = $fresh;
                $crate::store::statuses::suite::$case(&store).await;
            }
        )*
    };
}
pub(crate) use status_store_suite;

/// 2100-01-01T00:00:00Z.
pub(crate) const T0: i64 = 4_102_444_800_000;
pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// The service's rule: 100 in 24 hours.
pub(crate) const LIMIT: PostLimit = PostLimit {
    max_posts: 100,
    window_ms: DAY_MS,
};

/// The id the suite gives the status `client_id` posted at `posted_ms` (deterministic, so a
/// case can name a status it posted).
pub(crate) fn status_id_at(posted_ms: i64, client_id: &str) -> String {
    // FNV-1a: any stable spread will do.
    let hash = client_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    status_id::format(posted_ms, hash)
}

/// A status of `poster` (device `<poster>-d1`) for `audience`, posted at `posted_ms`, living a
/// day, with the client id as its ciphertext.
pub(crate) fn new_status(
    poster: &str,
    client_id: &str,
    audience: &[&str],
    posted_ms: i64,
) -> NewStatus {
    NewStatus {
        status_id: status_id_at(posted_ms, client_id),
        poster_user_id: poster.into(),
        poster_device_id: format!("{poster}-d1"),
        client_status_id: client_id.into(),
        ciphertext: client_id.as_bytes().to_vec(),
        audience: audience.iter().map(|a| (*a).to_owned()).collect(),
        posted_ms,
        expires_ms: posted_ms + DAY_MS,
    }
}

async fn post(store: &dyn StatusStore, status: NewStatus) -> StoredStatus {
    match store.post(status, LIMIT).await.expect("post") {
        PostOutcome::Posted(posted) => posted,
        other => panic!("not posted: {other:?}"),
    }
}

/// When a slot frees for a post the limit refuses (the `posted_ms` of the status whose leaving
/// the window frees it).
async fn refused(store: &dyn StatusStore, status: NewStatus, limit: PostLimit) -> i64 {
    match store.post(status, limit).await.expect("post") {
        PostOutcome::Limit {
            frees_with_posted_ms,
        } => frees_with_posted_ms,
        other => panic!("not refused: {other:?}"),
    }
}

/// The client ids of what `viewer` sees at `now_ms`, newest first (one page of 1,000).
async fn seen(store: &dyn StatusStore, viewer: &str, now_ms: i64) -> Vec<String> {
    let page = store
        .list_visible(viewer, now_ms, None, 1_000)
        .await
        .expect("list");
    assert!(!page.more);
    page.statuses
        .into_iter()
        .map(|s| s.client_status_id)
        .collect()
}

/// The next page of `viewer`'s listing at `now_ms` after `page`: up to `limit` statuses below
/// its last one.
async fn page_after(
    store: &dyn StatusStore,
    viewer: &str,
    now_ms: i64,
    page: &StatusPage,
    limit: u32,
) -> StatusPage {
    let last = &page.statuses.last().expect("a last status").status_id;
    store
        .list_visible(viewer, now_ms, Some(last), limit)
        .await
        .expect("list")
}

/// Whether deleting `poster`'s status `status_id` at `now_ms` found it.
async fn deleted(store: &dyn StatusStore, poster: &str, status_id: &str, now_ms: i64) -> bool {
    store
        .delete(poster, status_id, now_ms)
        .await
        .expect("delete")
}

pub(crate) async fn post_and_list_round_trip(store: &dyn StatusStore) {
    let status = new_status("alice", "s1", &["bob"], T0);
    let posted = post(store, status.clone()).await;
    let expected = StoredStatus {
        status_id: status.status_id.clone(),
        poster_user_id: "alice".into(),
        poster_device_id: "alice-d1".into(),
        client_status_id: "s1".into(),
        ciphertext: b"s1".to_vec(),
        posted_ms: T0,
        expires_ms: T0 + DAY_MS,
    };
    assert_eq!(posted, expected);
    let page = store
        .list_visible("bob", T0 + 1, None, 10)
        .await
        .expect("list");
    assert_eq!(page.statuses, std::slice::from_ref(&expected));
    assert!(!page.more);
    // The poster sees its own.
    let page = store
        .list_visible("alice", T0 + 1, None, 10)
        .await
        .expect("list");
    assert_eq!(page.statuses, [expected]);
    // A 64 KiB ciphertext and a 5,000-viewer audience fit.
    let audience: Vec<String> = (0..5_000).map(|i| format!("viewer-{i:04}")).collect();
    let big = NewStatus {
        ciphertext: vec![7; 64 * 1024],
        audience: audience.clone(),
        ..new_status("alice", "big", &[], T0 + 2)
    };
    post(store, big).await;
    let page = store
        .list_visible("viewer-4999", T0 + 3, None, 10)
        .await
        .expect("list");
    assert_eq!(page.statuses.len(), 1);
    assert_eq!(page.statuses[0].ciphertext.len(), 64 * 1024);
}

pub(crate) async fn listing_follows_the_audience(store: &dyn StatusStore) {
    post(store, new_status("alice", "a1", &["bob", "carol"], T0)).await;
    post(store, new_status("alice", "a2", &["carol"], T0 + 1)).await;
    post(store, new_status("bob", "b1", &["alice"], T0 + 2)).await;
    post(store, new_status("dave", "d1", &[], T0 + 3)).await;
    let now = T0 + 10;
    assert_eq!(seen(store, "alice", now).await, ["b1", "a2", "a1"]);
    assert_eq!(seen(store, "bob", now).await, ["b1", "a1"]);
    assert_eq!(seen(store, "carol", now).await, ["a2", "a1"]);
    assert_eq!(seen(store, "dave", now).await, ["d1"]);
    assert!(seen(store, "eve", now).await.is_empty());
}

pub(crate) async fn listing_is_newest_first_and_paged(store: &dyn StatusStore) {
    // Interleaved: addressed to bob, and bob's own.
    for i in 0..7_i64 {
        let (poster, audience): (&str, &[&str]) = if i % 2 == 0 {
            ("alice", &["bob"])
        } else {
            ("bob", &["alice"])
        };
        post(
            store,
            new_status(poster, &format!("s{i}"), audience, T0 + i),
        )
        .await;
    }
    let now = T0 + 100;
    let first = store.list_visible("bob", now, None, 3).await.expect("list");
    let ids = |page: &StatusPage| {
        page.statuses
            .iter()
            .map(|s| s.client_status_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&first), ["s6", "s5", "s4"]);
    assert!(first.more);
    let second = page_after(store, "bob", now, &first, 3).await;
    assert_eq!(ids(&second), ["s3", "s2", "s1"]);
    assert!(second.more);
    let third = page_after(store, "bob", now, &second, 3).await;
    assert_eq!(ids(&third), ["s0"]);
    assert!(!third.more);
    // Exactly a full page: no more.
    let exact = page_after(store, "bob", now, &second, 1).await;
    assert_eq!(ids(&exact), ["s0"]);
    assert!(!exact.more);
    let ids: Vec<String> = first
        .statuses
        .iter()
        .chain(&second.statuses)
        .map(|s| s.status_id.clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
}

pub(crate) async fn expired_statuses_are_not_listed(store: &dyn StatusStore) {
    post(store, new_status("alice", "old", &["bob"], T0)).await;
    post(store, new_status("alice", "new", &["bob"], T0 + 1_000)).await;
    assert_eq!(seen(store, "bob", T0 + DAY_MS - 1).await, ["new", "old"]);
    // Gone at `expires_ms` exactly, for the audience and the poster.
    assert_eq!(seen(store, "bob", T0 + DAY_MS).await, ["new"]);
    assert_eq!(seen(store, "alice", T0 + DAY_MS).await, ["new"]);
    assert!(seen(store, "bob", T0 + DAY_MS + 1_000).await.is_empty());
}

pub(crate) async fn a_retried_post_returns_the_first_status(store: &dyn StatusStore) {
    let first = post(store, new_status("alice", "s1", &["bob"], T0)).await;
    // The retry comes later, with another server id and other content: the first one wins.
    let retry = NewStatus {
        ciphertext: b"other".to_vec(),
        ..new_status("alice", "s1", &["bob", "carol"], T0 + 5_000)
    };
    let again = store.post(retry, LIMIT).await.expect("retry");
    assert_eq!(again, PostOutcome::Duplicate(first.clone()));
    assert_eq!(seen(store, "bob", T0 + 6_000).await, ["s1"]);
    assert!(seen(store, "carol", T0 + 6_000).await.is_empty());
    // The key is per poster.
    post(store, new_status("bob", "s1", &[], T0 + 7_000)).await;
    // A retry of a deleted status still gets it (without the ciphertext), and stores nothing.
    assert!(deleted(store, "alice", &first.status_id, T0 + 8_000).await);
    let retry = new_status("alice", "s1", &["bob"], T0 + 9_000);
    let again = store.post(retry, LIMIT).await.expect("retry");
    assert_eq!(
        again,
        PostOutcome::Duplicate(StoredStatus {
            ciphertext: Vec::new(),
            ..first
        })
    );
    assert!(seen(store, "alice", T0 + 9_000).await.is_empty());
}

pub(crate) async fn an_expired_client_status_id_can_be_posted_again(store: &dyn StatusStore) {
    post(store, new_status("alice", "s1", &["bob"], T0)).await;
    // Expired but not swept yet: the id is free.
    let later = T0 + DAY_MS;
    let posted = post(store, new_status("alice", "s1", &["carol"], later)).await;
    assert_eq!(posted.posted_ms, later);
    assert!(seen(store, "bob", later).await.is_empty());
    assert_eq!(seen(store, "carol", later).await, ["s1"]);
}

pub(crate) async fn the_limit_counts_a_rolling_window(store: &dyn StatusStore) {
    // 100 statuses, one a minute.
    let minute = 60_000;
    for i in 0..100_i64 {
        post(
            store,
            new_status("alice", &format!("s{i}"), &[], T0 + i * minute),
        )
        .await;
    }
    let now = T0 + 100 * minute;
    assert_eq!(
        refused(store, new_status("alice", "s100", &[], now), LIMIT).await,
        T0
    );
    // A retry of one of the 100 still gets its answer.
    let retry = store
        .post(new_status("alice", "s99", &[], now), LIMIT)
        .await
        .expect("retry");
    assert!(matches!(retry, PostOutcome::Duplicate(_)), "{retry:?}");
    // Others are not limited by alice.
    post(store, new_status("bob", "b1", &[], now)).await;
    // Just before the first leaves the window: still refused; once it has: one more fits.
    refused(
        store,
        new_status("alice", "s100", &[], T0 + DAY_MS - 1),
        LIMIT,
    )
    .await;
    post(store, new_status("alice", "s100", &[], T0 + DAY_MS)).await;
    assert_eq!(
        refused(store, new_status("alice", "s101", &[], T0 + DAY_MS), LIMIT).await,
        T0 + minute
    );
}

pub(crate) async fn deleted_statuses_still_count_towards_the_limit(store: &dyn StatusStore) {
    let limit = PostLimit {
        max_posts: 3,
        window_ms: DAY_MS,
    };
    let mut ids = Vec::new();
    for i in 0..3_i64 {
        let status = new_status("alice", &format!("s{i}"), &["bob"], T0 + i);
        ids.push(status.status_id.clone());
        let outcome = store.post(status, limit).await.expect("post");
        assert!(matches!(outcome, PostOutcome::Posted(_)), "{outcome:?}");
    }
    for id in &ids {
        assert!(deleted(store, "alice", id, T0 + 10).await);
    }
    assert!(seen(store, "alice", T0 + 10).await.is_empty());
    assert_eq!(
        refused(store, new_status("alice", "s3", &[], T0 + 10), limit).await,
        T0
    );
}

pub(crate) async fn delete_only_the_posters_unexpired_statuses(store: &dyn StatusStore) {
    let a1 = post(store, new_status("alice", "a1", &["bob"], T0)).await;
    let a2 = post(store, new_status("alice", "a2", &["bob"], T0 + 1)).await;
    // Not bob's to delete; no such id.
    assert!(!deleted(store, "bob", &a1.status_id, T0 + 2).await);
    let unknown = status_id_at(T0, "nothing");
    assert!(!deleted(store, "alice", &unknown, T0 + 2).await);
    assert_eq!(seen(store, "bob", T0 + 2).await, ["a2", "a1"]);
    // The poster's: gone for everyone; a second delete finds nothing.
    assert!(deleted(store, "alice", &a1.status_id, T0 + 2).await);
    assert!(!deleted(store, "alice", &a1.status_id, T0 + 3).await);
    assert_eq!(seen(store, "bob", T0 + 3).await, ["a2"]);
    assert_eq!(seen(store, "alice", T0 + 3).await, ["a2"]);
    // Expired: nothing to delete.
    assert!(!deleted(store, "alice", &a2.status_id, a2.expires_ms).await);
}

pub(crate) async fn sweep_removes_expired_statuses(store: &dyn StatusStore) {
    let a1 = post(store, new_status("alice", "a1", &["bob"], T0)).await;
    post(store, new_status("alice", "a2", &["bob"], T0 + 1_000)).await;
    post(store, new_status("carol", "c1", &["bob"], T0 + 2_000)).await;
    assert!(deleted(store, "alice", &a1.status_id, T0 + 10).await);
    assert_eq!(store.sweep_expired(T0 + 10).await.expect("sweep"), 0);
    // a1 (a tombstone) and a2 expired; c1 not yet.
    let removed = store
        .sweep_expired(T0 + DAY_MS + 1_000)
        .await
        .expect("sweep");
    assert_eq!(removed, 2);
    assert_eq!(
        seen(store, "bob", T0).await,
        ["c1"],
        "gone even for an earlier now"
    );
    assert_eq!(
        store
            .sweep_expired(T0 + DAY_MS + 1_000)
            .await
            .expect("sweep"),
        0
    );
    // Swept statuses no longer count: alice may post 100 again at once.
    let limit = PostLimit {
        max_posts: 1,
        window_ms: DAY_MS,
    };
    let outcome = store
        .post(new_status("alice", "a3", &[], T0 + 2_000), limit)
        .await
        .expect("post");
    assert!(matches!(outcome, PostOutcome::Posted(_)), "{outcome:?}");
}

pub(crate) async fn concurrent_posts_never_pass_the_limit(store: &dyn StatusStore) {
    for i in 0..90_i64 {
        post(
            store,
            new_status("alice", &format!("s{i}"), &["bob"], T0 + i),
        )
        .await;
    }
    let now = T0 + 1_000;
    let posts = (0..30).map(|i| {
        let status = new_status("alice", &format!("race{i}"), &["bob"], now + i);
        store.post(status, LIMIT)
    });
    let outcomes = futures_util::future::join_all(posts).await;
    let posted = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PostOutcome::Posted(_))))
        .count();
    let limited = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(PostOutcome::Limit { .. })))
        .count();
    assert_eq!((posted, limited), (10, 20), "{outcomes:?}");
    assert_eq!(seen(store, "bob", now + 100).await.len(), 100);
}
