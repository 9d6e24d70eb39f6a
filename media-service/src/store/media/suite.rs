//! The behavioural suite every [`BlobIndex`] backend passes (SQLite and MongoDB). Each case
//! takes a fresh, empty index; a backend's tests run every case with one line,
//! [`blob_index_suite!`].

use super::{BlobIndex, BlobRecord, ProfilePhotoRecord};

const T0: i64 = 1_800_000_000_000;

/// Runs every case of this suite, each as its own test, against the index `$fresh` makes:
/// `$fresh` is an expression evaluated inside each (async) test, so it may `.await`, evaluating
/// to `(guard, index)`; the guard (a temporary directory, a test server) lives as long as the
/// test. Invoke it at the level of a backend's test module: `blob_index_suite!(fresh().await);`.
macro_rules! blob_index_suite {
    ($fresh:expr) => {
        $crate::store::media::suite::blob_index_suite!(
            @cases $fresh;
            upload_lifecycle,
            parts_are_counted_once,
            unfinished_uploads_are_capped_per_owner,
            expired_blobs_soonest_first,
            status_blobs_expire_early,
            known_keys_covers_blobs_and_photos,
            profile_photos_replace_and_delete,
            uploads_of_a_day_add_up,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (_guard, index) = $fresh;
                $crate::store::media::suite::$case(&index).await;
            }
        )*
    };
}
pub(crate) use blob_index_suite;

pub(crate) fn record(id: &str, owner: &str, expires_ms: i64) -> BlobRecord {
    BlobRecord {
        blob_id: id.to_owned(),
        owner_user_id: owner.to_owned(),
        kind: 1,
        size: 20_000_000,
        part_size: 8 << 20,
        parts_done: 0,
        upload: Some(format!("upload-of-{id}")),
        capability_hash: vec![7; 32],
        created_ms: T0,
        expires_ms,
    }
}

pub(crate) async fn upload_lifecycle(index: &dyn BlobIndex) {
    let rec = record("b1", "alice", T0 + 1_000);
    assert!(index.insert_blob(rec.clone(), 10).await.expect("insert"));
    assert_eq!(index.blob("b1").await.expect("get"), Some(rec.clone()));
    assert_eq!(index.blob("nope").await.expect("get"), None);
    assert!(index.commit_part("b1", 0).await.expect("part 1"));
    assert!(
        index
            .complete_blob("b1", T0 + 99_000)
            .await
            .expect("complete")
    );
    // Only once.
    assert!(!index.complete_blob("b1", T0 + 1).await.expect("again"));
    let done = index.blob("b1").await.expect("get").expect("there");
    assert!(done.complete());
    assert_eq!(done.parts_done, 1);
    assert_eq!(done.expires_ms, T0 + 99_000);
    // No part is counted on a complete blob.
    assert!(!index.commit_part("b1", 1).await.expect("late part"));
    // A sweep that listed the upload before it completed does not forget the complete blob.
    assert!(!index.remove_blob(&rec).await.expect("stale remove"));
    assert!(index.blob("b1").await.expect("get").is_some());
    assert!(index.remove_blob(&done).await.expect("remove"));
    assert_eq!(index.blob("b1").await.expect("get"), None);
    assert!(!index.remove_blob(&done).await.expect("remove again"));
}

pub(crate) async fn parts_are_counted_once(index: &dyn BlobIndex) {
    assert!(
        index
            .insert_blob(record("b", "alice", T0 + 1), 10)
            .await
            .expect("insert")
    );
    assert!(index.commit_part("b", 0).await.expect("first"));
    // A second stream that read the same count loses.
    assert!(!index.commit_part("b", 0).await.expect("stale"));
    assert!(index.commit_part("b", 1).await.expect("second"));
    assert_eq!(
        index
            .blob("b")
            .await
            .expect("get")
            .expect("there")
            .parts_done,
        2
    );
}

pub(crate) async fn unfinished_uploads_are_capped_per_owner(index: &dyn BlobIndex) {
    for i in 0..3 {
        assert!(
            index
                .insert_blob(record(&format!("a{i}"), "alice", T0), 3)
                .await
                .expect("insert")
        );
    }
    assert!(
        !index
            .insert_blob(record("a3", "alice", T0), 3)
            .await
            .expect("over")
    );
    assert_eq!(index.blob("a3").await.expect("get"), None);
    // Another owner has its own count; a finished upload frees a slot.
    assert!(
        index
            .insert_blob(record("b0", "bob", T0), 3)
            .await
            .expect("bob")
    );
    assert!(index.complete_blob("a0", T0 + 5).await.expect("complete"));
    assert!(
        index
            .insert_blob(record("a3", "alice", T0), 3)
            .await
            .expect("freed")
    );
}

pub(crate) async fn expired_blobs_soonest_first(index: &dyn BlobIndex) {
    for (id, at) in [
        ("late", T0 + 300),
        ("soon", T0 + 100),
        ("mid", T0 + 200),
        ("never", T0 + 9_999),
    ] {
        assert!(
            index
                .insert_blob(record(id, "alice", at), 10)
                .await
                .expect("insert")
        );
    }
    let ids = |v: Vec<BlobRecord>| v.into_iter().map(|r| r.blob_id).collect::<Vec<_>>();
    assert_eq!(
        ids(index.expired_blobs(T0 + 300, None, 10).await.expect("due")),
        ["soon", "mid", "late"]
    );
    assert_eq!(
        ids(index.expired_blobs(T0 + 300, None, 2).await.expect("page")),
        ["soon", "mid"]
    );
    // The next page starts after the last one seen.
    let after = (T0 + 200, "mid".to_owned());
    assert_eq!(
        ids(index
            .expired_blobs(T0 + 300, Some(&after), 2)
            .await
            .expect("next")),
        ["late"]
    );
    assert!(
        index
            .expired_blobs(T0 + 99, None, 10)
            .await
            .expect("none")
            .is_empty()
    );
}

pub(crate) async fn status_blobs_expire_early(index: &dyn BlobIndex) {
    for id in ["mine", "pending", "theirs"] {
        let owner = if id == "theirs" { "bob" } else { "alice" };
        assert!(
            index
                .insert_blob(record(id, owner, T0 + 10), 10)
                .await
                .expect("insert")
        );
    }
    assert!(
        index
            .complete_blob("mine", T0 + 1_000_000)
            .await
            .expect("complete")
    );
    assert!(
        index
            .complete_blob("theirs", T0 + 1_000_000)
            .await
            .expect("complete")
    );
    let ids = [
        "mine".to_owned(),
        "pending".to_owned(),
        "theirs".to_owned(),
        "ghost".to_owned(),
    ];
    // Only the owner's complete blobs, and never later than they were.
    assert_eq!(
        index
            .expire_blobs_at("alice", &ids, T0 + 500)
            .await
            .expect("expire"),
        1
    );
    assert_eq!(
        index
            .expire_blobs_at("alice", &ids, T0 + 900)
            .await
            .expect("later"),
        0
    );
    let at = |id: &'static str| async move {
        index
            .blob(id)
            .await
            .expect("get")
            .expect("there")
            .expires_ms
    };
    assert_eq!(at("mine").await, T0 + 500);
    assert_eq!(at("pending").await, T0 + 10);
    assert_eq!(at("theirs").await, T0 + 1_000_000);
}

pub(crate) fn photo(user: &str, version: &str) -> ProfilePhotoRecord {
    ProfilePhotoRecord {
        user_id: user.to_owned(),
        version: version.to_owned(),
        large_key: format!("pl-{user}-{version}"),
        small_key: format!("ps-{user}-{version}"),
        updated_ms: T0,
    }
}

pub(crate) async fn known_keys_covers_blobs_and_photos(index: &dyn BlobIndex) {
    assert!(
        index
            .insert_blob(record("blob1", "alice", T0), 10)
            .await
            .expect("insert")
    );
    index
        .set_profile_photo(photo("alice", "v1"))
        .await
        .expect("photo");
    let asked = [
        "blob1",
        "orphan",
        "pl-alice-v1",
        "ps-alice-v1",
        "pl-alice-v0",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut known = index.known_keys(asked).await.expect("known");
    known.sort();
    assert_eq!(known, ["blob1", "pl-alice-v1", "ps-alice-v1"]);
}

pub(crate) async fn profile_photos_replace_and_delete(index: &dyn BlobIndex) {
    assert_eq!(index.profile_photo("alice").await.expect("none"), None);
    assert_eq!(
        index
            .set_profile_photo(photo("alice", "v1"))
            .await
            .expect("set"),
        None
    );
    assert_eq!(
        index
            .set_profile_photo(photo("alice", "v2"))
            .await
            .expect("replace"),
        Some(photo("alice", "v1"))
    );
    index
        .set_profile_photo(photo("bob", "v1"))
        .await
        .expect("bob");
    assert_eq!(
        index.profile_photo("alice").await.expect("get"),
        Some(photo("alice", "v2"))
    );
    assert_eq!(
        index.delete_profile_photo("alice").await.expect("delete"),
        Some(photo("alice", "v2"))
    );
    assert_eq!(
        index.delete_profile_photo("alice").await.expect("again"),
        None
    );
    assert_eq!(
        index.profile_photo("bob").await.expect("bob"),
        Some(photo("bob", "v1"))
    );
}

pub(crate) async fn uploads_of_a_day_add_up(index: &dyn BlobIndex) {
    assert_eq!(
        index.uploaded_since("alice", T0 - 1).await.expect("none"),
        (0, None)
    );
    for (id, owner, at, size) in [
        ("old", "alice", T0 - 1_000, 7),
        ("a1", "alice", T0 + 10, 100),
        ("a2", "alice", T0 + 20, 50),
        ("b1", "bob", T0 + 30, 1_000),
    ] {
        let mut rec = record(id, owner, T0 + 99_000);
        rec.created_ms = at;
        rec.size = size;
        assert!(index.insert_blob(rec, 10).await.expect("insert"));
    }
    assert_eq!(
        index.uploaded_since("alice", T0).await.expect("sum"),
        (150, Some(T0 + 10))
    );
    assert!(
        index
            .complete_blob("a1", T0 + 99_999)
            .await
            .expect("complete")
    );
    assert_eq!(
        index
            .uploaded_since("alice", T0)
            .await
            .expect("complete ones count"),
        (150, Some(T0 + 10))
    );
    assert_eq!(
        index.uploaded_since("bob", T0).await.expect("bob"),
        (1_000, Some(T0 + 30))
    );
}
