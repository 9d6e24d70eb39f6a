//! The blob store suite against S3: a fresh `s3s-fs` per test.

use std::time::Duration;

use futures_util::StreamExt as _;
use juntos_testkit::s3::{ACCESS_KEY, BUCKET, S3TestServer, SECRET_KEY};

use super::{S3BlobStore, S3Config};
use crate::blob::{BlobError, BlobStore as _, suite};

/// A running server and a store on its (empty) bucket.
async fn fresh() -> (S3TestServer, S3BlobStore) {
    let server = tokio::task::spawn_blocking(S3TestServer::start)
        .await
        .expect("start server");
    let config = S3Config::custom(&server.endpoint(), BUCKET, ACCESS_KEY, SECRET_KEY);
    let store = S3BlobStore::connect(config).await;
    (server, store)
}

suite::blob_store_suite!(fresh().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_work() {
    let (_server, store) = fresh().await;
    suite::presigned_urls_work(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_refused() {
    let server = tokio::task::spawn_blocking(S3TestServer::start)
        .await
        .expect("start server");
    let config = S3Config::custom(&server.endpoint(), BUCKET, ACCESS_KEY, "not-the-secret");
    let store = S3BlobStore::connect(config).await;
    let body = suite::body(10);
    assert!(matches!(
        store.put("blob", body).await,
        Err(BlobError::S3 { .. })
    ));
}

/// The names of the multipart parts `s3s-fs` holds (`<root>/.upload_id-<id>.part-<n>`).
fn parts_on_server(server: &S3TestServer) -> Vec<String> {
    std::fs::read_dir(server.root())
        .expect("read server root")
        .filter_map(|e| e.expect("entry").file_name().into_string().ok())
        .filter(|name| name.starts_with(".upload_id-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_part_blob_is_one_object_on_the_server() {
    let (server, store) = fresh().await;
    store
        .put("large", suite::body(suite::LARGE))
        .await
        .expect("put");
    let object = server.root().join(BUCKET).join("large");
    let meta = std::fs::metadata(&object).expect("object file");
    assert_eq!(meta.len(), suite::LARGE);
    assert!(parts_on_server(&server).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_dropped_uploads_are_aborted() {
    let (server, store) = fresh().await;
    let failing = suite::body(suite::LARGE)
        .chain(futures_util::stream::iter([Err(std::io::Error::other(
            "reset",
        ))]))
        .boxed();
    assert!(store.put("failed", failing).await.is_err());
    assert!(parts_on_server(&server).is_empty(), "failed upload aborted");

    let (reached, mut reached_rx) = tokio::sync::mpsc::channel::<()>(1);
    let stalled = suite::body(suite::LARGE)
        .chain(futures_util::stream::once(async move {
            let _ = reached.send(()).await;
            std::future::pending::<std::io::Result<bytes::Bytes>>().await
        }))
        .boxed();
    // Boxed, so that `drop(put)` below drops the future itself.
    let mut put = Box::pin(store.put("dropped", stalled));
    tokio::select! {
        r = &mut put => panic!("put finished: {:?}", r.map(drop)),
        _ = reached_rx.recv() => {}
    }
    // Stalled after its first part went up as a part of a multipart upload...
    assert_eq!(parts_on_server(&server).len(), 1, "first part uploaded");
    drop(put);
    // ...and the abort the drop spawned removes it.
    let start = std::time::Instant::now();
    while !parts_on_server(&server).is_empty() {
        assert!(start.elapsed() < Duration::from_secs(10), "never aborted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
