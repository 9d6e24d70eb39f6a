//! The behavioural suite every [`LoginStore`] backend must pass. Each case takes a fresh, empty
//! store; a backend's tests call every case (see the `sqlite_suite!` macro in `sqlite.rs`).

use super::{
    AddDeviceOutcome, LoginStore, NewDevice, NewSession, Revocation, RevokeReason, RotateOutcome,
};

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

fn new_session(user_id: &str, device_id: &str, session_id: &str, hash: &str) -> NewSession {
    NewSession {
        session_id: session_id.into(),
        user_id: user_id.into(),
        device_id: device_id.into(),
        refresh_token_hash: hash.into(),
        refresh_expires_at_ms: T0 + 30 * DAY,
        created_at_ms: T0,
    }
}

/// An account `u1` with device `d1` and session `s1` whose refresh token hashes to `h1`.
async fn signed_in(store: &dyn LoginStore) {
    store
        .find_or_create_account("+15550000001", "u1", T0)
        .await
        .expect("account");
    let added = store
        .add_device(new_device("u1", "d1", T0), 8)
        .await
        .expect("device");
    assert!(matches!(added, AddDeviceOutcome::Added(_)));
    store
        .create_session(new_session("u1", "d1", "s1", "h1"))
        .await
        .expect("session");
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
    store
        .find_or_create_account("+15550000001", "u1", T0)
        .await
        .expect("account");
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
    store
        .revoke_device_sessions("u1", "d0", T0 + 10, RevokeReason::SignOut)
        .await
        .expect("remove");
    let added = store
        .add_device(new_device("u1", "d3", T0 + 11), 3)
        .await
        .expect("add");
    assert!(matches!(added, AddDeviceOutcome::Added(_)));
}

pub(crate) async fn concurrent_device_cap(store: &dyn LoginStore) {
    store
        .find_or_create_account("+15550000001", "u1", T0)
        .await
        .expect("account");
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
    store
        .find_or_create_account("+15550000001", "u1", T0)
        .await
        .expect("account");
    store
        .find_or_create_account("+15550000002", "u2", T0)
        .await
        .expect("account");
    let stored = new_device("u1", "d1", T0 + 2);
    store.add_device(stored.clone(), 8).await.expect("add");
    store
        .add_device(new_device("u1", "d0", T0 + 1), 8)
        .await
        .expect("add");
    store
        .add_device(new_device("u1", "d2", T0 + 3), 8)
        .await
        .expect("add");
    store
        .add_device(new_device("u2", "dx", T0), 8)
        .await
        .expect("add");
    store
        .revoke_device_sessions("u1", "d2", T0 + 4, RevokeReason::SignOut)
        .await
        .expect("remove");

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

    let removed = store
        .device("d2")
        .await
        .expect("get")
        .expect("still stored");
    assert_eq!(removed.removed_at_ms, Some(T0 + 4));
}

pub(crate) async fn session_round_trip(store: &dyn LoginStore) {
    signed_in(store).await;
    let session = store.session("s1").await.expect("get").expect("exists");
    assert_eq!(session.user_id, "u1");
    assert_eq!(session.device_id, "d1");
    assert_eq!(session.created_at_ms, T0);
    assert!(session.is_active());
    assert_eq!(session.revoke_reason, None);
    assert_eq!(store.session("nope").await.expect("get"), None);
}

pub(crate) async fn rotation(store: &dyn LoginStore) {
    signed_in(store).await;
    let outcome = store
        .rotate_refresh_token("h1", "h2", T0 + 31 * DAY, T0 + 1000)
        .await
        .expect("rotate");
    let RotateOutcome::Rotated { session } = outcome else {
        panic!("not rotated: {outcome:?}")
    };
    assert_eq!(
        (session.session_id.as_str(), session.device_id.as_str()),
        ("s1", "d1")
    );

    let outcome = store
        .rotate_refresh_token("h2", "h3", T0 + 32 * DAY, T0 + 2000)
        .await
        .expect("rotate");
    assert!(matches!(outcome, RotateOutcome::Rotated { .. }));

    let unknown = store
        .rotate_refresh_token("hx", "hy", T0 + 32 * DAY, T0 + 3000)
        .await
        .expect("rotate");
    assert_eq!(unknown, RotateOutcome::Invalid);
    assert!(
        store
            .session("s1")
            .await
            .expect("get")
            .expect("exists")
            .is_active()
    );
}

pub(crate) async fn reuse_revokes_session(store: &dyn LoginStore) {
    signed_in(store).await;
    store
        .rotate_refresh_token("h1", "h2", T0 + 31 * DAY, T0 + 1000)
        .await
        .expect("rotate");
    let outcome = store
        .rotate_refresh_token("h1", "h9", T0 + 31 * DAY, T0 + 2000)
        .await
        .expect("reuse");
    assert_eq!(
        outcome,
        RotateOutcome::Reused {
            session_id: "s1".into()
        }
    );

    let session = store.session("s1").await.expect("get").expect("exists");
    assert_eq!(session.revoked_at_ms, Some(T0 + 2000));
    assert_eq!(
        session.revoke_reason,
        Some(RevokeReason::RefreshTokenReused)
    );

    // The newest token of the family is dead too, and so is the reused one from now on.
    let newest = store
        .rotate_refresh_token("h2", "h3", T0 + 31 * DAY, T0 + 3000)
        .await
        .expect("rotate");
    assert_eq!(newest, RotateOutcome::Invalid);
    let again = store
        .rotate_refresh_token("h1", "h4", T0 + 31 * DAY, T0 + 3000)
        .await
        .expect("rotate");
    assert_eq!(again, RotateOutcome::Invalid);
    // The attempted replacement token was never stored.
    let ghost = store
        .rotate_refresh_token("h9", "h5", T0 + 31 * DAY, T0 + 3000)
        .await
        .expect("rotate");
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
    assert!(
        !store
            .session("s1")
            .await
            .expect("get")
            .expect("exists")
            .is_active()
    );
}

pub(crate) async fn expired_refresh_token(store: &dyn LoginStore) {
    signed_in(store).await;
    let expires = T0 + 30 * DAY;
    let outcome = store
        .rotate_refresh_token("h1", "h2", expires + DAY, expires)
        .await
        .expect("rotate");
    assert_eq!(outcome, RotateOutcome::Invalid);
    // Refusing an expired token is not reuse: the session stays, nothing was rotated.
    assert!(
        store
            .session("s1")
            .await
            .expect("get")
            .expect("exists")
            .is_active()
    );
    let outcome = store
        .rotate_refresh_token("h1", "h2", expires + DAY, expires - 1)
        .await
        .expect("rotate");
    assert!(matches!(outcome, RotateOutcome::Rotated { .. }));
}

pub(crate) async fn revoke_device_sessions(store: &dyn LoginStore) {
    signed_in(store).await;
    store
        .create_session(new_session("u1", "d1", "s2", "h2"))
        .await
        .expect("second session");

    // Another user cannot sign this device out.
    store
        .find_or_create_account("+15550000002", "u2", T0)
        .await
        .expect("account");
    let none = store
        .revoke_device_sessions("u2", "d1", T0 + 5, RevokeReason::SignOut)
        .await
        .expect("revoke");
    assert!(none.is_empty());
    assert_eq!(
        store
            .device("d1")
            .await
            .expect("get")
            .expect("exists")
            .removed_at_ms,
        None
    );

    let revoked = store
        .revoke_device_sessions("u1", "d1", T0 + 10, RevokeReason::SignOut)
        .await
        .expect("revoke");
    assert_eq!(revoked, ["s1", "s2"]);
    let s1 = store.session("s1").await.expect("get").expect("exists");
    assert_eq!(s1.revoked_at_ms, Some(T0 + 10));
    assert_eq!(s1.revoke_reason, Some(RevokeReason::SignOut));
    assert_eq!(
        store
            .device("d1")
            .await
            .expect("get")
            .expect("exists")
            .removed_at_ms,
        Some(T0 + 10)
    );
    assert!(store.devices("u1").await.expect("list").is_empty());

    // Refresh tokens of a revoked session no longer work.
    let outcome = store
        .rotate_refresh_token("h1", "h3", T0 + 31 * DAY, T0 + 20)
        .await
        .expect("rotate");
    assert_eq!(outcome, RotateOutcome::Invalid);

    // Idempotent: a second sign-out revokes nothing and keeps the first times.
    let again = store
        .revoke_device_sessions("u1", "d1", T0 + 30, RevokeReason::SignOut)
        .await
        .expect("revoke");
    assert!(again.is_empty());
    assert_eq!(
        store
            .session("s1")
            .await
            .expect("get")
            .expect("exists")
            .revoked_at_ms,
        Some(T0 + 10)
    );
}

pub(crate) async fn revocations_since(store: &dyn LoginStore) {
    store
        .find_or_create_account("+15550000001", "u1", T0)
        .await
        .expect("account");
    for (i, at) in [(1, T0 + 100), (2, T0 + 200), (3, T0 + 300)] {
        let device = format!("d{i}");
        store
            .add_device(new_device("u1", &device, T0), 8)
            .await
            .expect("device");
        store
            .create_session(new_session(
                "u1",
                &device,
                &format!("s{i}"),
                &format!("h{i}"),
            ))
            .await
            .expect("session");
        store
            .revoke_device_sessions("u1", &device, at, RevokeReason::SignOut)
            .await
            .expect("revoke");
    }
    store
        .add_device(new_device("u1", "d4", T0), 8)
        .await
        .expect("device");
    store
        .create_session(new_session("u1", "d4", "s4", "h4"))
        .await
        .expect("active session");

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
