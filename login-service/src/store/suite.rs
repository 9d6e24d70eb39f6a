//! The behavioural suite every [`LoginStore`] backend must pass. Each case takes a fresh, empty
//! store (`&Arc<dyn LoginStore>` where it spawns tasks, `&dyn LoginStore` otherwise); a
//! backend's tests run every case with one [`login_store_suite!`] line.

use std::collections::HashSet;
use std::sync::Arc;

use super::{
    AddDeviceOutcome, Contact, Device, LoginStore, NewDevice, NewSession, OneTimePrekey,
    PrekeyBundle, Revocation, RevokeReason, RotateOutcome, Session, Settings, SettingsUpdate,
    SignedPrekey, Visibility,
};

/// How a backend's test hands its fresh store to a case: cases take `&dyn LoginStore`, or
/// `&Arc<dyn LoginStore>` when they spawn tasks; `handle(&store)` gives either.
pub(crate) trait Handle<'a> {
    /// The store as this case takes it.
    fn handle(store: &'a Arc<dyn LoginStore>) -> Self;
}

impl<'a> Handle<'a> for &'a dyn LoginStore {
    fn handle(store: &'a Arc<dyn LoginStore>) -> Self {
        store.as_ref()
    }
}

impl<'a> Handle<'a> for &'a Arc<dyn LoginStore> {
    fn handle(store: &'a Arc<dyn LoginStore>) -> Self {
        store
    }
}

/// Runs every case of this suite against the store `$fresh` makes: `$fresh` is a future (awaited
/// once per case) evaluating to `(guard, store)`, where `store` is a fresh, empty
/// `impl LoginStore + 'static` and `guard` (a server, a temporary directory, or `()`) is kept
/// alive until the case ends. Expands to a module `suite_cases` with one test per case.
macro_rules! login_store_suite {
    ($fresh:expr) => {
        $crate::store::suite::login_store_suite!(
            @cases $fresh;
            account_created_once_per_phone,
            concurrent_account_creation,
            device_cap,
            concurrent_device_cap,
            devices_lists_active_only,
            session_round_trip,
            rotation,
            reuse_revokes_session,
            concurrent_rotation,
            expired_refresh_token,
            revoke_device_sessions,
            revocations_since,
            signed_prekey_round_trip,
            one_time_prekeys_cap_and_replace,
            take_bundles,
            concurrent_take_bundles,
            sign_out_deletes_prekeys,
            devices_of,
            phones_and_contacts,
            mutual_contacts,
            settings_round_trip,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        mod suite_cases {
            #[allow(unused_imports)]
            use super::*;

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let (_guard, store) = $fresh.await;
                    let store: ::std::sync::Arc<dyn $crate::store::LoginStore> =
                        ::std::sync::Arc::new(store);
                    $crate::store::suite::$case($crate::store::suite::Handle::handle(&store))
                        .await;
                }
            )*
        }
    };
}

pub(crate) use login_store_suite;

const T0: i64 = 1_750_000_000_000;
const DAY: i64 = 24 * 60 * 60 * 1000;

fn new_device(user_id: &str, device_id: &str, at: i64) -> NewDevice {
    NewDevice {
        device_id: device_id.into(),
        user_id: user_id.into(),
        name: format!("phone {device_id}"),
        platform: 1,
        identity_signing_key: vec![1; 32],
        identity_dh_key: vec![2; 32],
        created_at_ms: at,
    }
}

/// `items` as owned strings.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Creates account `u{n}` with phone `+1555000000{n}` at [`T0`].
async fn account(store: &dyn LoginStore, n: u8) {
    store
        .find_or_create_account(&format!("+1555000000{n}"), &format!("u{n}"), T0)
        .await
        .expect("account");
}

/// Adds [`new_device`] `device_id` of `user_id` at `at`, under a cap of 8 devices.
async fn add_device(
    store: &dyn LoginStore,
    user_id: &str,
    device_id: &str,
    at: i64,
) -> AddDeviceOutcome {
    store
        .add_device(new_device(user_id, device_id, at), 8)
        .await
        .expect("add device")
}

/// Creates session `session_id` of `device_id` at [`T0`], its refresh token hashing to `hash`
/// and expiring 30 days later.
async fn create_session(
    store: &dyn LoginStore,
    user_id: &str,
    device_id: &str,
    session_id: &str,
    hash: &str,
) {
    let session = NewSession {
        session_id: session_id.into(),
        user_id: user_id.into(),
        device_id: device_id.into(),
        refresh_token_hash: hash.into(),
        refresh_expires_at_ms: T0 + 30 * DAY,
        created_at_ms: T0,
    };
    store.create_session(session).await.expect("session");
}

/// An account `u1` with device `d1` and session `s1` whose refresh token hashes to `h1`.
async fn signed_in(store: &dyn LoginStore) {
    account(store, 1).await;
    let added = add_device(store, "u1", "d1", T0).await;
    assert!(matches!(added, AddDeviceOutcome::Added(_)));
    create_session(store, "u1", "d1", "s1", "h1").await;
}

/// The stored session `session_id`, which must exist.
async fn stored_session(store: &dyn LoginStore, session_id: &str) -> Session {
    store
        .session(session_id)
        .await
        .expect("get")
        .expect("session exists")
}

/// The stored device `device_id` (removed or not), which must exist.
async fn stored_device(store: &dyn LoginStore, device_id: &str) -> Device {
    store
        .device(device_id)
        .await
        .expect("get")
        .expect("device exists")
}

/// Exchanges the refresh token hashed `old_hash` for one hashed `new_hash`.
async fn rotate(
    store: &dyn LoginStore,
    old_hash: &str,
    new_hash: &str,
    new_expires_at_ms: i64,
    now_ms: i64,
) -> RotateOutcome {
    store
        .rotate_refresh_token(old_hash, new_hash, new_expires_at_ms, now_ms)
        .await
        .expect("rotate")
}

/// Signs `device_id` out as `user_id` at `at`; the sessions this revoked.
async fn sign_out(store: &dyn LoginStore, user_id: &str, device_id: &str, at: i64) -> Vec<String> {
    store
        .revoke_device_sessions(user_id, device_id, at, RevokeReason::SignOut)
        .await
        .expect("sign out")
}

pub(crate) async fn account_created_once_per_phone(store: &dyn LoginStore) {
    let (a, created) = store
        .find_or_create_account("+15550000001", "u1", T0)
        .await
        .expect("create");
    assert!(created);
    assert_eq!(
        (a.user_id.as_str(), a.phone.as_str(), a.created_at_ms),
        ("u1", "+15550000001", T0)
    );

    let (b, created) = store
        .find_or_create_account("+15550000001", "u2", T0 + 5)
        .await
        .expect("find");
    assert!(!created);
    assert_eq!(b, a, "the existing account, not the new id or time");

    let (c, created) = store
        .find_or_create_account("+15550000002", "u3", T0)
        .await
        .expect("other");
    assert!(created);
    assert_eq!(c.user_id, "u3");

    assert_eq!(store.account("u1").await.expect("get"), Some(a));
    assert_eq!(store.account("u2").await.expect("get"), None);
}

pub(crate) async fn concurrent_account_creation(store: &dyn LoginStore) {
    let phone = "+15550000009";
    let (a, b, c) = tokio::join!(
        store.find_or_create_account(phone, "ua", T0),
        store.find_or_create_account(phone, "ub", T0),
        store.find_or_create_account(phone, "uc", T0),
    );
    let results = [a.expect("a"), b.expect("b"), c.expect("c")];
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    let ids: Vec<&str> = results
        .iter()
        .map(|(acc, _)| acc.user_id.as_str())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
}

pub(crate) async fn device_cap(store: &dyn LoginStore) {
    account(store, 1).await;
    for i in 0..3 {
        let added = store
            .add_device(new_device("u1", &format!("d{i}"), T0 + i), 3)
            .await
            .expect("add");
        let AddDeviceOutcome::Added(device) = added else {
            panic!("device {i} refused")
        };
        assert_eq!(device.device_id, format!("d{i}"));
        assert_eq!(device.removed_at_ms, None);
    }
    let refused = store
        .add_device(new_device("u1", "d3", T0 + 3), 3)
        .await
        .expect("add");
    assert_eq!(refused, AddDeviceOutcome::TooManyDevices);
    assert_eq!(
        store.device("d3").await.expect("get"),
        None,
        "nothing written when refused"
    );

    // A removed device frees its slot.
    sign_out(store, "u1", "d0", T0 + 10).await;
    let added = store
        .add_device(new_device("u1", "d3", T0 + 11), 3)
        .await
        .expect("add");
    assert!(matches!(added, AddDeviceOutcome::Added(_)));
}

pub(crate) async fn concurrent_device_cap(store: &dyn LoginStore) {
    account(store, 1).await;
    let results = tokio::join!(
        store.add_device(new_device("u1", "d0", T0), 2),
        store.add_device(new_device("u1", "d1", T0), 2),
        store.add_device(new_device("u1", "d2", T0), 2),
        store.add_device(new_device("u1", "d3", T0), 2),
    );
    let outcomes = [results.0, results.1, results.2, results.3].map(|r| r.expect("add"));
    let added = outcomes
        .iter()
        .filter(|o| matches!(o, AddDeviceOutcome::Added(_)))
        .count();
    assert_eq!(added, 2);
    assert_eq!(store.devices("u1").await.expect("list").len(), 2);
}

pub(crate) async fn devices_lists_active_only(store: &dyn LoginStore) {
    account(store, 1).await;
    account(store, 2).await;
    let stored = new_device("u1", "d1", T0 + 2);
    store.add_device(stored.clone(), 8).await.expect("add");
    add_device(store, "u1", "d0", T0 + 1).await;
    add_device(store, "u1", "d2", T0 + 3).await;
    add_device(store, "u2", "dx", T0).await;
    sign_out(store, "u1", "d2", T0 + 4).await;

    let devices = store.devices("u1").await.expect("list");
    let ids: Vec<&str> = devices.iter().map(|d| d.device_id.as_str()).collect();
    assert_eq!(
        ids,
        ["d0", "d1"],
        "active only, oldest first, this account only"
    );
    let d1 = &devices[1];
    assert_eq!(d1.name, stored.name);
    assert_eq!(d1.platform, stored.platform);
    assert_eq!(d1.identity_signing_key, stored.identity_signing_key);
    assert_eq!(d1.identity_dh_key, stored.identity_dh_key);
    assert_eq!(d1.created_at_ms, stored.created_at_ms);

    let removed = stored_device(store, "d2").await;
    assert_eq!(removed.removed_at_ms, Some(T0 + 4));
}

pub(crate) async fn session_round_trip(store: &dyn LoginStore) {
    signed_in(store).await;
    let session = stored_session(store, "s1").await;
    assert_eq!(session.user_id, "u1");
    assert_eq!(session.device_id, "d1");
    assert_eq!(session.created_at_ms, T0);
    assert!(session.is_active());
    assert_eq!(session.revoke_reason, None);
    assert_eq!(store.session("nope").await.expect("get"), None);
}

pub(crate) async fn rotation(store: &dyn LoginStore) {
    signed_in(store).await;
    let outcome = rotate(store, "h1", "h2", T0 + 31 * DAY, T0 + 1000).await;
    let RotateOutcome::Rotated { session } = outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(
        (session.session_id.as_str(), session.device_id.as_str()),
        ("s1", "d1")
    );

    let outcome = rotate(store, "h2", "h3", T0 + 32 * DAY, T0 + 2000).await;
    assert!(matches!(outcome, RotateOutcome::Rotated { .. }));

    let unknown = rotate(store, "hx", "hy", T0 + 32 * DAY, T0 + 3000).await;
    assert_eq!(unknown, RotateOutcome::Invalid);
    assert!(stored_session(store, "s1").await.is_active());
}

pub(crate) async fn reuse_revokes_session(store: &dyn LoginStore) {
    signed_in(store).await;
    rotate(store, "h1", "h2", T0 + 31 * DAY, T0 + 1000).await;
    let outcome = rotate(store, "h1", "h9", T0 + 31 * DAY, T0 + 2000).await;
    assert_eq!(
        outcome,
        RotateOutcome::Reused {
            session_id: "s1".into()
        }
    );

    let session = stored_session(store, "s1").await;
    assert_eq!(session.revoked_at_ms, Some(T0 + 2000));
    assert_eq!(
        session.revoke_reason,
        Some(RevokeReason::RefreshTokenReused)
    );

    // The device went with its session: it no longer counts or receives.
    assert!(store.devices("u1").await.expect("devices").is_empty());

    // The newest token of the family is dead too, and so is the reused one from now on.
    let newest = rotate(store, "h2", "h3", T0 + 31 * DAY, T0 + 3000).await;
    assert_eq!(newest, RotateOutcome::Invalid);
    let again = rotate(store, "h1", "h4", T0 + 31 * DAY, T0 + 3000).await;
    assert_eq!(again, RotateOutcome::Invalid);
    // The attempted replacement token was never stored.
    let ghost = rotate(store, "h9", "h5", T0 + 31 * DAY, T0 + 3000).await;
    assert_eq!(ghost, RotateOutcome::Invalid);

    assert_eq!(
        store.revocations_since(0).await.expect("list"),
        [Revocation {
            session_id: "s1".into(),
            revoked_at_ms: T0 + 2000
        }]
    );
}

pub(crate) async fn concurrent_rotation(store: &dyn LoginStore) {
    signed_in(store).await;
    let (a, b) = tokio::join!(
        store.rotate_refresh_token("h1", "ha", T0 + 31 * DAY, T0 + 1000),
        store.rotate_refresh_token("h1", "hb", T0 + 31 * DAY, T0 + 1000),
    );
    let mut outcomes = [a.expect("a"), b.expect("b")];
    outcomes.sort_by_key(|o| matches!(o, RotateOutcome::Reused { .. }));
    assert!(
        matches!(outcomes[0], RotateOutcome::Rotated { .. }),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        RotateOutcome::Reused {
            session_id: "s1".into()
        }
    );
    assert!(!stored_session(store, "s1").await.is_active());
}

pub(crate) async fn expired_refresh_token(store: &dyn LoginStore) {
    signed_in(store).await;
    let expires = T0 + 30 * DAY;
    let outcome = rotate(store, "h1", "h2", expires + DAY, expires).await;
    assert_eq!(outcome, RotateOutcome::Invalid);
    // Refusing an expired token is not reuse: the session stays, nothing was rotated.
    assert!(stored_session(store, "s1").await.is_active());
    let outcome = rotate(store, "h1", "h2", expires + DAY, expires - 1).await;
    assert!(matches!(outcome, RotateOutcome::Rotated { .. }));
}

pub(crate) async fn revoke_device_sessions(store: &dyn LoginStore) {
    signed_in(store).await;
    create_session(store, "u1", "d1", "s2", "h2").await;

    // Another user cannot sign this device out.
    account(store, 2).await;
    let none = sign_out(store, "u2", "d1", T0 + 5).await;
    assert!(none.is_empty());
    assert_eq!(stored_device(store, "d1").await.removed_at_ms, None);

    let revoked = sign_out(store, "u1", "d1", T0 + 10).await;
    assert_eq!(revoked, ["s1", "s2"]);
    let s1 = stored_session(store, "s1").await;
    assert_eq!(s1.revoked_at_ms, Some(T0 + 10));
    assert_eq!(s1.revoke_reason, Some(RevokeReason::SignOut));
    assert_eq!(
        stored_device(store, "d1").await.removed_at_ms,
        Some(T0 + 10)
    );
    assert!(store.devices("u1").await.expect("list").is_empty());

    // Refresh tokens of a revoked session no longer work.
    let outcome = rotate(store, "h1", "h3", T0 + 31 * DAY, T0 + 20).await;
    assert_eq!(outcome, RotateOutcome::Invalid);

    // Idempotent: a second sign-out revokes nothing and keeps the first times.
    let again = sign_out(store, "u1", "d1", T0 + 30).await;
    assert!(again.is_empty());
    assert_eq!(
        stored_session(store, "s1").await.revoked_at_ms,
        Some(T0 + 10)
    );
}

pub(crate) async fn revocations_since(store: &dyn LoginStore) {
    account(store, 1).await;
    for (i, at) in [(1, T0 + 100), (2, T0 + 200), (3, T0 + 300)] {
        let device = format!("d{i}");
        add_device(store, "u1", &device, T0).await;
        create_session(store, "u1", &device, &format!("s{i}"), &format!("h{i}")).await;
        sign_out(store, "u1", &device, at).await;
    }
    add_device(store, "u1", "d4", T0).await;
    create_session(store, "u1", "d4", "s4", "h4").await;

    let ids = |r: Vec<Revocation>| r.into_iter().map(|r| r.session_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.revocations_since(0).await.expect("list")),
        ["s1", "s2", "s3"]
    );
    let from_200 = store.revocations_since(T0 + 200).await.expect("list");
    assert_eq!(
        from_200,
        [
            Revocation {
                session_id: "s2".into(),
                revoked_at_ms: T0 + 200
            },
            Revocation {
                session_id: "s3".into(),
                revoked_at_ms: T0 + 300
            },
        ]
    );
    assert!(
        store
            .revocations_since(T0 + 301)
            .await
            .expect("list")
            .is_empty()
    );
}

// === key directory ===

fn signed(key_id: u32) -> SignedPrekey {
    SignedPrekey {
        key_id,
        public_key: vec![u8::try_from(key_id % 250).expect("small"); 32],
        signature: vec![9; 64],
    }
}

fn one_time(key_ids: impl IntoIterator<Item = u32>) -> Vec<OneTimePrekey> {
    key_ids
        .into_iter()
        .map(|key_id| OneTimePrekey {
            key_id,
            public_key: vec![u8::try_from(key_id % 250).expect("small"); 32],
        })
        .collect()
}

/// Publishes `prekey` as the signed prekey of `device_id` at `at`; whether the device took it.
async fn set_signed_prekey(
    store: &dyn LoginStore,
    device_id: &str,
    prekey: SignedPrekey,
    at: i64,
) -> bool {
    store
        .set_signed_prekey(device_id, prekey, at)
        .await
        .expect("set signed prekey")
}

/// Adds `prekeys` to the one-time prekeys of `device_id` at `at`, keeping at most `max_stored`;
/// how many the device now has (`None` for an unknown or removed device).
async fn add_one_time_prekeys(
    store: &dyn LoginStore,
    device_id: &str,
    prekeys: Vec<OneTimePrekey>,
    max_stored: u32,
    at: i64,
) -> Option<u32> {
    store
        .add_one_time_prekeys(device_id, prekeys, max_stored, at)
        .await
        .expect("add one-time prekeys")
}

/// The bundles `take_bundles` hands out for `user_id` (which must exist), except for
/// `except_device_id`.
async fn bundles_of(
    store: &dyn LoginStore,
    user_id: &str,
    except_device_id: Option<&str>,
) -> Vec<PrekeyBundle> {
    store
        .take_bundles(user_id, except_device_id)
        .await
        .expect("take")
        .expect("user exists")
}

/// The one-time prekey ids `take_bundles` hands out for `device_id` of `user_id` until none is
/// left (the device must have a signed prekey).
async fn drain(store: &dyn LoginStore, user_id: &str, device_id: &str) -> Vec<u32> {
    let mut ids = Vec::new();
    loop {
        let bundles = bundles_of(store, user_id, None).await;
        let bundle = bundles
            .into_iter()
            .find(|b| b.device_id == device_id)
            .expect("device has a bundle");
        match bundle.one_time_prekey {
            Some(k) => ids.push(k.key_id),
            None => return ids,
        }
    }
}

pub(crate) async fn signed_prekey_round_trip(store: &dyn LoginStore) {
    signed_in(store).await;
    assert_eq!(store.signed_prekey("d1").await.expect("get"), None);
    assert!(
        !set_signed_prekey(store, "nope", signed(1), T0).await,
        "unknown device"
    );
    assert!(set_signed_prekey(store, "d1", signed(1), T0).await);
    assert_eq!(
        store.signed_prekey("d1").await.expect("get"),
        Some(signed(1))
    );
    assert!(set_signed_prekey(store, "d1", signed(2), T0 + 1).await);
    assert_eq!(
        store.signed_prekey("d1").await.expect("get"),
        Some(signed(2))
    );

    sign_out(store, "u1", "d1", T0 + 2).await;
    assert!(
        !set_signed_prekey(store, "d1", signed(3), T0 + 3).await,
        "removed device"
    );
    assert_eq!(store.signed_prekey("d1").await.expect("get"), None);
}

pub(crate) async fn one_time_prekeys_cap_and_replace(store: &dyn LoginStore) {
    signed_in(store).await;
    assert_eq!(
        add_one_time_prekeys(store, "nope", one_time(1..3), 5, T0).await,
        None,
        "unknown device"
    );
    assert_eq!(store.one_time_prekey_count("nope").await.expect("count"), 0);
    assert_eq!(
        add_one_time_prekeys(store, "d1", one_time(1..4), 5, T0).await,
        Some(3)
    );
    // Re-uploading key 1 replaces it and makes it the newest.
    let replacement = OneTimePrekey {
        key_id: 1,
        public_key: vec![0xee; 32],
    };
    assert_eq!(
        add_one_time_prekeys(store, "d1", vec![replacement.clone()], 5, T0 + 1).await,
        Some(3)
    );
    // Over the cap of 5: the two oldest (2, 3) go.
    assert_eq!(
        add_one_time_prekeys(store, "d1", one_time([10, 11, 12, 13]), 5, T0 + 2).await,
        Some(5)
    );
    assert_eq!(store.one_time_prekey_count("d1").await.expect("count"), 5);

    assert!(set_signed_prekey(store, "d1", signed(1), T0).await);
    let first = bundles_of(store, "u1", None).await.remove(0);
    assert_eq!(first.one_time_prekey, Some(replacement));
    assert_eq!(drain(store, "u1", "d1").await, [10, 11, 12, 13]);
    assert_eq!(store.one_time_prekey_count("d1").await.expect("count"), 0);

    // Within one call the order of the list is the upload order.
    add_one_time_prekeys(store, "d1", one_time([30, 20, 25]), 5, T0 + 3).await;
    assert_eq!(drain(store, "u1", "d1").await, [30, 20, 25]);

    // A removed device takes no more keys.
    sign_out(store, "u1", "d1", T0 + 4).await;
    assert_eq!(
        add_one_time_prekeys(store, "d1", one_time(1..3), 5, T0 + 5).await,
        None
    );
    assert_eq!(store.one_time_prekey_count("d1").await.expect("count"), 0);
}

pub(crate) async fn take_bundles(store: &dyn LoginStore) {
    assert_eq!(store.take_bundles("u1", None).await.expect("take"), None);
    account(store, 1).await;
    assert_eq!(
        store.take_bundles("u1", None).await.expect("take"),
        Some(vec![]),
        "an existing user without devices"
    );
    // d2 (oldest) and d1 publish; d3 has no signed prekey; d4 is signed out.
    for (device, at) in [
        ("d1", T0 + 2),
        ("d2", T0 + 1),
        ("d3", T0 + 3),
        ("d4", T0 + 4),
    ] {
        add_device(store, "u1", device, at).await;
    }
    for (device, key) in [("d1", 1), ("d2", 2), ("d4", 4)] {
        assert!(set_signed_prekey(store, device, signed(key), T0).await);
        add_one_time_prekeys(store, device, one_time([key * 100, key * 100 + 1]), 10, T0).await;
    }
    add_one_time_prekeys(store, "d3", one_time([300]), 10, T0).await;
    sign_out(store, "u1", "d4", T0 + 5).await;

    let bundles = bundles_of(store, "u1", None).await;
    let ids: Vec<&str> = bundles.iter().map(|b| b.device_id.as_str()).collect();
    assert_eq!(
        ids,
        ["d2", "d1"],
        "active devices with a signed prekey, oldest first"
    );
    let d2 = &bundles[0];
    assert_eq!(d2.identity_signing_key, [1; 32]);
    assert_eq!(d2.identity_dh_key, [2; 32]);
    assert_eq!(d2.signed_prekey, signed(2));
    assert_eq!(d2.one_time_prekey, Some(one_time([200]).remove(0)));
    assert_eq!(
        bundles[1].one_time_prekey.as_ref().map(|k| k.key_id),
        Some(100)
    );
    assert_eq!(store.one_time_prekey_count("d1").await.expect("count"), 1);
    assert_eq!(
        store.one_time_prekey_count("d3").await.expect("count"),
        1,
        "a device left out keeps its keys"
    );

    let second = bundles_of(store, "u1", None).await;
    let keys: Vec<Option<u32>> = second
        .iter()
        .map(|b| b.one_time_prekey.as_ref().map(|k| k.key_id))
        .collect();
    assert_eq!(keys, [Some(201), Some(101)]);
    let third = bundles_of(store, "u1", None).await;
    assert_eq!(third.len(), 2, "bundles without one-time prekeys");
    assert!(third.iter().all(|b| b.one_time_prekey.is_none()));
    assert_eq!(third[0].signed_prekey, signed(2));

    // The fetching device is left out and keeps its keys.
    add_one_time_prekeys(store, "d2", one_time([7]), 10, T0).await;
    let others = bundles_of(store, "u1", Some("d2")).await;
    let ids: Vec<&str> = others.iter().map(|b| b.device_id.as_str()).collect();
    assert_eq!(ids, ["d1"]);
    assert_eq!(store.one_time_prekey_count("d2").await.expect("count"), 1);
}

pub(crate) async fn concurrent_take_bundles(store: &Arc<dyn LoginStore>) {
    const KEYS: u32 = 40;
    const TASKS: usize = 64;
    signed_in(store.as_ref()).await;
    add_device(store.as_ref(), "u1", "d2", T0 + 1).await;
    for device in ["d1", "d2"] {
        assert!(set_signed_prekey(store.as_ref(), device, signed(1), T0).await);
        add_one_time_prekeys(store.as_ref(), device, one_time(0..KEYS), 1000, T0).await;
    }

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..TASKS {
        let store = Arc::clone(store);
        tasks.spawn(async move { store.take_bundles("u1", None).await });
    }
    let mut handed_out: Vec<(String, u32)> = Vec::new();
    let mut empty = 0;
    while let Some(result) = tasks.join_next().await {
        let bundles = result.expect("task").expect("take").expect("user");
        assert_eq!(bundles.len(), 2, "every fetch gets both devices");
        for bundle in bundles {
            match bundle.one_time_prekey {
                Some(k) => handed_out.push((bundle.device_id, k.key_id)),
                None => empty += 1,
            }
        }
    }
    let distinct: HashSet<&(String, u32)> = handed_out.iter().collect();
    assert_eq!(
        distinct.len(),
        handed_out.len(),
        "a one-time prekey handed out twice"
    );
    assert_eq!(handed_out.len(), 2 * KEYS as usize, "every key handed out");
    assert_eq!(empty, 2 * TASKS - 2 * KEYS as usize);
    for device in ["d1", "d2"] {
        assert_eq!(store.one_time_prekey_count(device).await.expect("count"), 0);
    }
}

pub(crate) async fn sign_out_deletes_prekeys(store: &dyn LoginStore) {
    signed_in(store).await;
    account(store, 2).await;
    add_device(store, "u1", "d2", T0).await;
    for device in ["d1", "d2"] {
        set_signed_prekey(store, device, signed(1), T0).await;
        add_one_time_prekeys(store, device, one_time(0..5), 100, T0).await;
    }

    // Another user's sign-out attempt leaves the keys alone.
    sign_out(store, "u2", "d1", T0 + 1).await;
    assert_eq!(store.one_time_prekey_count("d1").await.expect("count"), 5);
    assert!(store.signed_prekey("d1").await.expect("get").is_some());

    sign_out(store, "u1", "d1", T0 + 2).await;
    assert_eq!(store.one_time_prekey_count("d1").await.expect("count"), 0);
    assert_eq!(store.signed_prekey("d1").await.expect("get"), None);
    // The other device keeps its keys.
    assert_eq!(store.one_time_prekey_count("d2").await.expect("count"), 5);
    assert!(store.signed_prekey("d2").await.expect("get").is_some());
}

pub(crate) async fn devices_of(store: &dyn LoginStore) {
    for n in 1..=3 {
        account(store, n).await;
    }
    for (user, device, at) in [
        ("u1", "d1b", T0 + 2),
        ("u1", "d1a", T0 + 1),
        ("u1", "d1x", T0 + 3),
        ("u2", "d2", T0),
    ] {
        add_device(store, user, device, at).await;
    }
    sign_out(store, "u1", "d1x", T0 + 4).await;
    let users = store
        .devices_of(&strings(&["u2", "nobody", "u3", "u1", "u2"]))
        .await
        .expect("devices");
    let summary: Vec<(&str, Vec<&str>)> = users
        .iter()
        .map(|u| {
            (
                u.user_id.as_str(),
                u.devices.iter().map(|d| d.device_id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("u2", vec!["d2"]),
            ("u3", vec![]),
            ("u1", vec!["d1a", "d1b"]),
        ]
    );
    let d1a = &users[2].devices[0];
    assert_eq!(d1a.user_id, "u1");
    assert_eq!(d1a.identity_signing_key, [1; 32]);
    assert_eq!(d1a.identity_dh_key, [2; 32]);
    assert_eq!(d1a.removed_at_ms, None);
    assert!(store.devices_of(&[]).await.expect("devices").is_empty());
}

pub(crate) async fn phones_and_contacts(store: &dyn LoginStore) {
    for n in 1..=3 {
        account(store, n).await;
    }
    let found = store
        .users_by_phones(&strings(&[
            "+15550000003",
            "+15559999999",
            "+15550000001",
            "+15550000003",
        ]))
        .await
        .expect("lookup");
    assert_eq!(
        found,
        [
            ("+15550000003".to_owned(), "u3".to_owned()),
            ("+15550000001".to_owned(), "u1".to_owned()),
        ]
    );
    assert!(store.users_by_phones(&[]).await.expect("lookup").is_empty());

    let pair = |u: &str, p: &str| (u.to_owned(), p.to_owned());
    store
        .add_contacts(
            "u1",
            &[
                pair("u3", "+15550000003"),
                pair("u1", "+15550000001"),    // self: skipped
                pair("ghost", "+15550000009"), // not an account: skipped
            ],
            T0 + 10,
        )
        .await
        .expect("add");
    store
        .add_contacts(
            "u1",
            &[pair("u2", "+15550000002"), pair("u3", "+15550000033")],
            T0 + 20,
        )
        .await
        .expect("add again");
    assert_eq!(
        store.contacts("u1").await.expect("contacts"),
        [
            Contact {
                user_id: "u3".into(),
                phone: "+15550000033".into(),
                added_at_ms: T0 + 10,
            },
            Contact {
                user_id: "u2".into(),
                phone: "+15550000002".into(),
                added_at_ms: T0 + 20,
            },
        ],
        "first time kept, newest phone"
    );
    assert!(store.contacts("u2").await.expect("contacts").is_empty());

    store
        .add_contacts("ghost", &[pair("u1", "+15550000001")], T0)
        .await
        .expect("unknown owner writes nothing");
    assert!(store.contacts("ghost").await.expect("contacts").is_empty());
}

pub(crate) async fn mutual_contacts(store: &dyn LoginStore) {
    for n in 1..=4 {
        account(store, n).await;
    }
    let pair = |u: &str| (u.to_owned(), format!("+1555000000{}", &u[1..]));
    // u1 and u2 have each other; u1 has u3 but not the other way round; u4 has u1 only.
    store
        .add_contacts("u1", &[pair("u2"), pair("u3")], T0)
        .await
        .expect("add");
    store
        .add_contacts("u2", &[pair("u1")], T0)
        .await
        .expect("add");
    store
        .add_contacts("u4", &[pair("u1")], T0)
        .await
        .expect("add");
    let everyone = strings(&["u4", "u3", "u2", "u2", "ghost", "u1"]);
    assert_eq!(
        store.mutual_contacts("u1", &everyone).await.expect("u1"),
        ["u2"]
    );
    assert_eq!(
        store.mutual_contacts("u2", &everyone).await.expect("u2"),
        ["u1"]
    );
    assert!(
        store
            .mutual_contacts("u3", &everyone)
            .await
            .expect("u3")
            .is_empty()
    );
    assert!(
        store
            .mutual_contacts("u4", &everyone)
            .await
            .expect("u4")
            .is_empty()
    );
    assert!(
        store
            .mutual_contacts("u1", &[])
            .await
            .expect("none")
            .is_empty()
    );

    // Once u3 adds u1 back, they are mutual.
    store
        .add_contacts("u3", &[pair("u1")], T0)
        .await
        .expect("add");
    assert_eq!(
        store.mutual_contacts("u1", &everyone).await.expect("u1"),
        ["u3", "u2"]
    );
}

pub(crate) async fn settings_round_trip(store: &dyn LoginStore) {
    account(store, 1).await;
    account(store, 2).await;
    assert_eq!(
        store
            .settings_of(&strings(&["u2", "ghost", "u1", "u2"]))
            .await
            .expect("defaults"),
        [
            ("u2".to_owned(), Settings::default()),
            ("u1".to_owned(), Settings::default()),
        ]
    );

    let named = store
        .update_settings(
            "u1",
            SettingsUpdate {
                name: Some("Ana".into()),
                about: Some("¡Hola!".into()),
                ..SettingsUpdate::default()
            },
            T0 + 1,
        )
        .await
        .expect("update")
        .expect("account exists");
    assert_eq!(
        named,
        Settings {
            name: "Ana".into(),
            about: "¡Hola!".into(),
            presence: Visibility::Contacts,
            profile: Visibility::Contacts,
        }
    );
    // Only the given fields change.
    let hidden = store
        .update_settings(
            "u1",
            SettingsUpdate {
                presence: Some(Visibility::Nobody),
                ..SettingsUpdate::default()
            },
            T0 + 2,
        )
        .await
        .expect("update")
        .expect("account exists");
    assert_eq!(
        hidden,
        Settings {
            presence: Visibility::Nobody,
            ..named.clone()
        }
    );
    let cleared = store
        .update_settings(
            "u1",
            SettingsUpdate {
                about: Some(String::new()),
                profile: Some(Visibility::Nobody),
                ..SettingsUpdate::default()
            },
            T0 + 3,
        )
        .await
        .expect("update")
        .expect("account exists");
    assert_eq!(cleared.about, "");
    assert_eq!(cleared.name, "Ana");
    assert_eq!(cleared.profile, Visibility::Nobody);
    assert_eq!(
        store
            .settings_of(&strings(&["u1", "u2"]))
            .await
            .expect("read"),
        [
            ("u1".to_owned(), cleared),
            ("u2".to_owned(), Settings::default()),
        ]
    );

    assert_eq!(
        store
            .update_settings("ghost", SettingsUpdate::default(), T0)
            .await
            .expect("no account"),
        None
    );
    assert!(
        store
            .settings_of(&strings(&["ghost"]))
            .await
            .expect("read")
            .is_empty()
    );
}
