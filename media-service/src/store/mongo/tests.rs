//! The MongoDB media database against SecantusDB started per test (or the server at
//! `JUNTOS_TEST_MONGODB_URI`), each test in a fresh database: the collections and indexes are
//! created idempotently. [`server`] and [`fresh`] serve the statuses' and the blob index's
//! MongoDB tests too.

use std::time::Duration;

use juntos_store::mongo::MongoStore as _;
use juntos_testkit::{MongoTestServer, unique_database};
use mongodb::bson::{Document, doc};

use super::{COLLECTIONS, MongoStatusStore};

/// A running test server.
pub(in crate::store) async fn server() -> MongoTestServer {
    tokio::task::spawn_blocking(MongoTestServer::start)
        .await
        .expect("start server")
}

/// A running server and a store in a fresh database on it.
pub(in crate::store) async fn fresh() -> (MongoTestServer, MongoStatusStore) {
    let server = server().await;
    let uri = server.uri_with_database(&unique_database("media"));
    let store = MongoStatusStore::connect(&uri).await.expect("connect");
    (server, store)
}

/// Index keys and the options that matter, per collection.
async fn indexes(
    store: &MongoStatusStore,
    collection: &str,
) -> Vec<(Document, bool, Option<Duration>)> {
    juntos_store::mongo::indexes(store.database(), collection)
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
    let missing = juntos_store::mongo::missing_collections(store.database(), COLLECTIONS)
        .await
        .expect("collections");
    assert!(missing.is_empty(), "collections not created: {missing:?}");
}
