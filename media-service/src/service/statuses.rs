//! The status service's logic: `PostStatus` (validation, the rolling limit's answer),
//! `ListStatuses`, `DeleteStatus`, and the sweeper that removes expired statuses.
//!
//! Choices:
//! * The poster in its own audience is dropped silently (it always sees its own statuses, and a
//!   client building "all my contacts" may well find its own number there); any other
//!   duplicate, empty or over-long id is refused as INVALID_STATUS. An empty audience is
//!   allowed (only the poster sees it).
//! * A deleted status still counts towards the 100 in 24 hours (the rule counts posts), so a
//!   post/delete loop cannot exceed it.
//! * A page is also cut at [`MAX_PAGE_BYTES`] of ciphertext (with `more` set), so it fits a gRPC
//!   client's default 4 MiB message limit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use juntos_clock::SharedClock;
use juntos_proto::meta::Caller;
use juntos_store::Tasks;

use crate::error::{Error, Result};
use crate::status_id;
use crate::store::{NewStatus, PostLimit, PostOutcome, StatusPage, StatusStore, StoredStatus};

/// How long a status lives, and the window of the rolling limit.
pub const STATUS_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// Most statuses one poster may post within [`STATUS_TTL`].
pub const MAX_STATUSES_PER_DAY: u32 = 100;
/// Largest ciphertext of one status, in bytes.
pub const MAX_STATUS_BYTES: usize = 64 * 1024;
/// Most users in one status's audience (the poster not counted).
pub const MAX_AUDIENCE: usize = 5_000;
/// Longest user id accepted in an audience (login's ids are far shorter).
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest `client_status_id`.
pub const MAX_CLIENT_STATUS_ID_LEN: usize = juntos_proto::ids::MAX_CLIENT_ID_LEN;
/// `ListStatuses` page size when the request says 0.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// Largest `ListStatuses` page.
pub const MAX_LIST_LIMIT: u32 = 500;
/// Most ciphertext bytes in one `ListStatuses` page (at least one status is always returned).
pub const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

const TTL_MS: i64 = 24 * 60 * 60 * 1000;
const _: () = assert!(STATUS_TTL.as_millis() == TTL_MS as u128);

/// How the status service is tuned.
#[derive(Debug, Clone)]
pub struct StatusConfig {
    /// How often expired statuses are removed.
    pub sweep_interval: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl StatusConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.sweep_interval.is_zero() {
            return Err("the status sweep interval must be at least 1 s".into());
        }
        Ok(())
    }
}

/// The status service.
pub struct StatusService {
    config: StatusConfig,
    store: Arc<dyn StatusStore>,
    clock: SharedClock,
}

impl std::fmt::Debug for StatusService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl StatusService {
    /// A status service over `store`, telling time by `clock`.
    pub fn new(config: StatusConfig, store: Arc<dyn StatusStore>, clock: SharedClock) -> Arc<Self> {
        Arc::new(Self {
            config,
            store,
            clock,
        })
    }

    /// Starts the sweeper (at once, then every `sweep_interval`), which stops when the returned
    /// tasks are dropped.
    pub fn start(self: &Arc<Self>) -> Tasks {
        let mut tasks = Tasks::default();
        let this = Arc::clone(self);
        tasks.spawn(async move {
            loop {
                this.sweep_once().await;
                tokio::time::sleep(this.config.sweep_interval).await;
            }
        });
        tasks
    }

    /// Removes the statuses expired by now; returns how many (0 when the store failed, which
    /// is logged).
    pub async fn sweep_once(&self) -> u64 {
        match self.store.sweep_expired(self.clock.now_ms()).await {
            Ok(0) => 0,
            Ok(swept) => {
                tracing::info!(swept, "removed expired statuses");
                swept
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired statuses failed");
                0
            }
        }
    }

    /// `Statuses.PostStatus`: checks and stores a status for `audience_user_ids`. A retried
    /// `client_status_id` gets the first status back.
    pub async fn post(
        &self,
        caller: &Caller,
        client_status_id: String,
        ciphertext: Vec<u8>,
        audience_user_ids: Vec<String>,
    ) -> Result<StoredStatus> {
        check_client_status_id(&client_status_id)?;
        if ciphertext.is_empty() {
            return Err(Error::InvalidStatus("the ciphertext is empty"));
        }
        if ciphertext.len() > MAX_STATUS_BYTES {
            return Err(Error::StatusTooLarge {
                size: ciphertext.len(),
                limit: MAX_STATUS_BYTES,
            });
        }
        let audience = check_audience(caller, audience_user_ids)?;
        let now = self.clock.now_ms();
        let status = NewStatus {
            status_id: status_id::new(now),
            poster_user_id: caller.user_id.clone(),
            poster_device_id: caller.device_id.clone(),
            client_status_id,
            ciphertext,
            audience,
            posted_ms: now,
            expires_ms: now.saturating_add(TTL_MS),
        };
        let limit = PostLimit {
            max_posts: MAX_STATUSES_PER_DAY,
            window_ms: TTL_MS,
        };
        match self.store.post(status, limit).await? {
            PostOutcome::Posted(status) | PostOutcome::Duplicate(status) => Ok(status),
            PostOutcome::Limit {
                frees_with_posted_ms,
            } => {
                // Times are whole ms already; a client waiting this long gets the slot.
                let wait_ms = frees_with_posted_ms
                    .saturating_add(TTL_MS)
                    .saturating_sub(now)
                    .max(1);
                Err(Error::StatusLimit {
                    limit: MAX_STATUSES_PER_DAY,
                    retry_after: Duration::from_millis(u64::try_from(wait_ms).unwrap_or(1)),
                })
            }
        }
    }

    /// `Statuses.ListStatuses`: the unexpired statuses the caller may see with ids below
    /// `before_status_id` (empty: from the newest), newest first (`limit` 0 means
    /// [`DEFAULT_LIST_LIMIT`]; more than [`MAX_LIST_LIMIT`] means that).
    pub async fn list(
        &self,
        caller: &Caller,
        before_status_id: &str,
        limit: u32,
    ) -> Result<StatusPage> {
        let before = match before_status_id {
            "" => None,
            id if status_id::is_well_formed(id) => Some(id),
            _ => return Err(Error::InvalidStatus("before_status_id is not a status id")),
        };
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        let mut page = self
            .store
            .list_visible(&caller.user_id, self.clock.now_ms(), before, limit)
            .await?;
        cut_to_page_bytes(&mut page);
        Ok(page)
    }

    /// `Statuses.DeleteStatus`: deletes one of the caller's unexpired statuses.
    pub async fn delete(&self, caller: &Caller, status_id: &str) -> Result<()> {
        if !status_id::is_well_formed(status_id) {
            return Err(Error::NoSuchStatus);
        }
        if self
            .store
            .delete(&caller.user_id, status_id, self.clock.now_ms())
            .await?
        {
            Ok(())
        } else {
            Err(Error::NoSuchStatus)
        }
    }
}

/// A `client_status_id` the wire allows ([`juntos_proto::ids::is_client_id`]: 1–64 characters
/// of `[A-Za-z0-9_-]`), or [`Error::InvalidStatus`].
fn check_client_status_id(id: &str) -> Result<()> {
    if juntos_proto::ids::is_client_id(id) {
        Ok(())
    } else {
        Err(Error::InvalidStatus(
            "client_status_id must be 1-64 characters of A-Z, a-z, 0-9, _ and -",
        ))
    }
}

/// The audience without the poster: at most [`MAX_AUDIENCE`] distinct, non-empty ids of at most
/// [`MAX_USER_ID_LEN`] bytes.
fn check_audience(caller: &Caller, audience: Vec<String>) -> Result<Vec<String>> {
    let audience: Vec<String> = audience
        .into_iter()
        .filter(|id| *id != caller.user_id)
        .collect();
    if audience.len() > MAX_AUDIENCE {
        return Err(Error::TooManyUsers {
            count: audience.len(),
            limit: MAX_AUDIENCE,
        });
    }
    let mut seen = HashSet::with_capacity(audience.len());
    for id in &audience {
        if id.is_empty() || id.len() > MAX_USER_ID_LEN {
            return Err(Error::InvalidStatus(
                "an audience user id is empty or too long",
            ));
        }
        if !seen.insert(id.as_str()) {
            return Err(Error::InvalidStatus("an audience user id is repeated"));
        }
    }
    Ok(audience)
}

/// Cuts `page` after the statuses that fit in [`MAX_PAGE_BYTES`] (at least one).
fn cut_to_page_bytes(page: &mut StatusPage) {
    let mut total = 0;
    let fits = page
        .statuses
        .iter()
        .position(|s| {
            total += s.ciphertext.len();
            total > MAX_PAGE_BYTES
        })
        .map_or(page.statuses.len(), |over| over.max(1));
    if fits < page.statuses.len() {
        page.statuses.truncate(fits);
        page.more = true;
    }
}

#[cfg(test)]
mod tests {
    use juntos_clock::ManualClock;
    use juntos_proto::error::{reason, reason_of, retry_after_of};
    use tonic::Code;

    use super::*;
    use crate::store::SqliteStatusStore;

    /// 2100-01-01, as in the store suite.
    const T0: i64 = 4_102_444_800_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        store: Arc<SqliteStatusStore>,
        service: Arc<StatusService>,
    }

    impl Fixture {
        fn new() -> Self {
            Self::with_config(StatusConfig::default())
        }

        fn with_config(config: StatusConfig) -> Self {
            let dir = tempfile::tempdir().expect("tempdir");
            let store =
                Arc::new(SqliteStatusStore::open(&dir.path().join("media.db")).expect("open"));
            let clock = ManualClock::new(T0);
            let service = StatusService::new(config, store.clone(), clock.clone());
            Self {
                _dir: dir,
                clock,
                store,
                service,
            }
        }

        async fn post(&self, who: &str, id: &str, audience: &[&str]) -> Result<StoredStatus> {
            self.service
                .post(
                    &caller(who),
                    id.into(),
                    id.as_bytes().to_vec(),
                    audience.iter().map(|a| (*a).to_owned()).collect(),
                )
                .await
        }

        /// The client ids `who` sees now, newest first.
        async fn seen(&self, who: &str) -> Vec<String> {
            let page = self.service.list(&caller(who), "", 0).await.expect("list");
            page.statuses
                .into_iter()
                .map(|s| s.client_status_id)
                .collect()
        }
    }

    fn caller(user: &str) -> Caller {
        Caller {
            user_id: user.into(),
            device_id: format!("{user}-d1"),
            session_id: format!("{user}-s1"),
        }
    }

    fn refused<T: std::fmt::Debug>(result: Result<T>, code: Code, why: &str) -> tonic::Status {
        let status = tonic::Status::from(result.expect_err("refused"));
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(reason_of(&status).as_deref(), Some(why), "{status:?}");
        status
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_post_lives_24_hours_for_its_audience() {
        let f = Fixture::new();
        let posted = f.post("alice", "s1", &["bob"]).await.expect("post");
        assert_eq!(
            (
                posted.poster_user_id.as_str(),
                posted.poster_device_id.as_str(),
                posted.posted_ms,
                posted.expires_ms
            ),
            ("alice", "alice-d1", T0, T0 + TTL_MS)
        );
        assert!(status_id::is_well_formed(&posted.status_id));
        assert!(posted.status_id.starts_with(&T0.to_string()));
        f.clock.advance_ms(TTL_MS - 1);
        assert_eq!(f.seen("bob").await, ["s1"]);
        f.clock.advance_ms(1);
        assert!(f.seen("bob").await.is_empty());
        assert!(f.seen("alice").await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_the_audience_and_the_poster_see_a_status() {
        let f = Fixture::new();
        f.post("alice", "to-bob", &["bob"]).await.expect("post");
        f.clock.advance_ms(1);
        f.post("alice", "to-carol", &["carol", "alice"])
            .await
            .expect("post");
        f.clock.advance_ms(1);
        f.post("carol", "to-alice", &["alice"]).await.expect("post");
        assert_eq!(f.seen("alice").await, ["to-alice", "to-carol", "to-bob"]);
        assert_eq!(f.seen("bob").await, ["to-bob"]);
        assert_eq!(f.seen("carol").await, ["to-alice", "to-carol"]);
        assert!(f.seen("dave").await.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retried_post_gets_the_first_status() {
        let f = Fixture::new();
        let first = f.post("alice", "s1", &["bob"]).await.expect("post");
        f.clock.advance_ms(5_000);
        let again = f.post("alice", "s1", &["bob"]).await.expect("retry");
        assert_eq!(again, first);
        assert_eq!(f.seen("bob").await, ["s1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_101st_post_waits_until_the_oldest_expires() {
        let f = Fixture::new();
        // 100 posts 7 s apart, the first at T0.
        for i in 0..100 {
            f.post("alice", &format!("s{i}"), &[]).await.expect("post");
            f.clock.advance_ms(7_000);
        }
        // Now T0 + 700 s: the first leaves the window at T0 + 24 h.
        let status = refused(
            f.post("alice", "s100", &[]).await,
            Code::ResourceExhausted,
            reason::STATUS_LIMIT,
        );
        assert_eq!(
            retry_after_of(&status),
            Some(Duration::from_millis((TTL_MS - 700_000) as u64))
        );
        // Other posters are not affected.
        f.post("bob", "b1", &[]).await.expect("post");
        // 1 ms before: 1 ms to wait; at the instant: it fits.
        f.clock.advance_ms(TTL_MS - 700_000 - 1);
        let status = refused(
            f.post("alice", "s100", &[]).await,
            Code::ResourceExhausted,
            reason::STATUS_LIMIT,
        );
        assert_eq!(retry_after_of(&status), Some(Duration::from_millis(1)));
        f.clock.advance_ms(1);
        f.post("alice", "s100", &[]).await.expect("a slot freed");
        // The next slot frees with the second post, 7 s after the first.
        let status = refused(
            f.post("alice", "s101", &[]).await,
            Code::ResourceExhausted,
            reason::STATUS_LIMIT,
        );
        assert_eq!(retry_after_of(&status), Some(Duration::from_millis(7_000)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_bad_request_has_its_reason() {
        let f = Fixture::new();
        let alice = caller("alice");
        let post = |id: &str, body: Vec<u8>, audience: Vec<String>| {
            f.service.post(&alice, id.to_owned(), body, audience)
        };
        for id in ["", "has space", "ü", &"x".repeat(65)] {
            refused(
                post(id, b"x".to_vec(), vec![]).await,
                Code::InvalidArgument,
                reason::INVALID_STATUS,
            );
        }
        post(&"x".repeat(64), b"x".to_vec(), vec![])
            .await
            .expect("64 is fine");
        refused(
            post("empty", Vec::new(), vec![]).await,
            Code::InvalidArgument,
            reason::INVALID_STATUS,
        );
        post("max", vec![0; MAX_STATUS_BYTES], vec![])
            .await
            .expect("64 KiB");
        refused(
            post("big", vec![0; MAX_STATUS_BYTES + 1], vec![]).await,
            Code::InvalidArgument,
            reason::STATUS_TOO_LARGE,
        );
        for audience in [
            vec![String::new()],
            vec!["x".repeat(MAX_USER_ID_LEN + 1)],
            vec!["bob".to_owned(), "bob".to_owned()],
        ] {
            refused(
                post("aud", b"x".to_vec(), audience).await,
                Code::InvalidArgument,
                reason::INVALID_STATUS,
            );
        }
        let many: Vec<String> = (0..=MAX_AUDIENCE).map(|i| format!("u{i}")).collect();
        refused(
            post("many", b"x".to_vec(), many.clone()).await,
            Code::InvalidArgument,
            reason::TOO_MANY_USERS,
        );
        // 5,000 others plus the poster itself: the poster is dropped, the rest fit.
        let mut with_self = many[..MAX_AUDIENCE].to_vec();
        with_self.push("alice".to_owned());
        post("full", b"x".to_vec(), with_self)
            .await
            .expect("5,000 others");
        refused(
            f.service.list(&alice, "not-an-id", 0).await,
            Code::InvalidArgument,
            reason::INVALID_STATUS,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delete_answers_not_found_unless_it_is_the_callers_live_status() {
        let f = Fixture::new();
        let s1 = f.post("alice", "s1", &["bob"]).await.expect("post");
        let s2 = f.post("alice", "s2", &["bob"]).await.expect("post");
        for (who, id) in [
            ("bob", s1.status_id.as_str()),
            ("alice", "garbage"),
            ("alice", "00000000000000000000000000000"),
        ] {
            refused(
                f.service.delete(&caller(who), id).await,
                Code::NotFound,
                reason::NO_SUCH_STATUS,
            );
        }
        f.service
            .delete(&caller("alice"), &s1.status_id)
            .await
            .expect("delete");
        assert_eq!(f.seen("bob").await, ["s2"]);
        refused(
            f.service.delete(&caller("alice"), &s1.status_id).await,
            Code::NotFound,
            reason::NO_SUCH_STATUS,
        );
        f.clock.advance_ms(TTL_MS);
        refused(
            f.service.delete(&caller("alice"), &s2.status_id).await,
            Code::NotFound,
            reason::NO_SUCH_STATUS,
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_limits_pages_by_count_and_bytes() {
        let f = Fixture::new();
        // Three posters, so that no one reaches the daily limit.
        for i in 0..120 {
            let poster = format!("poster{}", i % 3);
            f.post(&poster, &format!("s{i}"), &["bob"])
                .await
                .expect("post");
            f.clock.advance_ms(1);
        }
        let bob = caller("bob");
        let page = f.service.list(&bob, "", 0).await.expect("list");
        assert_eq!((page.statuses.len(), page.more), (100, true));
        let page = f.service.list(&bob, "", 1_000).await.expect("list");
        assert_eq!((page.statuses.len(), page.more), (120, false));
        let next = f
            .service
            .list(&bob, &page.statuses[9].status_id, 5)
            .await
            .expect("list");
        let ids: Vec<&str> = next
            .statuses
            .iter()
            .map(|s| s.client_status_id.as_str())
            .collect();
        assert_eq!(ids, ["s109", "s108", "s107", "s106", "s105"]);

        // 64 KiB statuses: a page holds 3 MiB of them.
        let g = Fixture::new();
        for i in 0..60 {
            g.service
                .post(
                    &caller("alice"),
                    format!("big{i}"),
                    vec![1; MAX_STATUS_BYTES],
                    vec!["bob".to_owned()],
                )
                .await
                .expect("post");
        }
        let page = g.service.list(&bob, "", 500).await.expect("list");
        assert_eq!(page.statuses.len(), MAX_PAGE_BYTES / MAX_STATUS_BYTES);
        assert!(page.more);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sweeping_removes_what_expired_by_the_clock() {
        let f = Fixture::new();
        f.post("alice", "old", &["bob"]).await.expect("post");
        f.clock.advance_ms(60_000);
        f.post("alice", "new", &["bob"]).await.expect("post");
        assert_eq!(f.service.sweep_once().await, 0);
        f.clock.advance_ms(TTL_MS - 60_000);
        assert_eq!(f.service.sweep_once().await, 1);
        // Swept from the store: not even an earlier `now` finds it.
        let page = f
            .store
            .list_visible("bob", T0, None, 10)
            .await
            .expect("list");
        let ids: Vec<&str> = page
            .statuses
            .iter()
            .map(|s| s.client_status_id.as_str())
            .collect();
        assert_eq!(ids, ["new"]);
    }

    /// The sweeper runs every interval while its tasks are held, and stops when they drop.
    #[tokio::test(start_paused = true)]
    async fn the_sweeper_runs_every_interval_until_dropped() {
        let f = Fixture::with_config(StatusConfig {
            sweep_interval: Duration::from_secs(60),
        });
        let stored = |f: &Fixture| {
            let store = f.store.clone();
            async move {
                store
                    .list_visible("bob", T0, None, 10)
                    .await
                    .expect("list")
                    .statuses
                    .len()
            }
        };
        let tasks = f.service.start();
        f.post("alice", "s1", &["bob"]).await.expect("post");
        f.clock.advance_ms(TTL_MS);
        tokio::time::sleep(Duration::from_secs(61)).await;
        let mut left = stored(&f).await;
        for _ in 0..100 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            left = stored(&f).await;
        }
        assert_eq!(left, 0, "the sweeper removed the expired status");

        drop(tasks);
        f.post("alice", "s2", &["bob"]).await.expect("post");
        f.clock.advance_ms(TTL_MS);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(stored(&f).await, 1, "no sweeper after the drop");
    }
}
