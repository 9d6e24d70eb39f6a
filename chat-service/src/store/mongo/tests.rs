//! The chat store suite against MongoDB: SecantusDB started per test (or the server at
//! `JUNTOS_TEST_MONGODB_URI`), each test in a fresh database.

use juntos_store::mongo::MongoStore as _;
use juntos_testkit::{MongoTestServer, unique_database};
use mongodb::bson::{Bson, Document, doc};

use super::{COLLECTIONS, MongoChatStore};
use crate::store::suite::{self, to_devices};
use crate::store::{ChatStore, SendBatch, SendOutcome};
use crate::test_support::mailbox;

/// A running server with the URI of a fresh database on it, and a store in that database.
async fn fresh() -> ((MongoTestServer, String), MongoChatStore) {
    let server = tokio::task::spawn_blocking(MongoTestServer::start)
        .await
        .expect("start server");
    let uri = server.uri_with_database(&unique_database("chat"));
    let store = MongoChatStore::connect(&uri).await.expect("connect");
    ((server, uri), store)
}

// A restart (or another pod) on the same database sees the same mailboxes, counters and keys.
suite::chat_store_suite!(fresh(), reopen: |(_server, uri)| async {
    MongoChatStore::connect(&uri).await.expect("reconnect")
});

/// A send that fails half-way (its last envelope breaks the unique index) stores nothing: no
/// envelope, no counter raised, no dedupe key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_send_stores_nothing() {
    let (_server, store) = fresh().await;
    // An envelope at seq 1 of "boom" that no counter knows of: the send's insert collides.
    store
        .database()
        .collection::<Document>("envelopes")
        .insert_one(doc! { "device_id": "boom", "seq": 1_i64 })
        .await
        .expect("plant");
    let good = store
        .send(to_devices("g1", &["bd1"]))
        .await
        .expect("good send");
    assert!(matches!(good, SendOutcome::Stored { ref seqs, .. } if seqs == &[1]));
    store
        .send(to_devices("bad", &["bd1", "bd2", "boom"]))
        .await
        .expect_err("the index rejects it");
    assert_eq!(store.last_seq("bd1").await.expect("last"), 1);
    assert_eq!(store.last_seq("bd2").await.expect("last"), 0);
    assert_eq!(store.last_seq("boom").await.expect("last"), 0);
    assert_eq!(store.sent_at("a", "bad").await.expect("lookup"), None);
    assert!(mailbox(&store, "bd2").await.is_empty());
    let again = store
        .send(to_devices("g2", &["bd1", "bd2"]))
        .await
        .expect("send");
    assert!(matches!(again, SendOutcome::Stored { ref seqs, .. } if seqs == &[2, 1]));
}

/// Several senders to several shared mailboxes at once (transactions conflicting on counters):
/// every mailbox gets 1..=n with no gap and no repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_multi_recipient_sends_number_without_gaps() {
    let (_server, store) = fresh().await;
    let store = &store;
    let sends = (0..40).map(|i| async move {
        let batch = SendBatch {
            sender_user_id: format!("s{}", i % 5),
            ..to_devices(&format!("m{i}"), &["x1", "x2", "x3"])
        };
        store.send(batch).await.expect("send")
    });
    futures_util::future::join_all(sends).await;
    for device in ["x1", "x2", "x3"] {
        let page = store.fetch(device, 0, 100).await.expect("fetch");
        let seqs: Vec<u64> = page.envelopes.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<u64>>(), "{device}");
        assert_eq!(store.last_seq(device).await.expect("last"), 40);
    }
}

async fn indexes(store: &MongoChatStore, collection: &str) -> Vec<(Document, bool)> {
    juntos_store::mongo::indexes(store.database(), collection)
        .await
        .expect("indexes")
        .into_iter()
        .map(|model| {
            let unique = model.options.and_then(|o| o.unique).unwrap_or(false);
            (model.keys, unique)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_are_created_idempotently() {
    let ((_server, uri), store) = fresh().await;
    // Starting again on the same database (a restart, another pod) changes nothing.
    let again = MongoChatStore::connect(&uri).await.expect("connect again");
    let envelopes = indexes(&again, "envelopes").await;
    assert!(
        envelopes.contains(&(doc! { "device_id": 1, "seq": 1 }, true)),
        "{envelopes:?}"
    );
    let sends = indexes(&store, "sends").await;
    assert!(
        sends.contains(&(doc! { "sender_user_id": 1, "client_msg_id": 1 }, true)),
        "{sends:?}"
    );
    assert!(
        sends.contains(&(doc! { "created_at": 1 }, false)),
        "{sends:?}"
    );
    let missing = juntos_store::mongo::missing_collections(store.database(), COLLECTIONS)
        .await
        .expect("collections");
    assert!(missing.is_empty(), "collections not created: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_are_int64_and_ciphertext_binary() {
    let (_server, store) = fresh().await;
    store.send(to_devices("m1", &["bd1"])).await.expect("send");
    let db = store.database();
    let envelope = db
        .collection::<Document>("envelopes")
        .find_one(doc! { "device_id": "bd1" })
        .await
        .expect("find")
        .expect("stored");
    assert!(
        matches!(envelope.get("seq"), Some(Bson::Int64(1))),
        "{envelope:?}"
    );
    assert!(matches!(
        envelope.get("server_time_ms"),
        Some(Bson::Int64(1))
    ));
    assert!(matches!(envelope.get("ciphertext"), Some(Bson::Binary(_))));
    let counter = db
        .collection::<Document>("mailbox_counters")
        .find_one(doc! { "_id": "bd1" })
        .await
        .expect("find")
        .expect("stored");
    assert!(
        matches!(counter.get("last_seq"), Some(Bson::Int64(1))),
        "{counter:?}"
    );
    let key = db
        .collection::<Document>("sends")
        .find_one(doc! { "sender_user_id": "a", "client_msg_id": "m1" })
        .await
        .expect("find")
        .expect("stored");
    assert!(
        matches!(key.get("created_at"), Some(Bson::DateTime(_))),
        "{key:?}"
    );
}

/// Two pods (two stores on one database) sending to the same mailboxes at once: their
/// transactions conflict on the counters in the database and retry; every mailbox still gets
/// 1..=n with no gap and no repeat, each pod's envelopes in its own order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pods_sending_to_one_mailbox_number_without_gaps() {
    let ((_server, uri), pod_a) = fresh().await;
    let pod_b = MongoChatStore::connect(&uri).await.expect("connect b");
    let sends = (0..60).map(|i| {
        let store = if i % 2 == 0 { &pod_a } else { &pod_b };
        async move {
            let batch = SendBatch {
                sender_user_id: format!("s{i}"),
                ..to_devices("m", &["y1", "y2"])
            };
            store.send(batch).await.expect("send")
        }
    });
    let outcomes = futures_util::future::join_all(sends).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, SendOutcome::Stored { seqs, .. } if seqs.len() == 2))
    );
    for device in ["y1", "y2"] {
        let page = pod_a.fetch(device, 0, 100).await.expect("fetch");
        let seqs: Vec<u64> = page.envelopes.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=60).collect::<Vec<u64>>(), "{device}");
    }
    // Both mailboxes saw the sends in the same order (one transaction each).
    let order = |device: &'static str| {
        let pod_b = &pod_b;
        async move {
            pod_b
                .fetch(device, 0, 100)
                .await
                .expect("fetch")
                .envelopes
                .into_iter()
                .map(|e| e.sender_user_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(order("y1").await, order("y2").await);
}
