//! The status store suite against MongoDB: SecantusDB started per test (or the server at
//! `JUNTOS_TEST_MONGODB_URI`), each test in a fresh database.

use std::time::Duration;

use futures_util::TryStreamExt as _;
use juntos_testkit::{MongoTestServer, unique_database};
use mongodb::bson::{Bson, Document, doc};

use super::{COLLECTIONS, MongoStatusStore};
use crate::store::suite::{self, DAY_MS, LIMIT, T0, new_status};
use crate::store::{PostOutcome, StatusStore};

async fn server() -> MongoTestServer {
    tokio::task::spawn_blocking(MongoTestServer::start)
        .await
        .expect("start server")
}

/// A running server and a store in a fresh database on it.
async fn fresh() -> (MongoTestServer, MongoStatusStore) {
    let server = server().await;
    let uri = server.uri_with_database(&unique_database("media"));
    let store = MongoStatusStore::connect(&uri).await.expect("connect");
    (server, store)
}

suite::status_store_suite!(fresh().await);
crate::store::blobs_suite::blob_index_suite!(fresh().await);

/// Two pods (two stores on one database) posting for one poster at once: their transactions
/// conflict on the poster's document and retry; no more than 100 get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pods_posting_at_once_never_pass_the_limit() {
    let server = server().await;
    let uri = server.uri_with_database(&unique_database("media"));
    let pod_a = MongoStatusStore::connect(&uri).await.expect("connect a");
    let pod_b = MongoStatusStore::connect(&uri).await.expect("connect b");
    for i in 0..85_i64 {
        let outcome = pod_a
            .post(
                new_status("alice", &format!("s{i}"), &["bob"], T0 + i),
                LIMIT,
            )
            .await
            .expect("post");
        assert!(matches!(outcome, PostOutcome::Posted(_)), "{outcome:?}");
    }
    let now = T0 + 1_000;
    let posts = (0..40_i64).map(|i| {
        let store = if i % 2 == 0 { &pod_a } else { &pod_b };
        let status = new_status("alice", &format!("race{i}"), &["bob"], now + i);
        async move { store.post(status, LIMIT).await.expect("post") }
    });
    let outcomes = futures_util::future::join_all(posts).await;
    let posted = outcomes
        .iter()
        .filter(|o| matches!(o, PostOutcome::Posted(_)))
        .count();
    assert_eq!(posted, 15, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, PostOutcome::Posted(_) | PostOutcome::Limit { .. }))
    );
    let stored = pod_b
        .database()
        .collection::<Document>("statuses")
        .count_documents(doc! { "poster_user_id": "alice" })
        .await
        .expect("count");
    assert_eq!(stored, 100);
}

/// Index keys and the options that matter, per collection.
async fn indexes(
    store: &MongoStatusStore,
    collection: &str,
) -> Vec<(Document, bool, Option<Duration>)> {
    store
        .database()
        .collection::<Document>(collection)
        .list_indexes()
        .await
        .expect("list indexes")
        .try_collect::<Vec<_>>()
        .await
        .expect("indexes")
        .into_iter()
        .map(|model| {
            let options = model.options.unwrap_or_default();
            (
                model.keys,
                options.unique.unwrap_or(false),
                options.expire_after,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_created_idempotently_with_a_ttl() {
    let server = server().await;
    let uri = server.uri_with_database(&unique_database("media"));
    let store = MongoStatusStore::connect(&uri).await.expect("connect");
    // Starting again on the same database (a restart, another pod) changes nothing.
    let again = MongoStatusStore::connect(&uri)
        .await
        .expect("connect again");
    let statuses = indexes(&again, "statuses").await;
    for wanted in [
        (
            doc! { "poster_user_id": 1, "client_status_id": 1 },
            true,
            None,
        ),
        (doc! { "poster_user_id": 1, "posted_ms": 1 }, false, None),
        (doc! { "poster_user_id": 1, "_id": 1 }, false, None),
        (doc! { "audience": 1, "_id": 1 }, false, None),
        (doc! { "expires_at": 1 }, false, Some(Duration::ZERO)),
    ] {
        assert!(statuses.contains(&wanted), "{wanted:?} in {statuses:?}");
    }
    let posters = indexes(&store, "status_posters").await;
    assert!(
        posters.contains(&(doc! { "expires_at": 1 }, false, Some(Duration::ZERO))),
        "{posters:?}"
    );
    let names: Vec<String> = store
        .database()
        .list_collection_names()
        .await
        .expect("collections");
    for name in COLLECTIONS {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_hold_int64_times_a_date_and_binary_ciphertext() {
    let (_server, store) = fresh().await;
    let status = new_status("alice", "s1", &["bob", "carol"], T0);
    store.post(status.clone(), LIMIT).await.expect("post");
    let db = store.database();
    let stored = db
        .collection::<Document>("statuses")
        .find_one(doc! { "_id": &status.status_id })
        .await
        .expect("find")
        .expect("stored");
    assert!(matches!(stored.get("posted_ms"), Some(Bson::Int64(t)) if *t == T0));
    assert!(matches!(stored.get("expires_ms"), Some(Bson::Int64(t)) if *t == T0 + DAY_MS));
    assert!(
        matches!(stored.get("expires_at"), Some(Bson::DateTime(d)) if d.timestamp_millis() == T0 + DAY_MS),
        "{stored:?}"
    );
    assert!(matches!(stored.get("ciphertext"), Some(Bson::Binary(_))));
    assert_eq!(
        stored.get_array("audience").expect("audience"),
        &vec![Bson::from("bob"), Bson::from("carol")]
    );
    let poster = db
        .collection::<Document>("status_posters")
        .find_one(doc! { "_id": "alice" })
        .await
        .expect("find")
        .expect("stored");
    assert!(
        matches!(poster.get("posts"), Some(Bson::Int64(1))),
        "{poster:?}"
    );
    // Deleting keeps a tombstone without content; the sweep removes it and the poster.
    assert!(
        store
            .delete("alice", &status.status_id, T0 + 1)
            .await
            .expect("delete")
    );
    let tombstone = db
        .collection::<Document>("statuses")
        .find_one(doc! { "_id": &status.status_id })
        .await
        .expect("find")
        .expect("kept");
    assert!(
        tombstone
            .get_array("audience")
            .expect("audience")
            .is_empty()
    );
    assert!(
        tombstone
            .get_binary_generic("ciphertext")
            .expect("ciphertext")
            .is_empty()
    );
    assert_eq!(store.sweep_expired(T0 + DAY_MS).await.expect("sweep"), 1);
    for collection in COLLECTIONS {
        let left = db
            .collection::<Document>(collection)
            .count_documents(doc! {})
            .await
            .expect("count");
        assert_eq!(left, 0, "{collection}");
    }
}
