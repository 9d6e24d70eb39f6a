//! [`StatusStore`] on MongoDB: the shared backend every media pod uses (a replica set or a
//! sharded cluster).
//!
//! Collections:
//! * `statuses`: one document per status: `_id` the status id, `poster_user_id`,
//!   `poster_device_id`, `client_status_id`, `ciphertext` (Binary), `posted_ms` and `expires_ms`
//!   (Int64), `expires_at` (a Date of `expires_ms`), `audience` (the viewers' user ids) and
//!   `deleted`. Indexes: unique `(poster_user_id, client_status_id)` (dedupe),
//!   `(poster_user_id, posted_ms)` (the rolling count), `(poster_user_id, _id)` (the poster's own
//!   listing), multikey `(audience, _id)` (a viewer's listing), and a TTL index on `expires_at`
//!   (`expireAfterSeconds: 0`). The TTL monitor runs about once a minute and on its own clock,
//!   so expiry does not depend on it: listings filter on `expires_ms`, and the service's sweeper
//!   deletes what expired on the service's clock. A deleted status keeps its document as a
//!   tombstone (no ciphertext, empty audience) until then, since it still counts towards the
//!   rolling limit.
//! * `status_posters`: `_id` the poster's user id, `posts` (Int64, raised by every post) and
//!   `expires_at` (the Date its latest status expires; TTL index and sweeper as above). It exists
//!   to be written: see below.
//!
//! A post is one transaction (write concern majority, journaled; snapshot reads). Its first
//! write raises the poster's `status_posters.posts`; then it looks for the dedupe key, counts the
//! poster's statuses in the window and inserts the status. Two concurrent posts of one poster
//! both write that document, so one of them fails with a write conflict
//! (`TransientTransactionError`) and runs again, then counting the other's status: the limit
//! holds across pods without a lock. The connection, the write concern, the commit and the
//! conflict checks are `juntos_store::mongo`'s; the post keeps its own loop (snapshot reads, a
//! time budget for running again, and a retry when two first posts race on the poster document).
//!
//! Shard keys (for a sharded cluster): `statuses` by `{poster_user_id: 1}` (the dedupe index and
//! a post's transaction stay on one shard; a viewer's listing scatters, as it must, since its
//! statuses come from many posters), `status_posters` by `{_id: "hashed"}`.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
use juntos_store::mongo::{
    Fields as _, backoff, binary, commit, index, is_duplicate_key, is_transient, majority,
    unique_index,
};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::options::{IndexOptions, ReadConcern};
use mongodb::{ClientSession, Collection, Database, IndexModel};

use super::{
    NewStatus, PostLimit, PostOutcome, StatusPage, StatusStore, StoredStatus, merge_newest_first,
};
use crate::store::{MongoStatusStore, StoreError};

/// How long a post keeps running its transaction again after write conflicts.
const RETRY_BUDGET: Duration = Duration::from_secs(30);

/// What one attempt of a post's transaction came to.
enum Attempt {
    /// Inserted; commit.
    Posted(StoredStatus),
    /// Nothing to write; abort and answer this.
    Answer(PostOutcome),
    /// Two first posts of a poster raced on creating its document; abort and run again.
    Retry,
}

/// Creates the indexes of `statuses` and `status_posters` (idempotently).
pub(in crate::store) async fn create_indexes(db: &Database) -> Result<(), StoreError> {
    let ttl = |name: &str| {
        IndexModel::builder()
            .keys(doc! { "expires_at": 1 })
            .options(
                IndexOptions::builder()
                    .expire_after(Duration::ZERO)
                    .name(name.to_owned())
                    .build(),
            )
            .build()
    };
    db.collection::<Document>("statuses")
        .create_indexes([
            unique_index(
                doc! { "poster_user_id": 1, "client_status_id": 1 },
                "poster_client_unique",
            ),
            index(
                doc! { "poster_user_id": 1, "posted_ms": 1 },
                "by_poster_time",
            ),
            index(doc! { "poster_user_id": 1, "_id": 1 }, "by_poster"),
            index(doc! { "audience": 1, "_id": 1 }, "by_audience"),
            ttl("expires_at_ttl"),
        ])
        .await?;
    db.collection::<Document>("status_posters")
        .create_index(ttl("expires_at_ttl"))
        .await?;
    Ok(())
}

impl MongoStatusStore {
    fn statuses(&self) -> Collection<Document> {
        self.db.collection("statuses")
    }

    fn posters(&self) -> Collection<Document> {
        self.db.collection("status_posters")
    }

    /// One attempt of a post, inside the transaction of `s`.
    async fn attempt_post(
        &self,
        s: &mut ClientSession,
        status: &NewStatus,
        limit: PostLimit,
    ) -> Result<Attempt, StoreError> {
        let now = status.posted_ms;
        // The first write: every concurrent post of this poster conflicts with it.
        let raised = self
            .posters()
            .update_one(
                doc! { "_id": &status.poster_user_id },
                doc! {
                    "$inc": { "posts": 1_i64 },
                    "$max": { "expires_at": DateTime::from_millis(status.expires_ms) },
                },
            )
            .upsert(true)
            .session(&mut *s)
            .await;
        match raised {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Ok(Attempt::Retry),
            Err(e) => return Err(e.into()),
        }

        let existing = self
            .statuses()
            .find_one(doc! {
                "poster_user_id": &status.poster_user_id,
                "client_status_id": &status.client_status_id,
            })
            .projection(doc! { "audience": 0 })
            .session(&mut *s)
            .await?;
        if let Some(existing) = existing {
            let existing = status_from_doc(&existing)?;
            if existing.expires_ms > now {
                return Ok(Attempt::Answer(PostOutcome::Duplicate(existing)));
            }
            // Expired (neither the sweeper nor the TTL monitor has come by yet): free again.
            self.statuses()
                .delete_one(doc! { "_id": &existing.status_id })
                .session(&mut *s)
                .await?;
        }

        let window = doc! {
            "poster_user_id": &status.poster_user_id,
            "posted_ms": { "$gt": now.saturating_sub(limit.window_ms) },
        };
        let in_window = self
            .statuses()
            .count_documents(window.clone())
            .session(&mut *s)
            .await?;
        if in_window >= u64::from(limit.max_posts) {
            // The status whose leaving the window brings the count below the limit.
            let frees = self
                .statuses()
                .find_one(window)
                .sort(doc! { "posted_ms": 1 })
                .skip(in_window - u64::from(limit.max_posts))
                .projection(doc! { "posted_ms": 1 })
                .session(&mut *s)
                .await?
                .ok_or_else(|| StoreError::Corrupt("counted statuses vanished".into()))?;
            return Ok(Attempt::Answer(PostOutcome::Limit {
                frees_with_posted_ms: frees.i64_field("posted_ms")?,
            }));
        }

        let inserted = self
            .statuses()
            .insert_one(doc! {
                "_id": &status.status_id,
                "poster_user_id": &status.poster_user_id,
                "poster_device_id": &status.poster_device_id,
                "client_status_id": &status.client_status_id,
                "ciphertext": binary(&status.ciphertext),
                "posted_ms": status.posted_ms,
                "expires_ms": status.expires_ms,
                "expires_at": DateTime::from_millis(status.expires_ms),
                "audience": &status.audience,
                "deleted": false,
            })
            .session(&mut *s)
            .await;
        match inserted {
            Ok(_) => {}
            // Only a post racing past the poster document could get here; run again.
            Err(e) if is_duplicate_key(&e) => return Ok(Attempt::Retry),
            Err(e) => return Err(e.into()),
        }
        Ok(Attempt::Posted(status.stored()))
    }

    /// Up to `take` visible statuses matching `filter`, newest first.
    async fn find_visible(
        &self,
        filter: Document,
        take: i64,
    ) -> Result<Vec<StoredStatus>, StoreError> {
        self.statuses()
            .find(filter)
            .projection(doc! { "audience": 0 })
            .sort(doc! { "_id": -1 })
            .limit(take)
            .await?
            .map_err(StoreError::from)
            .and_then(|d| async move { status_from_doc(&d) })
            .try_collect()
            .await
    }
}

#[async_trait]
impl StatusStore for MongoStatusStore {
    async fn post(&self, status: NewStatus, limit: PostLimit) -> Result<PostOutcome, StoreError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let retry_left = started.elapsed() < RETRY_BUDGET;
            let mut session = self.client.start_session().await?;
            session
                .start_transaction()
                .read_concern(ReadConcern::snapshot())
                .write_concern(majority())
                .await?;
            match self.attempt_post(&mut session, &status, limit).await {
                Ok(Attempt::Posted(posted)) => match commit(&mut session).await {
                    Ok(()) => return Ok(PostOutcome::Posted(posted)),
                    Err(e) if retry_left && is_transient(&e) => {}
                    Err(e) => return Err(e),
                },
                Ok(Attempt::Answer(outcome)) => {
                    let _ = session.abort_transaction().await;
                    return Ok(outcome);
                }
                Ok(Attempt::Retry) => {
                    let _ = session.abort_transaction().await;
                    if !retry_left {
                        return Err(StoreError::Corrupt("a post kept conflicting".into()));
                    }
                }
                Err(e) if retry_left && is_transient(&e) => {
                    let _ = session.abort_transaction().await;
                }
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    return Err(e);
                }
            }
            backoff(attempt).await;
        }
    }

    async fn list_visible(
        &self,
        viewer_user_id: &str,
        now_ms: i64,
        before_status_id: Option<&str>,
        limit: u32,
    ) -> Result<StatusPage, StoreError> {
        let take = i64::from(limit) + 1;
        let visible = |who: Document| {
            let mut filter = who;
            filter.insert("expires_ms", doc! { "$gt": now_ms });
            filter.insert("deleted", false);
            if let Some(before) = before_status_id {
                filter.insert("_id", doc! { "$lt": before });
            }
            filter
        };
        let addressed = self
            .find_visible(visible(doc! { "audience": viewer_user_id }), take)
            .await?;
        let own = self
            .find_visible(visible(doc! { "poster_user_id": viewer_user_id }), take)
            .await?;
        Ok(merge_newest_first(addressed, own, limit))
    }

    async fn delete(
        &self,
        poster_user_id: &str,
        status_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .statuses()
            .update_one(
                doc! {
                    "_id": status_id,
                    "poster_user_id": poster_user_id,
                    "deleted": false,
                    "expires_ms": { "$gt": now_ms },
                },
                doc! { "$set": {
                    "deleted": true,
                    "audience": Bson::Array(Vec::new()),
                    "ciphertext": binary(&[]),
                } },
            )
            .await?;
        Ok(deleted.modified_count == 1)
    }

    async fn sweep_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let expired = doc! { "expires_at": { "$lte": DateTime::from_millis(now_ms) } };
        let removed = self.statuses().delete_many(expired.clone()).await?;
        // A poster whose every status expired; a post racing this conflicts and runs again.
        self.posters().delete_many(expired).await?;
        Ok(removed.deleted_count)
    }
}

fn status_from_doc(d: &Document) -> Result<StoredStatus, StoreError> {
    Ok(StoredStatus {
        status_id: d.string_field("_id")?,
        poster_user_id: d.string_field("poster_user_id")?,
        poster_device_id: d.string_field("poster_device_id")?,
        client_status_id: d.string_field("client_status_id")?,
        ciphertext: d.bytes_field("ciphertext")?,
        posted_ms: d.i64_field("posted_ms")?,
        expires_ms: d.i64_field("expires_ms")?,
    })
}

#[cfg(test)]
mod tests {
    //! The status store suite against MongoDB: SecantusDB started per test (or the server at
    //! `JUNTOS_TEST_MONGODB_URI`), each test in a fresh database.

    use juntos_store::mongo::MongoStore as _;
    use juntos_testkit::unique_database;
    use mongodb::bson::{Bson, Document, doc};

    use crate::store::mongo::tests::{fresh, server};
    use crate::store::statuses::suite::{self, DAY_MS, LIMIT, T0, new_status};
    use crate::store::{COLLECTIONS, MongoStatusStore, PostOutcome, StatusStore};

    suite::status_store_suite!(fresh().await);

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
}
