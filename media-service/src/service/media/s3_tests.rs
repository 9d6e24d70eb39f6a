//! The media service on a real S3 server (`s3s-fs`): the streamed, resumable upload in 8 MiB
//! multipart parts, a direct upload by presigned PUT whose signed length S3 itself enforces, and
//! a presigned download behind the capability check.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use juntos_clock::ManualClock;
use juntos_proto::error::reason_of;
use juntos_proto::media::v1::MediaKind;
use juntos_testkit::s3::{ACCESS_KEY, BUCKET, S3TestServer, SECRET_KEY};
use tonic::{Code, Status};

use crate::blob::{S3BlobStore, S3Config};
use crate::service::media::test_support::{caller, chunks};
use crate::service::media::{MediaConfig, MediaService, ProfileVisibility};
use crate::store::SqliteStatusStore;

struct Nobody;

#[async_trait]
impl ProfileVisibility for Nobody {
    async fn may_see(&self, _: &str, _: &str) -> Result<bool, String> {
        Ok(false)
    }
}

struct Fixture {
    _server: S3TestServer,
    _dir: tempfile::TempDir,
    service: Arc<MediaService>,
}

async fn fixture() -> Fixture {
    let server = tokio::task::spawn_blocking(S3TestServer::start)
        .await
        .expect("start s3s-fs");
    let dir = tempfile::tempdir().expect("tempdir");
    let index = Arc::new(SqliteStatusStore::open(&dir.path().join("media.db")).expect("open"));
    let blobs = Arc::new(
        S3BlobStore::connect(S3Config::custom(
            &server.endpoint(),
            BUCKET,
            ACCESS_KEY,
            SECRET_KEY,
        ))
        .await,
    );
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms");
    let service = MediaService::new(
        MediaConfig::default(),
        index,
        blobs,
        Arc::new(Nobody),
        ManualClock::new(now),
    );
    Fixture {
        _server: server,
        _dir: dir,
        service,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn collect(body: crate::blob::ByteChunks) -> Vec<u8> {
    let mut out = Vec::new();
    let mut body = body;
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_upload_resumes_across_multipart_parts() {
    let f = fixture().await;
    let alice = caller("alice");
    let content = pattern(8 * 1024 * 1024 + 300_001);
    let up = f
        .service
        .create_upload(&alice, MediaKind::Video as i32, content.len() as u64, false)
        .await
        .expect("create");
    // The first stream stops 100 KiB into the second part.
    let first = chunks(&content[..8 * 1024 * 1024 + 100_000], 65_552);
    let got = f
        .service
        .upload(&alice, &up.blob_id, 0, first)
        .await
        .expect("first stream");
    assert_eq!(got.committed_bytes, 8 * 1024 * 1024);
    assert!(!got.complete);
    let rest = chunks(&content[8 * 1024 * 1024..], 65_552);
    let got = f
        .service
        .upload(&alice, &up.blob_id, 8 * 1024 * 1024, rest)
        .await
        .expect("resumed stream");
    assert!(got.complete);
    let bob = caller("bob");
    let download = f
        .service
        .download(&bob, &up.blob_id, &up.capability, 0)
        .await
        .expect("download");
    assert_eq!(collect(download.body).await, content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_upload_takes_exactly_its_signed_length_and_downloads_by_url() {
    let f = fixture().await;
    let alice = caller("alice");
    let content = pattern(123_457);
    let up = f
        .service
        .create_upload(&alice, MediaKind::Image as i32, content.len() as u64, true)
        .await
        .expect("create direct");
    let url = up.url.clone().expect("a presigned PUT");
    // Not complete before the PUT.
    let early: Status = f
        .service
        .complete_direct(&alice, &up.blob_id)
        .await
        .expect_err("nothing yet")
        .into();
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(reason_of(&early).as_deref(), Some("UPLOAD_INCOMPLETE"));
    // Nor can it be streamed instead.
    let streamed = f
        .service
        .upload(
            &alice,
            &up.blob_id,
            0,
            futures_util::stream::iter([Ok(Bytes::from_static(b"x"))]).boxed(),
        )
        .await
        .expect_err("goes to its URL");
    assert_eq!(streamed.code(), Code::FailedPrecondition);

    let http = reqwest::Client::new();
    let put = |body: Vec<u8>| {
        let mut request = http.put(&url.url).body(body);
        for (name, value) in &url.headers {
            if !name.eq_ignore_ascii_case("content-length") {
                request = request.header(name, value);
            }
        }
        request.send()
    };
    // One byte over the declared size: S3 refuses it (the length is signed).
    let mut over = content.clone();
    over.push(0);
    let refused = put(over).await.expect("put");
    assert!(!refused.status().is_success(), "{}", refused.status());
    assert!(
        f.service
            .complete_direct(&alice, &up.blob_id)
            .await
            .is_err()
    );
    let ok = put(content.clone()).await.expect("put");
    assert!(ok.status().is_success(), "{}", ok.status());
    let done = f
        .service
        .complete_direct(&alice, &up.blob_id)
        .await
        .expect("complete");
    assert!(done.complete && done.committed_bytes == content.len() as u64);
    // Once more answers the same.
    assert!(
        f.service
            .complete_direct(&alice, &up.blob_id)
            .await
            .expect("again")
            .complete
    );

    // A recipient gets a download URL with the capability; a stranger without it does not.
    let bob = caller("bob");
    let stranger: Status = f
        .service
        .download_url(&bob, &up.blob_id, b"guess")
        .await
        .expect_err("no capability")
        .into();
    assert_eq!(stranger.code(), Code::PermissionDenied);
    let (link, expires_ms) = f
        .service
        .download_url(&bob, &up.blob_id, &up.capability)
        .await
        .expect("url");
    assert!(expires_ms > 0);
    let fetched = http.get(&link).send().await.expect("get");
    assert!(fetched.status().is_success(), "{}", fetched.status());
    assert_eq!(fetched.bytes().await.expect("body").as_ref(), content);
}
