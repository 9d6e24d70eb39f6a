//! The shared behavioural suite against MongoDB: SecantusDB started per test (or the server at
//! `JUNTOS_TEST_MONGODB_URI`), each test in a fresh database.

use std::sync::Arc;

use juntos_store::mongo::MongoStore as _;
use juntos_testkit::{MongoTestServer, unique_database};
use mongodb::bson::{Document, doc};

use super::{COLLECTIONS, MongoLoginStore};
use crate::store::LoginStore;
use crate::store::suite::login_store_suite;

/// A running server and a store in a fresh database on it.
async fn fresh() -> (MongoTestServer, MongoLoginStore) {
    let server = tokio::task::spawn_blocking(MongoTestServer::start)
        .await
        .expect("start server");
    let uri = server.uri_with_database(&unique_database("login"));
    let store = MongoLoginStore::connect(&uri).await.expect("connect");
    (server, store)
}

login_store_suite!(fresh());

async fn indexes(store: &MongoLoginStore, collection: &str) -> Vec<Document> {
    juntos_store::mongo::indexes(store.database(), collection)
        .await
        .expect("indexes")
        .into_iter()
        .map(|model| {
            let mut d = doc! { "key": model.keys };
            if let Some(options) = model.options {
                d.insert("name", options.name.unwrap_or_default());
                d.insert("unique", options.unique.unwrap_or(false));
            }
            d
        })
        .collect()
}

fn has_index(indexes: &[Document], key: Document, unique: bool) -> bool {
    indexes.iter().any(|d| {
        d.get_document("key").ok() == Some(&key) && d.get_bool("unique").unwrap_or(false) == unique
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_created_idempotently() {
    let server = tokio::task::spawn_blocking(MongoTestServer::start)
        .await
        .expect("start server");
    let uri = server.uri_with_database(&unique_database("login"));
    let store = MongoLoginStore::connect(&uri).await.expect("connect");
    // Starting again on the same database (a restart, another pod) changes nothing.
    let again = MongoLoginStore::connect(&uri).await.expect("connect again");

    let accounts = indexes(&again, "accounts").await;
    assert!(
        has_index(&accounts, doc! { "phone": 1 }, true),
        "{accounts:?}"
    );
    let prekeys = indexes(&store, "one_time_prekeys").await;
    assert!(
        has_index(&prekeys, doc! { "device_id": 1, "key_id": 1 }, true),
        "{prekeys:?}"
    );
    assert!(
        has_index(&prekeys, doc! { "device_id": 1, "seq": 1 }, false),
        "{prekeys:?}"
    );
    let devices = indexes(&store, "devices").await;
    assert!(
        has_index(
            &devices,
            doc! { "user_id": 1, "removed_at_ms": 1, "created_at_ms": 1 },
            false
        ),
        "{devices:?}"
    );
    let sessions = indexes(&store, "sessions").await;
    assert!(has_index(&sessions, doc! { "revoked_at_ms": 1 }, false));
    assert!(has_index(&sessions, doc! { "device_id": 1 }, false));
    let tokens = indexes(&store, "refresh_tokens").await;
    assert!(has_index(&tokens, doc! { "session_id": 1 }, false));

    // The unique phone index is enforced.
    let accounts = store.database().collection::<Document>("accounts");
    accounts
        .insert_one(doc! { "_id": "a", "phone": "+15550000001", "created_at_ms": 1_i64 })
        .await
        .expect("insert");
    let duplicate = accounts
        .insert_one(doc! { "_id": "b", "phone": "+15550000001", "created_at_ms": 1_i64 })
        .await;
    assert!(duplicate.is_err(), "second account with one phone");
    assert_eq!(COLLECTIONS.len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_are_int64() {
    let (_server, store) = fresh().await;
    let shared: Arc<dyn LoginStore> = Arc::new(store.clone());
    shared
        .find_or_create_account("+15550000001", "u1", 5)
        .await
        .expect("account");
    let account = store
        .database()
        .collection::<Document>("accounts")
        .find_one(doc! { "_id": "u1" })
        .await
        .expect("find")
        .expect("stored");
    assert!(matches!(
        account.get("created_at_ms"),
        Some(mongodb::bson::Bson::Int64(5))
    ));
}
