//! Media end to end through the gateway: a 50 MiB file from one user to another with
//! `juntos-cli` on both ends (byte-identical, in constant memory, checked with the processes'
//! peak resident memory), on the folder backend and on S3 (with MongoDB as the index); an
//! interrupted upload that resumes; blobs only the named recipients can fetch; uploads cut off
//! at the cap; pictures to a group and in a status; and no plaintext of any of it on a server.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt as _;
use juntos_client::{ClientError, StatusAudience, TransferListener};
use juntos_proto::media::v1::media_client::MediaClient;
use juntos_proto::media::v1::{
    CreateUploadRequest, DownloadRequest, GetUploadRequest, MediaKind, UploadRequest,
};
use juntos_tests::clients::{assert_no_plaintext_in, bulk_builder, contains, settle, signed_in};
use juntos_tests::raw::{self, authed, reason};
use juntos_tests::{ALICE, BOB, CAROL, System, juntos_cli_bin};
use sha2::{Digest as _, Sha256};
use tonic::Code;

const MIB: usize = 1024 * 1024;
/// Recognisable plaintext, once in every MiB of the test files.
const MARKER: &[u8] = b"JUNTOS-MEDIA-PLAINTEXT-MARKER";
/// The most a `juntos-cli` may hold resident while moving a 50 MiB file: well under the file's
/// size, so a client that buffered the file whole could not pass.
const MAX_CLI_PEAK_KIB: u64 = 40 * 1024;

/// Writes `size` bytes of pseudo-random data with [`MARKER`] at the start of every MiB.
fn test_file(dir: &Path, name: &str, size: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    let mut state = seed | 1;
    let mut block = vec![0u8; MIB];
    let mut left = size;
    while left > 0 {
        for b in block.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        block[..MARKER.len()].copy_from_slice(MARKER);
        let n = left.min(MIB);
        out.write_all(&block[..n]).expect("write");
        left -= n;
    }
    out.flush().expect("flush");
    path
}

fn sha256_of(path: &Path) -> [u8; 32] {
    let mut file = std::fs::File::open(path).expect("open");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; MIB];
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            return hasher.finalize().into();
        }
        hasher.update(&buf[..n]);
    }
}

/// Runs `juntos-cli` against the system; its stdout and its peak resident memory (KiB).
fn cli(sys: &System, home: &Path, args: &[&str]) -> (String, u64) {
    let mut child = Command::new(juntos_cli_bin())
        .arg("--server")
        .arg(&sys.gateway_url)
        .arg("--home")
        .arg(home)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start juntos-cli");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        // VmHWM is the peak so far; sampled until the process is gone.
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        status.success(),
        "juntos-cli {args:?} failed: {status}\n{stdout}\n{stderr}"
    );
    (stdout, peak)
}

fn cli_sign_in(sys: &System, home: &Path, phone: &str) {
    cli(sys, home, &["request-code", phone]);
    let code = sys.last_code(phone);
    cli(sys, home, &["sign-in", phone, &code]);
}

/// The id in a `sent <id>` line.
fn sent_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("sent "))
        .unwrap_or_else(|| panic!("no `sent` line in {stdout:?}"))
        .trim()
        .to_owned()
}

/// Every document of every collection of every database on the MongoDB server, as BSON bytes.
async fn mongo_dump(uri: &str) -> Vec<u8> {
    let client = mongodb::Client::with_uri_str(uri).await.expect("connect");
    let mut dump = Vec::new();
    for db_name in client.list_database_names().await.expect("databases") {
        let db = client.database(&db_name);
        for coll in db.list_collection_names().await.expect("collections") {
            let mut cursor = db
                .collection::<mongodb::bson::Document>(&coll)
                .find(mongodb::bson::doc! {})
                .await
                .expect("find");
            while let Some(doc) = cursor.next().await {
                let doc = doc.expect("document");
                dump.extend(mongodb::bson::to_vec(&doc).expect("encode"));
            }
        }
    }
    dump
}

/// Moves a 50 MiB file from Alice to Bob with `juntos-cli` and checks it arrived whole, that
/// neither end held it in memory, and that no server file holds its plaintext.
fn fifty_mib_through(sys: &System) {
    let work = tempfile::tempdir().expect("temp dir");
    let (alice, bob) = (work.path().join("alice"), work.path().join("bob"));
    cli_sign_in(sys, &alice, ALICE);
    cli_sign_in(sys, &bob, BOB);
    let file = test_file(work.path(), "holiday.mkv", 50 * MIB, 7);

    let (out, send_peak) = cli(
        sys,
        &alice,
        &[
            "send-file",
            BOB,
            file.to_str().expect("utf-8"),
            "--caption",
            "the big one",
        ],
    );
    let id = sent_id(&out);
    let received = work.path().join("received.mkv");
    let (out, download_peak) = cli(
        sys,
        &bob,
        &["download", &id, "--out", received.to_str().expect("utf-8")],
    );
    assert!(out.contains("saved"), "{out}");
    assert_eq!(sha256_of(&received), sha256_of(&file), "byte-identical");
    println!("peak resident memory: sender {send_peak} KiB, receiver {download_peak} KiB");
    assert!(
        send_peak > 0 && send_peak < MAX_CLI_PEAK_KIB,
        "the sender peaked at {send_peak} KiB"
    );
    assert!(
        download_peak > 0 && download_peak < MAX_CLI_PEAK_KIB,
        "the receiver peaked at {download_peak} KiB"
    );
    // Bob's history shows the attachment with its caption.
    let (history, _) = cli(sys, &bob, &["history", ALICE]);
    assert!(
        history.contains("holiday.mkv") && history.contains("the big one"),
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_file_arrives_whole_in_constant_memory_on_the_folder_backend() {
    let sys = bulk_builder().start().await;
    let s = &sys;
    tokio::task::block_in_place(|| fifty_mib_through(s));
    // The blob folder holds the ciphertext (50 MiB + a tag per 64 KiB chunk), nothing readable.
    let blobs: Vec<_> = std::fs::read_dir(sys.data_dir().join("blobs"))
        .expect("blob folder")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name().to_string_lossy().starts_with("m-"))
        .collect();
    assert_eq!(blobs.len(), 1);
    assert_eq!(
        blobs[0].metadata().expect("meta").len(),
        (50 * MIB + 16 * 800) as u64
    );
    let scanned = assert_no_plaintext_in(sys.data_dir(), &[MARKER]);
    assert!(scanned > 50 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_file_arrives_whole_in_constant_memory_on_s3_with_mongodb() {
    let sys = bulk_builder().with_s3().with_mongodb().start().await;
    let s = &sys;
    tokio::task::block_in_place(|| fifty_mib_through(s));
    let s3 = sys.s3.as_ref().expect("s3");
    let scanned = assert_no_plaintext_in(s3.root(), &[MARKER]);
    assert!(
        scanned > 50 * MIB,
        "the blob is in the bucket ({scanned} bytes)"
    );
    assert!(
        !sys.data_dir().join("blobs").exists(),
        "no folder blobs with S3"
    );
    let dump = mongo_dump(&sys.mongodb.as_ref().expect("mongodb").uri()).await;
    assert!(
        contains(&dump, b"capability_hash"),
        "the index is in MongoDB"
    );
    assert!(!contains(&dump, MARKER));
    assert!(!contains(&dump, b"the big one"), "no caption in MongoDB");
    assert_no_plaintext_in(sys.data_dir(), &[MARKER, b"the big one"]);
}

/// Records progress reports; tells `trigger` once `at` bytes have gone.
#[derive(Default)]
struct Reports {
    seen: Mutex<Vec<u64>>,
    at: u64,
    trigger: tokio::sync::Notify,
}

impl TransferListener for Reports {
    fn on_progress(&self, done: u64, _total: u64) {
        self.seen.lock().expect("lock").push(done);
        if self.at > 0 && done >= self.at {
            self.trigger.notify_one();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_upload_resumes_where_the_server_stopped() {
    let sys = bulk_builder().start().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let work = tempfile::tempdir().expect("temp dir");
    let file = test_file(work.path(), "big.bin", 40 * MIB, 11);
    let path = file.to_str().expect("utf-8").to_owned();

    // The first attempt is cut off (the app was closed) once 24 MiB have been sent.
    let first = Arc::new(Reports {
        at: 24 * MIB as u64,
        ..Reports::default()
    });
    let listener: Arc<dyn TransferListener> = first.clone();
    let media = alice.media();
    tokio::select! {
        sent = media.send_file(BOB.to_owned(), path.clone(), String::new(), Some(listener)) => {
            panic!("the upload should have been interrupted: {sent:?}");
        }
        () = first.trigger.notified() => {}
    }
    // Let the server store the parts that arrived whole.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = Arc::new(Reports::default());
    let listener: Arc<dyn TransferListener> = second.clone();
    let message = alice
        .media()
        .send_file(BOB.to_owned(), path, "resumed".to_owned(), Some(listener))
        .await
        .expect("second attempt");
    let resumed_from = second.seen.lock().expect("lock")[0];
    println!("resumed at {resumed_from} bytes");
    // At least one 8 MiB part was kept.
    assert!(
        resumed_from >= 8 * MIB as u64,
        "resumed from {resumed_from}"
    );
    assert_eq!(resumed_from % (8 * MIB as u64), 0);

    settle(&[&alice, &bob]).await;
    let out = work.path().join("got.bin");
    bob.media()
        .download(
            message.message_id.clone(),
            Some(out.to_str().expect("utf-8").to_owned()),
            None,
        )
        .await
        .expect("download");
    assert_eq!(sha256_of(&out), sha256_of(&file));
    // One blob on the server: the resumed upload, not a second copy.
    let blobs = std::fs::read_dir(sys.data_dir().join("blobs"))
        .expect("blobs")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("m-"))
        })
        .count();
    assert_eq!(blobs, 1);
}

/// The one `m-…` blob id in the system's blob folder.
fn only_blob_id(sys: &System) -> String {
    let ids: Vec<String> = std::fs::read_dir(sys.data_dir().join("blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("m-"))
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_uploader_and_the_recipients_can_fetch_a_blob() {
    let sys = bulk_builder().start().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let work = tempfile::tempdir().expect("temp dir");
    let file = test_file(work.path(), "secret.pdf", 300_000, 3);
    let message = alice
        .media()
        .send_file(
            BOB.to_owned(),
            file.to_str().expect("utf-8").to_owned(),
            String::new(),
            None,
        )
        .await
        .expect("send");
    settle(&[&alice, &bob]).await;
    let got = work.path().join("bob.pdf");
    bob.media()
        .download(
            message.message_id.clone(),
            Some(got.to_str().expect("utf-8").to_owned()),
            None,
        )
        .await
        .expect("bob, named in the message, downloads");
    assert_eq!(sha256_of(&got), sha256_of(&file));

    // Carol knows the blob's id (say it leaked) but was not sent the message.
    let blob_id = only_blob_id(&sys);
    let channel = sys.channel().await;
    let carol = raw::sign_in(&sys, &channel, CAROL, "carol").await;
    let token = carol.tokens.expect("tokens").access_token;
    let mut media = MediaClient::new(channel);
    for capability in [
        Vec::new(),
        vec![0u8; 32],
        rand::random::<[u8; 32]>().to_vec(),
    ] {
        let refused = media
            .download(authed(
                DownloadRequest {
                    blob_id: blob_id.clone(),
                    capability,
                    offset: 0,
                },
                &token,
            ))
            .await
            .map(drop)
            .expect_err("carol may not read it");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        assert_eq!(reason(&refused), "NO_CAPABILITY");
    }
    // Nor see or continue Alice's upload.
    let refused = media
        .get_upload(authed(GetUploadRequest { blob_id }, &token))
        .await
        .expect_err("not hers");
    assert_eq!(refused.code(), Code::NotFound);
    // And a download with no token at all never reaches the media service.
    let refused = media
        .download(DownloadRequest::default())
        .await
        .map(drop)
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_uploads_stop_at_the_cap() {
    let sys = bulk_builder()
        .arg("--max-file-bytes", "1048576")
        .arg("--media-part-bytes", "65536")
        .start()
        .await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    signed_in(&sys, "bob", BOB).await;
    let work = tempfile::tempdir().expect("temp dir");
    let big = test_file(work.path(), "big.zip", 2 * MIB, 5);
    let refused = alice
        .media()
        .send_file(
            BOB.to_owned(),
            big.to_str().expect("utf-8").to_owned(),
            String::new(),
            None,
        )
        .await
        .expect_err("over the cap");
    assert!(
        matches!(&refused, ClientError::InvalidInput { message } if message.contains("1048576")),
        "{refused:?}"
    );

    // A client that declares a small size and sends more is cut off at the declared size.
    let channel = sys.channel().await;
    let carol = raw::sign_in(&sys, &channel, CAROL, "carol").await;
    let token = carol.tokens.expect("tokens").access_token;
    let mut media = MediaClient::new(channel);
    let created = media
        .create_upload(authed(
            CreateUploadRequest {
                kind: MediaKind::File as i32,
                size: 100_000,
                direct: false,
            },
            &token,
        ))
        .await
        .expect("create")
        .into_inner();
    let blob_id = created.blob_id.clone();
    let messages = (0..32).map(move |i| UploadRequest {
        blob_id: if i == 0 {
            blob_id.clone()
        } else {
            String::new()
        },
        offset: 0,
        data: vec![7u8; 64 * 1024],
    });
    let refused = media
        .upload(authed(tokio_stream::iter(messages), &token))
        .await
        .expect_err("past the declared size");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(reason(&refused), "MEDIA_TOO_LARGE");
    // The lying upload is gone altogether: no record, no parts, no blob.
    let gone = media
        .get_upload(authed(
            GetUploadRequest {
                blob_id: created.blob_id.clone(),
            },
            &token,
        ))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    let left: Vec<String> = std::fs::read_dir(sys.data_dir().join("blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A PNG picture of `width`×`height`.
fn png(dir: &Path, name: &str, width: u32, height: u32) -> PathBuf {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let path = dir.join(name);
    image.save(&path).expect("save png");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pictures_reach_a_group_and_a_status_with_a_thumbnail() {
    let sys = bulk_builder().arg("--media-sweep-secs", "1").start().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let carol = signed_in(&sys, "carol", CAROL).await;
    let work = tempfile::tempdir().expect("temp dir");
    let picture = png(work.path(), "boat.png", 400, 200);

    let group = alice
        .groups()
        .create("Sailing".to_owned(), vec![BOB.to_owned(), CAROL.to_owned()])
        .await
        .expect("group");
    let sent = alice
        .groups()
        .send_file(
            group.group_id.clone(),
            picture.to_str().expect("utf-8").to_owned(),
            "our boat".to_owned(),
            None,
        )
        .await
        .expect("send to the group");
    settle(&[&alice, &bob, &carol]).await;
    for (who, client) in [("bob", &bob), ("carol", &carol)] {
        let history = client
            .groups()
            .history(group.group_id.clone(), 10)
            .await
            .expect("history");
        let got = history
            .iter()
            .find(|m| m.message_id == sent.message_id)
            .unwrap_or_else(|| panic!("{who} got the picture"));
        assert_eq!(got.body, "our boat");
        let attachment = got.attachment.as_ref().expect("an attachment");
        assert_eq!(attachment.mime_type, "image/png");
        assert_eq!((attachment.width, attachment.height), (400, 200));
        let thumb = image::load_from_memory(&attachment.thumbnail).expect("thumbnail decodes");
        assert_eq!((thumb.width(), thumb.height()), (64, 32));
        let out = work.path().join(format!("{who}.png"));
        client
            .media()
            .download(
                sent.message_id.clone(),
                Some(out.to_str().expect("utf-8").to_owned()),
                None,
            )
            .await
            .expect("download");
        assert_eq!(sha256_of(&out), sha256_of(&picture));
    }

    // A status with the picture, for Bob only.
    let status = alice
        .statuses()
        .post_media(
            picture.to_str().expect("utf-8").to_owned(),
            "view from the deck".to_owned(),
            StatusAudience::Only {
                members: vec![BOB.to_owned()],
            },
            None,
        )
        .await
        .expect("post");
    assert!(status.attachment.is_some());
    bob.sync_now().await.expect("sync");
    let seen = bob.statuses().list().await.expect("statuses");
    let shown = seen
        .iter()
        .find(|s| s.status_id == status.status_id)
        .expect("bob sees it");
    assert_eq!(shown.text, "view from the deck");
    assert!(
        shown
            .attachment
            .as_ref()
            .is_some_and(|a| !a.thumbnail.is_empty())
    );
    let out = work.path().join("status.png");
    bob.media()
        .download(
            status.status_id.clone(),
            Some(out.to_str().expect("utf-8").to_owned()),
            None,
        )
        .await
        .expect("download the status picture");
    assert_eq!(sha256_of(&out), sha256_of(&picture));
    carol.sync_now().await.expect("sync");
    assert!(
        carol
            .statuses()
            .list()
            .await
            .expect("statuses")
            .iter()
            .all(|s| s.status_id != status.status_id)
    );

    // The status's blob goes when the status does (24 hours), not after the 30-day retention.
    let blobs_now = count_blobs(&sys);
    sys.advance_clock(Duration::from_secs(24 * 60 * 60 + 120));
    let mut gone = false;
    for _ in 0..100 {
        if count_blobs(&sys) == blobs_now - 1 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the status picture was swept with the status");
    assert_no_plaintext_in(
        sys.data_dir(),
        &[b"our boat", b"view from the deck", b"boat.png"],
    );
}

fn count_blobs(sys: &System) -> usize {
    std::fs::read_dir(sys.data_dir().join("blobs"))
        .expect("blobs")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("m-"))
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_picture_is_the_same_blob_for_the_new_recipient() {
    let sys = bulk_builder().start().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let carol = signed_in(&sys, "carol", CAROL).await;
    let work = tempfile::tempdir().expect("temp dir");
    let picture = png(work.path(), "sunset.png", 120, 90);
    let sent = alice
        .media()
        .send_file(
            BOB.to_owned(),
            picture.to_str().expect("utf-8").to_owned(),
            String::new(),
            None,
        )
        .await
        .expect("send");
    settle(&[&alice, &bob]).await;
    let forwarded = bob
        .forward(CAROL.to_owned(), sent.message_id.clone())
        .await
        .expect("forward");
    settle(&[&bob, &carol]).await;
    let out = work.path().join("carol.png");
    carol
        .media()
        .download(
            forwarded.message_id,
            Some(out.to_str().expect("utf-8").to_owned()),
            None,
        )
        .await
        .expect("carol downloads the forwarded picture");
    assert_eq!(sha256_of(&out), sha256_of(&picture));
    assert_eq!(count_blobs(&sys), 1, "forwarding uploads nothing again");
}
