//! The behavioural suite every [`OtpStore`] backend must pass.
//!
//! Each case is a function of a fresh store; [`crate::store_suite!`] turns them into tests for
//! one backend, given an `async fn fresh() -> (Store, Guard)` (the guard keeps e.g. a Redis
//! server alive for the test).

use std::sync::Arc;

use super::{
    DAY_MS, HOUR_MS, IssueOutcome, IssuePolicy, OtpStore, PhoneState, VerifyOutcome, WindowOutcome,
};
use crate::config::OtpConfig;

const PHONE: &str = "+12015550123";
const OTHER: &str = "+447400123456";
/// A start time that is not a multiple of an hour, so window edges are exercised.
const T0: i64 = 1_700_000_123_456;

fn policy() -> IssuePolicy {
    IssuePolicy::from_config(&OtpConfig::default())
}

/// Generates one `#[tokio::test]` per suite case for a backend.
#[macro_export]
#[doc(hidden)]
macro_rules! store_suite {
    ($fresh:path) => {
        $crate::store_suite!(@cases $fresh;
            window_counts_up_to_limit,
            window_refusals_are_not_counted_and_windows_reset,
            windows_are_independent_per_key,
            window_is_atomic_under_concurrency,
            unknown_phone_has_default_state,
            resend_schedule_is_enforced,
            daily_cap_holds_for_a_day_from_the_first_code,
            issue_replaces_code_and_resets_attempts,
            issue_is_atomic_under_concurrency,
            verify_right_code_once,
            verify_wrong_codes_burn_the_code,
            verify_expired_code,
            verify_without_code,
            verify_success_resets_schedule_not_daily_count,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                let store: std::sync::Arc<dyn $crate::store::OtpStore> = std::sync::Arc::new(store);
                $crate::store::suite::$case(store).await;
            }
        )*
    };
}

type Store = Arc<dyn OtpStore>;

/// Counts a hit against the hourly window `key` with `limit`, at `now`.
async fn hit(store: &Store, key: &str, limit: u32, now: i64) -> WindowOutcome {
    store
        .hit_window(key, limit, HOUR_MS, now)
        .await
        .expect("hit")
}

/// Issues `code_hash` for `phone` at `now` under `policy`.
async fn issue(
    store: &Store,
    phone: &str,
    code_hash: &str,
    now: i64,
    policy: &IssuePolicy,
) -> IssueOutcome {
    store
        .issue_code(phone, code_hash, now, policy)
        .await
        .expect("issue")
}

/// Checks `code_hash` for `phone` at `now`, with five attempts allowed.
async fn verify(store: &Store, phone: &str, code_hash: &str, now: i64) -> VerifyOutcome {
    store
        .verify_code(phone, code_hash, now, 5)
        .await
        .expect("verify")
}

pub(crate) async fn window_counts_up_to_limit(store: Store) {
    for _ in 0..3 {
        assert_eq!(hit(&store, "ip:a", 3, T0).await, WindowOutcome::Allowed);
    }
    let window_end = (T0 / HOUR_MS + 1) * HOUR_MS;
    assert_eq!(
        hit(&store, "ip:a", 3, T0).await,
        WindowOutcome::Refused {
            retry_after_ms: window_end - T0
        }
    );
}

pub(crate) async fn window_refusals_are_not_counted_and_windows_reset(store: Store) {
    let window_end = (T0 / HOUR_MS + 1) * HOUR_MS;
    assert_eq!(hit(&store, "k", 1, T0).await, WindowOutcome::Allowed);
    for _ in 0..5 {
        assert!(matches!(
            hit(&store, "k", 1, T0 + 10).await,
            WindowOutcome::Refused { .. }
        ));
    }
    // A larger limit in the same window sees only the one counted hit.
    assert_eq!(hit(&store, "k", 2, T0 + 20).await, WindowOutcome::Allowed);
    assert_eq!(
        hit(&store, "k", 2, window_end - 1).await,
        WindowOutcome::Refused { retry_after_ms: 1 }
    );
    assert_eq!(
        hit(&store, "k", 1, window_end).await,
        WindowOutcome::Allowed
    );
}

pub(crate) async fn windows_are_independent_per_key(store: Store) {
    assert_eq!(hit(&store, "cc:1", 1, T0).await, WindowOutcome::Allowed);
    assert_eq!(hit(&store, "cc:44", 1, T0).await, WindowOutcome::Allowed);
    assert!(matches!(
        hit(&store, "cc:1", 1, T0).await,
        WindowOutcome::Refused { .. }
    ));
}

pub(crate) async fn window_is_atomic_under_concurrency(store: Store) {
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.hit_window("ip:race", 10, HOUR_MS, T0).await })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        if task.await.expect("join").expect("hit") == WindowOutcome::Allowed {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
}

pub(crate) async fn unknown_phone_has_default_state(store: Store) {
    assert_eq!(
        store.phone_state(PHONE, T0).await.expect("peek"),
        PhoneState::default()
    );
}

pub(crate) async fn resend_schedule_is_enforced(store: Store) {
    let policy = policy();
    let mut now = T0;
    let expected = [30_000, 60_000, 300_000, 600_000, 600_000];
    assert_eq!(
        issue(&store, PHONE, "h0", now, &policy).await,
        IssueOutcome::Issued {
            resend_after_ms: expected[0]
        }
    );
    for (i, wait) in expected.iter().enumerate() {
        assert_eq!(
            issue(&store, PHONE, "early", now + wait - 1, &policy).await,
            IssueOutcome::ResendTooSoon { retry_after_ms: 1 },
            "resend {i} came early"
        );
        now += wait;
        let next = expected.get(i + 1).copied().unwrap_or(600_000);
        assert_eq!(
            issue(&store, PHONE, "h", now, &policy).await,
            IssueOutcome::Issued {
                resend_after_ms: next
            }
        );
    }
    let state = store.phone_state(PHONE, now).await.expect("peek");
    assert_eq!(
        state,
        PhoneState {
            sends: 6,
            last_sent_ms: Some(now),
            day_start_ms: Some(T0),
            day_count: 6
        }
    );
    // Another number is unaffected.
    assert!(matches!(
        issue(&store, OTHER, "h", now, &policy).await,
        IssueOutcome::Issued { .. }
    ));
}

pub(crate) async fn daily_cap_holds_for_a_day_from_the_first_code(store: Store) {
    let policy = IssuePolicy {
        resend_schedule_ms: vec![1_000],
        ..policy()
    };
    let mut now = T0;
    for i in 1..=10 {
        let outcome = issue(&store, PHONE, "h", now, &policy).await;
        let expected = if i == 10 { DAY_MS - (now - T0) } else { 1_000 };
        assert_eq!(
            outcome,
            IssueOutcome::Issued {
                resend_after_ms: expected
            },
            "code {i}"
        );
        now += 60_000;
    }
    assert_eq!(
        issue(&store, PHONE, "h", now, &policy).await,
        IssueOutcome::DailyLimit {
            retry_after_ms: T0 + DAY_MS - now
        }
    );
    assert_eq!(
        issue(&store, PHONE, "h", T0 + DAY_MS - 1, &policy).await,
        IssueOutcome::DailyLimit { retry_after_ms: 1 }
    );
    assert!(matches!(
        issue(&store, PHONE, "h", T0 + DAY_MS, &policy).await,
        IssueOutcome::Issued {
            resend_after_ms: 1_000
        }
    ));
    let state = store.phone_state(PHONE, T0 + DAY_MS).await.expect("peek");
    assert_eq!(
        (state.day_start_ms, state.day_count, state.sends),
        (Some(T0 + DAY_MS), 1, 1)
    );
}

pub(crate) async fn issue_replaces_code_and_resets_attempts(store: Store) {
    let policy = policy();
    issue(&store, PHONE, "old", T0, &policy).await;
    for left in [4, 3] {
        assert_eq!(
            verify(&store, PHONE, "bad", T0 + 1).await,
            VerifyOutcome::Wrong {
                attempts_left: left
            }
        );
    }
    let now = T0 + 30_000;
    issue(&store, PHONE, "new", now, &policy).await;
    assert_eq!(
        verify(&store, PHONE, "old", now).await,
        VerifyOutcome::Wrong { attempts_left: 4 }
    );
    assert_eq!(verify(&store, PHONE, "new", now).await, VerifyOutcome::Ok);
}

pub(crate) async fn issue_is_atomic_under_concurrency(store: Store) {
    let policy = Arc::new(policy());
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (store, policy) = (store.clone(), policy.clone());
            tokio::spawn(
                async move { store.issue_code(PHONE, &format!("h{i}"), T0, &policy).await },
            )
        })
        .collect();
    let mut issued = 0;
    for task in tasks {
        match task.await.expect("join").expect("issue") {
            IssueOutcome::Issued { .. } => issued += 1,
            IssueOutcome::ResendTooSoon { retry_after_ms } => assert_eq!(retry_after_ms, 30_000),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(issued, 1);
    assert_eq!(
        store.phone_state(PHONE, T0).await.expect("peek").day_count,
        1
    );
}

pub(crate) async fn verify_right_code_once(store: Store) {
    issue(&store, PHONE, "h", T0, &policy()).await;
    assert_eq!(verify(&store, OTHER, "h", T0).await, VerifyOutcome::NoCode);
    assert_eq!(verify(&store, PHONE, "h", T0 + 1).await, VerifyOutcome::Ok);
    assert_eq!(
        verify(&store, PHONE, "h", T0 + 2).await,
        VerifyOutcome::NoCode
    );
}

pub(crate) async fn verify_wrong_codes_burn_the_code(store: Store) {
    issue(&store, PHONE, "h", T0, &policy()).await;
    for left in [4, 3, 2, 1] {
        assert_eq!(
            verify(&store, PHONE, "bad", T0).await,
            VerifyOutcome::Wrong {
                attempts_left: left
            }
        );
    }
    assert_eq!(
        verify(&store, PHONE, "bad", T0).await,
        VerifyOutcome::TooManyAttempts
    );
    assert_eq!(verify(&store, PHONE, "h", T0).await, VerifyOutcome::NoCode);
}

pub(crate) async fn verify_expired_code(store: Store) {
    let policy = policy();
    issue(&store, PHONE, "h", T0, &policy).await;
    let expiry = T0 + policy.code_ttl_ms;
    assert_eq!(
        verify(&store, PHONE, "bad", expiry - 1).await,
        VerifyOutcome::Wrong { attempts_left: 4 }
    );
    assert_eq!(
        verify(&store, PHONE, "h", expiry).await,
        VerifyOutcome::Expired
    );
    assert_eq!(
        verify(&store, PHONE, "bad", expiry + 1).await,
        VerifyOutcome::Expired
    );
}

pub(crate) async fn verify_without_code(store: Store) {
    assert_eq!(verify(&store, PHONE, "h", T0).await, VerifyOutcome::NoCode);
    // A verify on an unknown number leaves no state behind that limits issuing.
    assert!(matches!(
        issue(&store, PHONE, "h", T0, &policy()).await,
        IssueOutcome::Issued { .. }
    ));
}

pub(crate) async fn verify_success_resets_schedule_not_daily_count(store: Store) {
    let policy = policy();
    issue(&store, PHONE, "a", T0, &policy).await;
    issue(&store, PHONE, "b", T0 + 30_000, &policy).await;
    assert_eq!(
        verify(&store, PHONE, "b", T0 + 31_000).await,
        VerifyOutcome::Ok
    );
    let state = store.phone_state(PHONE, T0 + 31_000).await.expect("peek");
    assert_eq!((state.sends, state.day_count), (0, 2));
    // No wait after a successful sign-in: the schedule starts over at 30 s.
    assert_eq!(
        issue(&store, PHONE, "c", T0 + 31_000, &policy).await,
        IssueOutcome::Issued {
            resend_after_ms: 30_000
        }
    );
    assert_eq!(
        store
            .phone_state(PHONE, T0 + 31_000)
            .await
            .expect("peek")
            .day_count,
        3
    );
}
