//! The key directory: devices' prekeys (`Directory.UploadPrekeys`, `PrekeyStatus`,
//! `FetchBundles`) and device lists (`Directory.ListDevices`, and `LoginInternal.ActiveDevices`
//! for the chat service).

use ed25519_dalek::{Signature, VerifyingKey};
use juntos_proto::login::v1::{
    ActiveDeviceIds, ActiveDevicesResponse, DeviceKeys, FetchBundlesResponse, ListDevicesResponse,
    OneTimePrekey as WireOneTimePrekey, PrekeyBundle as WireBundle, PrekeyStatusResponse,
    SignedPrekey as WireSignedPrekey, UploadPrekeysRequest, UploadPrekeysResponse,
    UserDevices as WireUserDevices,
};
use juntos_proto::meta::Caller;

use super::{LoginService, check_batch};
use crate::error::{Error, Result};
use crate::store::{OneTimePrekey, SignedPrekey};

/// Most one-time prekeys one `UploadPrekeys` call may carry.
pub const MAX_ONE_TIME_PREKEYS_PER_UPLOAD: usize = 100;
/// Most one-time prekeys stored per device; the oldest beyond this are dropped.
pub const MAX_ONE_TIME_PREKEYS_STORED: u32 = 1_000;
/// `PrekeyStatus` asks for a refill when fewer one-time prekeys than this are left.
pub const PREKEY_REFILL_BELOW: u32 = 20;
/// Most user ids one `ListDevices` call may ask about.
pub const MAX_LIST_DEVICES_USERS: usize = 256;
/// Most user ids one `LoginInternal.ActiveDevices` call may ask about.
pub const MAX_ACTIVE_DEVICES_USERS: usize = 1_000;

/// Length of X25519 public keys.
const KEY_LEN: usize = 32;
/// What a signed prekey's signature covers, before the key id and the key.
const SIGNED_PREKEY_CONTEXT: &[u8] = b"juntos-signed-prekey-v1";
/// Longer user ids are not ours (they are 32 hex characters); refused without a lookup.
const MAX_USER_ID_LEN: usize = 64;

impl LoginService {
    /// `Directory.UploadPrekeys`: verifies and stores the caller device's signed prekey (when
    /// given) and adds its one-time prekeys. Everything is checked before anything is written.
    pub async fn upload_prekeys(
        &self,
        caller: &Caller,
        request: UploadPrekeysRequest,
    ) -> Result<UploadPrekeysResponse> {
        self.require_active_session(caller).await?;
        if request.one_time_prekeys.len() > MAX_ONE_TIME_PREKEYS_PER_UPLOAD {
            return Err(Error::InvalidPrekey(
                "at most 100 one-time prekeys per upload",
            ));
        }
        let one_time = request
            .one_time_prekeys
            .into_iter()
            .map(|k| {
                check_x25519_key(&k.public_key)?;
                Ok(OneTimePrekey {
                    key_id: k.key_id,
                    public_key: k.public_key,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let signed = match request.signed_prekey {
            None => None,
            Some(prekey) => {
                let device = self
                    .store
                    .device(&caller.device_id)
                    .await?
                    .ok_or(Error::Internal("active session without a device"))?;
                Some(verify_signed_prekey(&device.identity_signing_key, prekey)?)
            }
        };

        let now = self.clock.now_ms();
        if let Some(signed) = signed
            && !self
                .store
                .set_signed_prekey(&caller.device_id, signed, now)
                .await?
        {
            // Signed out since the session check.
            return Err(Error::SessionRevoked);
        }
        let uploaded = one_time.len();
        let left = self
            .store
            .add_one_time_prekeys(
                &caller.device_id,
                one_time,
                MAX_ONE_TIME_PREKEYS_STORED,
                now,
            )
            .await?
            .ok_or(Error::SessionRevoked)?;
        tracing::debug!(device_id = %caller.device_id, uploaded, left, "prekeys uploaded");
        Ok(UploadPrekeysResponse {
            one_time_prekeys_left: left,
        })
    }

    /// `Directory.PrekeyStatus`: the caller device's one-time prekey count and whether it should
    /// upload more (fewer than [`PREKEY_REFILL_BELOW`] left, or no signed prekey published).
    pub async fn prekey_status(&self, caller: &Caller) -> Result<PrekeyStatusResponse> {
        self.require_active_session(caller).await?;
        let left = self.store.one_time_prekey_count(&caller.device_id).await?;
        let has_signed_prekey = self.store.signed_prekey(&caller.device_id).await?.is_some();
        Ok(PrekeyStatusResponse {
            one_time_prekeys_left: left,
            refill: left < PREKEY_REFILL_BELOW || !has_signed_prekey,
            has_signed_prekey,
        })
    }

    /// `Directory.FetchBundles`: a bundle for every active device of `user_id` that has published
    /// a signed prekey (a device that has not cannot be messaged yet, so it is left out), each
    /// with a one-time prekey handed out for good, or none when the device ran out. The calling
    /// device itself is left out (fetching one's own user gives one's other devices).
    pub async fn fetch_bundles(
        &self,
        caller: &Caller,
        user_id: &str,
    ) -> Result<FetchBundlesResponse> {
        self.require_active_session(caller).await?;
        if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
            return Err(Error::NoSuchUser);
        }
        let bundles = self
            .store
            .take_bundles(user_id, Some(&caller.device_id))
            .await?
            .ok_or(Error::NoSuchUser)?;
        Ok(FetchBundlesResponse {
            user_id: user_id.to_owned(),
            bundles: bundles
                .into_iter()
                .map(|b| WireBundle {
                    device_id: b.device_id,
                    identity_signing_key: b.identity_signing_key,
                    identity_dh_key: b.identity_dh_key,
                    signed_prekey: Some(WireSignedPrekey {
                        key_id: b.signed_prekey.key_id,
                        public_key: b.signed_prekey.public_key,
                        signature: b.signed_prekey.signature,
                    }),
                    one_time_prekey: b.one_time_prekey.map(|k| WireOneTimePrekey {
                        key_id: k.key_id,
                        public_key: k.public_key,
                    }),
                })
                .collect(),
        })
    }

    /// `Directory.ListDevices`: the active devices and identity keys of up to
    /// [`MAX_LIST_DEVICES_USERS`] users (counted as sent, repeats included), without consuming
    /// prekeys. One entry per existing user, in request order.
    pub async fn list_devices(
        &self,
        caller: &Caller,
        user_ids: Vec<String>,
    ) -> Result<ListDevicesResponse> {
        self.require_active_session(caller).await?;
        check_batch(user_ids.len(), MAX_LIST_DEVICES_USERS, "user ids")?;
        let users = self.store.devices_of(&user_ids).await?;
        Ok(ListDevicesResponse {
            users: users
                .into_iter()
                .map(|u| WireUserDevices {
                    user_id: u.user_id,
                    devices: u
                        .devices
                        .into_iter()
                        .map(|d| DeviceKeys {
                            device_id: d.device_id,
                            identity_signing_key: d.identity_signing_key,
                            identity_dh_key: d.identity_dh_key,
                        })
                        .collect(),
                })
                .collect(),
        })
    }

    /// `LoginInternal.ActiveDevices`: the active device ids of each of up to
    /// [`MAX_ACTIVE_DEVICES_USERS`] users (counted as sent); unknown users are left out, a user
    /// without active devices is listed with none. For the chat service; no caller check.
    pub async fn active_devices(&self, user_ids: Vec<String>) -> Result<ActiveDevicesResponse> {
        check_batch(user_ids.len(), MAX_ACTIVE_DEVICES_USERS, "user ids")?;
        let users = self.store.devices_of(&user_ids).await?;
        Ok(ActiveDevicesResponse {
            users: users
                .into_iter()
                .map(|u| ActiveDeviceIds {
                    user_id: u.user_id,
                    device_ids: u.devices.into_iter().map(|d| d.device_id).collect(),
                })
                .collect(),
        })
    }
}

/// A 32-byte X25519 public key that is not all zeros.
fn check_x25519_key(key: &[u8]) -> Result<()> {
    if key.len() != KEY_LEN {
        return Err(Error::InvalidPrekey("prekeys must be 32-byte X25519 keys"));
    }
    if key.iter().all(|b| *b == 0) {
        return Err(Error::InvalidPrekey("a prekey is all zeros"));
    }
    Ok(())
}

/// Checks `prekey`'s key and its signature under `identity_signing_key` (the device's Ed25519
/// identity key) over [`SIGNED_PREKEY_CONTEXT`] || key id (big-endian) || public key.
fn verify_signed_prekey(
    identity_signing_key: &[u8],
    prekey: WireSignedPrekey,
) -> Result<SignedPrekey> {
    check_x25519_key(&prekey.public_key)?;
    let signature: [u8; 64] = prekey
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| Error::InvalidPrekey("the signed prekey's signature must be 64 bytes"))?;
    let identity: [u8; 32] = identity_signing_key
        .try_into()
        .map_err(|_| Error::Internal("stored identity signing key is not 32 bytes"))?;
    let identity = VerifyingKey::from_bytes(&identity)
        .map_err(|_| Error::Internal("stored identity signing key is not an Ed25519 key"))?;
    let mut message = Vec::with_capacity(SIGNED_PREKEY_CONTEXT.len() + 4 + prekey.public_key.len());
    message.extend_from_slice(SIGNED_PREKEY_CONTEXT);
    message.extend_from_slice(&prekey.key_id.to_be_bytes());
    message.extend_from_slice(&prekey.public_key);
    identity
        .verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| Error::InvalidPrekey("the signed prekey's signature does not verify"))?;
    Ok(SignedPrekey {
        key_id: prekey.key_id,
        public_key: prekey.public_key,
        signature: signature.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};
    use juntos_proto::error::reason;
    use juntos_proto::login::v1::OneTimePrekey as WireOtk;
    use tonic::Code;

    use super::*;
    use crate::service::MAX_RESOLVE_PHONES;
    use crate::store::LoginStore as _;
    use crate::test_support::{ANA, BEA, DEVICE_SIGNING_SEED, Harness, assert_status};
    use juntos_proto::error::reason::BATCH_TOO_LARGE;

    /// A signed prekey `key_id` signed with `seed`'s key.
    fn signed_prekey_with(seed: &[u8; 32], key_id: u32, fill: u8) -> WireSignedPrekey {
        let public_key = vec![fill; 32];
        let mut message = SIGNED_PREKEY_CONTEXT.to_vec();
        message.extend_from_slice(&key_id.to_be_bytes());
        message.extend_from_slice(&public_key);
        WireSignedPrekey {
            key_id,
            public_key,
            signature: SigningKey::from_bytes(seed)
                .sign(&message)
                .to_bytes()
                .to_vec(),
        }
    }

    /// A signed prekey of the test devices' identity key.
    fn signed_prekey(key_id: u32) -> WireSignedPrekey {
        signed_prekey_with(&DEVICE_SIGNING_SEED, key_id, 0x51)
    }

    fn one_time(ids: std::ops::Range<u32>) -> Vec<WireOtk> {
        ids.map(|key_id| WireOtk {
            key_id,
            public_key: vec![u8::try_from(key_id % 200).expect("small") + 1; 32],
        })
        .collect()
    }

    fn upload(signed: Option<WireSignedPrekey>, one_time: Vec<WireOtk>) -> UploadPrekeysRequest {
        UploadPrekeysRequest {
            signed_prekey: signed,
            one_time_prekeys: one_time,
        }
    }

    /// How many one-time prekeys `caller`'s device has left, as `PrekeyStatus` answers.
    async fn prekeys_left(h: &Harness, caller: &Caller) -> u32 {
        h.service
            .prekey_status(caller)
            .await
            .expect("status")
            .one_time_prekeys_left
    }

    /// Uploads `request` for `caller`'s device; how many one-time prekeys it has left.
    async fn upload_left(h: &Harness, caller: &Caller, request: UploadPrekeysRequest) -> u32 {
        h.service
            .upload_prekeys(caller, request)
            .await
            .expect("upload")
            .one_time_prekeys_left
    }

    /// The first bundle `fetcher` gets for `user_id`.
    async fn first_bundle(h: &Harness, fetcher: &Caller, user_id: &str) -> WireBundle {
        h.service
            .fetch_bundles(fetcher, user_id)
            .await
            .expect("fetch")
            .bundles
            .remove(0)
    }

    #[tokio::test]
    async fn upload_then_fetch_hands_each_one_time_prekey_out_once() {
        let h = Harness::new();
        let ana = h.sign_in_as(ANA, "ana laptop").await;
        let bea = h.sign_in_as(BEA, "bea phone").await;

        let status = h.service.prekey_status(&ana).await.expect("status");
        assert_eq!(
            (
                status.one_time_prekeys_left,
                status.refill,
                status.has_signed_prekey
            ),
            (0, true, false)
        );
        // A device without a signed prekey cannot be messaged yet: no bundle.
        let fetched = h
            .service
            .fetch_bundles(&bea, &ana.user_id)
            .await
            .expect("fetch");
        assert_eq!(fetched.user_id, ana.user_id);
        assert!(fetched.bundles.is_empty());

        let left = upload_left(&h, &ana, upload(Some(signed_prekey(7)), one_time(1..3))).await;
        assert_eq!(left, 2);
        let status = h.service.prekey_status(&ana).await.expect("status");
        assert_eq!(
            (
                status.one_time_prekeys_left,
                status.refill,
                status.has_signed_prekey
            ),
            (2, true, true)
        );

        let mut handed_out = Vec::new();
        for _ in 0..3 {
            let fetched = h
                .service
                .fetch_bundles(&bea, &ana.user_id)
                .await
                .expect("fetch");
            assert_eq!(fetched.bundles.len(), 1);
            let bundle = &fetched.bundles[0];
            assert_eq!(bundle.device_id, ana.device_id);
            assert_eq!(
                bundle.identity_signing_key,
                SigningKey::from_bytes(&DEVICE_SIGNING_SEED)
                    .verifying_key()
                    .to_bytes()
            );
            assert_eq!(bundle.identity_dh_key, [3; 32]);
            assert_eq!(bundle.signed_prekey.as_ref(), Some(&signed_prekey(7)));
            handed_out.push(bundle.one_time_prekey.as_ref().map(|k| k.key_id));
        }
        assert_eq!(handed_out, [Some(1), Some(2), None], "oldest first, once");
        assert_eq!(prekeys_left(&h, &ana).await, 0);

        // A new signed prekey replaces the old one; enough one-time prekeys stop the refill.
        h.service
            .upload_prekeys(&ana, upload(Some(signed_prekey(8)), vec![]))
            .await
            .expect("rotate signed prekey");
        let left = upload_left(&h, &ana, upload(None, one_time(100..120))).await;
        assert_eq!(left, 20);
        let status = h.service.prekey_status(&ana).await.expect("status");
        assert!(!status.refill);
        assert!(
            h.service
                .fetch_bundles(&ana, &ana.user_id)
                .await
                .expect("own user")
                .bundles
                .is_empty(),
            "the fetching device is left out and keeps its keys"
        );
        assert_eq!(prekeys_left(&h, &ana).await, 20);
        let bundle = first_bundle(&h, &bea, &ana.user_id).await;
        assert_eq!(bundle.signed_prekey.expect("signed").key_id, 8);
        assert_eq!(bundle.one_time_prekey.expect("one-time").key_id, 100);
        assert!(
            h.service.prekey_status(&ana).await.expect("status").refill,
            "19 left is below the mark"
        );
    }

    #[tokio::test]
    async fn bad_prekeys_are_refused_and_nothing_is_stored() {
        let h = Harness::new();
        let ana = h.sign_in_as(ANA, "ana laptop").await;
        let wrong_key = signed_prekey_with(&[9; 32], 7, 0x51);
        let mut tampered = signed_prekey(7);
        tampered.key_id = 8;
        let mut short_signature = signed_prekey(7);
        short_signature.signature.pop();
        let mut short_key = signed_prekey(7);
        short_key.public_key.pop();
        let zero_key = signed_prekey_with(&DEVICE_SIGNING_SEED, 7, 0);
        let mut bad_one_time = one_time(1..3);
        bad_one_time[1].public_key = vec![1; 33];
        let mut zero_one_time = one_time(1..3);
        zero_one_time[0].public_key = vec![0; 32];

        let bad = [
            upload(Some(wrong_key), one_time(1..3)),
            upload(Some(tampered), one_time(1..3)),
            upload(Some(short_signature), one_time(1..3)),
            upload(Some(short_key), one_time(1..3)),
            upload(Some(zero_key), one_time(1..3)),
            upload(Some(signed_prekey(7)), bad_one_time),
            upload(Some(signed_prekey(7)), zero_one_time),
            upload(Some(signed_prekey(7)), one_time(0..101)),
        ];
        for request in bad {
            let err = h
                .service
                .upload_prekeys(&ana, request)
                .await
                .expect_err("refused");
            assert_status(err, Code::InvalidArgument, reason::INVALID_PREKEY);
        }
        let status = h.service.prekey_status(&ana).await.expect("status");
        assert_eq!(status.one_time_prekeys_left, 0);
        assert!(!status.has_signed_prekey);

        // 100 is allowed.
        let left = upload_left(&h, &ana, upload(Some(signed_prekey(7)), one_time(0..100))).await;
        assert_eq!(left, 100);
    }

    #[tokio::test]
    async fn at_most_1000_one_time_prekeys_are_kept() {
        let h = Harness::new();
        let ana = h.sign_in_as(ANA, "ana laptop").await;
        let bea = h.sign_in_as(BEA, "bea phone").await;
        let mut left = 0;
        for batch in 0..11 {
            let batch = one_time(batch * 100..batch * 100 + 100);
            left = upload_left(&h, &ana, upload(None, batch)).await;
        }
        assert_eq!(left, MAX_ONE_TIME_PREKEYS_STORED);
        h.service
            .upload_prekeys(&ana, upload(Some(signed_prekey(1)), vec![]))
            .await
            .expect("signed");
        let bundle = first_bundle(&h, &bea, &ana.user_id).await;
        assert_eq!(
            bundle.one_time_prekey.expect("one-time").key_id,
            100,
            "the oldest 100 were dropped"
        );
    }

    #[tokio::test]
    async fn fetch_bundles_of_unknown_users() {
        let h = Harness::new();
        let ana = h.sign_in_as(ANA, "ana laptop").await;
        for user_id in ["", "0123456789abcdef0123456789abcdef", &"a".repeat(65)] {
            let err = h
                .service
                .fetch_bundles(&ana, user_id)
                .await
                .expect_err("unknown");
            assert_status(err, Code::NotFound, reason::NO_SUCH_USER);
        }
    }

    #[tokio::test]
    async fn list_devices_and_active_devices() {
        let h = Harness::new();
        let ana_laptop = h.sign_in_as(ANA, "ana laptop").await;
        h.clock.advance_ms(1);
        let ana_phone = h.sign_in_as(ANA, "ana phone").await;
        let bea = h.sign_in_as(BEA, "bea phone").await;
        h.service
            .upload_prekeys(&ana_laptop, upload(Some(signed_prekey(1)), one_time(1..4)))
            .await
            .expect("upload");

        let ids = vec![
            bea.user_id.clone(),
            "nobody".to_owned(),
            ana_laptop.user_id.clone(),
            bea.user_id.clone(),
        ];
        let listed = h
            .service
            .list_devices(&bea, ids.clone())
            .await
            .expect("list");
        let summary: Vec<(&str, Vec<&str>)> = listed
            .users
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
                (bea.user_id.as_str(), vec![bea.device_id.as_str()]),
                (
                    ana_laptop.user_id.as_str(),
                    vec![ana_laptop.device_id.as_str(), ana_phone.device_id.as_str()]
                ),
            ]
        );
        assert_eq!(listed.users[0].devices[0].identity_dh_key, [3; 32]);
        // Listing consumes no prekeys.
        assert_eq!(prekeys_left(&h, &ana_laptop).await, 3);

        // A signed-out device is gone from both lists, and so are its prekeys.
        h.service.sign_out(&ana_laptop).await.expect("sign out");
        let active = h.service.active_devices(ids).await.expect("active");
        let summary: Vec<(&str, Vec<&str>)> = active
            .users
            .iter()
            .map(|u| {
                (
                    u.user_id.as_str(),
                    u.device_ids.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (bea.user_id.as_str(), vec![bea.device_id.as_str()]),
                (
                    ana_phone.user_id.as_str(),
                    vec![ana_phone.device_id.as_str()]
                ),
            ]
        );
        let listed = h
            .service
            .list_devices(&bea, vec![ana_phone.user_id.clone()])
            .await
            .expect("list");
        assert_eq!(listed.users[0].devices.len(), 1);
        assert_eq!(listed.users[0].devices[0].device_id, ana_phone.device_id);
        assert!(
            h.service
                .fetch_bundles(&bea, &ana_phone.user_id)
                .await
                .expect("fetch")
                .bundles
                .is_empty(),
            "the laptop's bundle went with it"
        );
        assert_eq!(
            h.store
                .one_time_prekey_count(&ana_laptop.device_id)
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            h.store
                .signed_prekey(&ana_laptop.device_id)
                .await
                .expect("get"),
            None
        );

        // The signed-out device can no longer use the directory.
        let err = h
            .service
            .upload_prekeys(&ana_laptop, upload(Some(signed_prekey(2)), one_time(9..10)))
            .await
            .expect_err("signed out");
        assert_status(err, Code::Unauthenticated, reason::SESSION_REVOKED);
        let err = h
            .service
            .list_devices(&ana_laptop, vec![])
            .await
            .expect_err("signed out");
        assert_status(err, Code::Unauthenticated, reason::SESSION_REVOKED);
    }

    #[tokio::test]
    async fn caps_on_lists() {
        let h = Harness::new();
        let ana = h.sign_in_as(ANA, "ana laptop").await;
        let ids = |n: usize| (0..n).map(|i| format!("{i:032x}")).collect::<Vec<_>>();

        assert!(
            h.service
                .list_devices(&ana, ids(MAX_LIST_DEVICES_USERS))
                .await
                .expect("at the cap")
                .users
                .is_empty()
        );
        let err = h
            .service
            .list_devices(&ana, ids(MAX_LIST_DEVICES_USERS + 1))
            .await
            .expect_err("over");
        assert_status(err, Code::InvalidArgument, BATCH_TOO_LARGE);

        h.service
            .active_devices(ids(MAX_ACTIVE_DEVICES_USERS))
            .await
            .expect("at the cap");
        let err = h
            .service
            .active_devices(ids(MAX_ACTIVE_DEVICES_USERS + 1))
            .await
            .expect_err("over");
        assert_status(err, Code::InvalidArgument, BATCH_TOO_LARGE);

        let phones = |n: usize| {
            (0..n)
                .map(|i| format!("+1201555{i:04}"))
                .collect::<Vec<_>>()
        };
        h.service
            .resolve_phones(&ana, phones(MAX_RESOLVE_PHONES))
            .await
            .expect("at the cap");
        let err = h
            .service
            .resolve_phones(&ana, phones(MAX_RESOLVE_PHONES + 1))
            .await
            .expect_err("over");
        assert_status(err, Code::InvalidArgument, BATCH_TOO_LARGE);
    }
}
