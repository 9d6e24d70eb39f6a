//! Profile photos end to end through the gateway of `juntos all`, driven by client-core: JPEG,
//! PNG and WebP are cropped and resized to 640×640 and 96×96 with their metadata gone and shown
//! only to mutual contacts; a decompression bomb, a truncated file, a GIF and a text file
//! renamed `.jpg` are refused with clear errors and nothing stored.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use juntos_client::{Client, ClientError};
use juntos_testkit::images::png_bomb;
use juntos_tests::clients::{bulk_builder, contains, signed_in};
use juntos_tests::{ALICE, BOB, CAROL, System};

const GPS_MARKER: &[u8] = b"GPS-SECRET-47.61N-122.33W";

fn encoded(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 3 % 256) as u8, (y * 5 % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, format)
        .expect("encode");
    out.into_inner()
}

/// A JPEG carrying an EXIF segment with a GPS position in it.
fn jpeg_with_exif() -> Vec<u8> {
    let jpeg = encoded(image::ImageFormat::Jpeg, 800, 500);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(GPS_MARKER);
    let len = u16::try_from(payload.len() + 2).expect("short");
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path.to_str().expect("utf-8").to_owned()
}

fn photo_blobs(sys: &System) -> usize {
    std::fs::read_dir(sys.data_dir().join("blobs"))
        .map(|dir| {
            dir.filter(|e| {
                e.as_ref().is_ok_and(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("pl-") || name.starts_with("ps-")
                })
            })
            .count()
        })
        .unwrap_or(0)
}

async fn check_sizes(client: &Client, owner: &str) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for (small, side) in [(false, 640), (true, 96)] {
        let jpeg = client
            .profile()
            .photo(owner.to_owned(), small)
            .await
            .expect("photo");
        assert_eq!(
            image::guess_format(&jpeg).expect("format"),
            image::ImageFormat::Jpeg
        );
        let img = image::load_from_memory(&jpeg).expect("decodes");
        assert_eq!((img.width(), img.height()), (side, side));
        got.push(jpeg);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photos_are_resized_stripped_and_shown_only_to_contacts() {
    let sys = bulk_builder().start().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let bob = signed_in(&sys, "bob", BOB).await;
    let carol = signed_in(&sys, "carol", CAROL).await;
    // Alice and Bob are mutual contacts; Carol found Alice, but Alice never found Carol.
    alice
        .profile()
        .get(vec![BOB.to_owned()])
        .await
        .expect("lookup");
    bob.profile()
        .get(vec![ALICE.to_owned()])
        .await
        .expect("lookup");
    carol
        .profile()
        .get(vec![ALICE.to_owned()])
        .await
        .expect("lookup");
    let work = tempfile::tempdir().expect("temp dir");

    for (name, bytes) in [
        ("me.jpg", jpeg_with_exif()),
        ("me.png", encoded(image::ImageFormat::Png, 300, 700)),
        // Named .png, but WebP inside: the content decides.
        ("me-webp.png", encoded(image::ImageFormat::WebP, 1000, 1000)),
    ] {
        let version = alice
            .profile()
            .set_photo(write(work.path(), name, &bytes))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(!version.is_empty());
        // The old photo's two files are gone; the new one's two are there.
        assert_eq!(photo_blobs(&sys), 2, "{name}");
        for jpeg in check_sizes(&bob, ALICE).await {
            assert!(!contains(&jpeg, b"Exif"), "{name}: EXIF survived");
            assert!(!contains(&jpeg, GPS_MARKER), "{name}: GPS survived");
        }
        check_sizes(&alice, ALICE).await;
        let hidden = carol
            .profile()
            .photo(ALICE.to_owned(), false)
            .await
            .expect_err("not a mutual contact");
        assert!(matches!(hidden, ClientError::NotFound { .. }), "{hidden:?}");
    }
    // Nothing with the GPS position anywhere on the server.
    juntos_tests::clients::assert_no_plaintext_in(sys.data_dir(), &[GPS_MARKER]);

    // Bob sees nothing once Alice hides her profile.
    alice.profile().delete_photo().await.expect("delete");
    assert_eq!(photo_blobs(&sys), 0);
    let gone = bob
        .profile()
        .photo(ALICE.to_owned(), true)
        .await
        .expect_err("deleted");
    assert!(matches!(gone, ClientError::NotFound { .. }), "{gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bombs_damaged_files_and_other_formats_are_refused_and_nothing_is_stored() {
    let sys = bulk_builder().start().await;
    let alice = signed_in(&sys, "alice", ALICE).await;
    let work = tempfile::tempdir().expect("temp dir");
    let jpeg = encoded(image::ImageFormat::Jpeg, 400, 400);
    let gif: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    for (name, bytes, expect) in [
        ("bomb.png", png_bomb(), "50000"),
        ("half.jpg", jpeg[..jpeg.len() / 2].to_vec(), "damaged"),
        ("cat.gif", gif.to_vec(), "JPEG, PNG or WebP"),
        (
            "notes.jpg",
            b"this is not a photo, just text".to_vec(),
            "JPEG, PNG or WebP",
        ),
    ] {
        let refused = alice
            .profile()
            .set_photo(write(work.path(), name, &bytes))
            .await
            .expect_err(name);
        match &refused {
            ClientError::InvalidInput { message } => assert!(
                message.contains(expect),
                "{name}: {message:?} should mention {expect:?}"
            ),
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(photo_blobs(&sys), 0, "{name}: nothing stored");
        let none = alice
            .profile()
            .photo(ALICE.to_owned(), false)
            .await
            .expect_err("no photo");
        assert!(matches!(none, ClientError::NotFound { .. }), "{none:?}");
    }
    // Over 10 MiB is refused before it is sent.
    let big = vec![0xFFu8; 10 * 1024 * 1024 + 1];
    let refused = alice
        .profile()
        .set_photo(write(work.path(), "huge.jpg", &big))
        .await
        .expect_err("too big");
    assert!(
        matches!(refused, ClientError::InvalidInput { .. }),
        "{refused:?}"
    );
}
