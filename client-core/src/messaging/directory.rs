//! The directory: which devices each user has (and the identity keys this device trusts for
//! them), their prekey bundles for first contact, this device's own prekeys, and the safety
//! number those identities make.

use std::collections::HashMap;

use juntos_proto::chat::v1 as chat;
use juntos_proto::login::v1 as login;

use super::e2e;
use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::shared::Shared;
use crate::store::messaging::{self as db, DeviceRecord};

/// How many one-time prekeys a device publishes at a time.
const PREKEY_BATCH: u32 = 100;
/// Most users one `Directory.ListDevices` call may name.
const LIST_DEVICES_CHUNK: usize = 256;

impl Shared {
    /// The safety number of this account and `peer`: 60 digits both users see alike when no
    /// one is in the middle. Compare it in person or over a call.
    pub(crate) async fn safety_number(&self, peer: String) -> Result<String> {
        let user = self.resolve(&peer).await?;
        let (me, _) = self.me_ids()?;
        self.refresh_devices(&user).await?;
        self.refresh_devices(&me).await?;
        let mine = self.store.read(|c| db::devices_of(c, &me))?;
        let theirs = self.store.read(|c| db::devices_of(c, &user))?;
        let identity = self.store.identity()?.ok_or(ClientError::NotSignedIn)?;
        Ok(e2e::safety_number(&me, &identity, &mine, &user, &theirs))
    }

    /// Publishes a signed prekey and one-time prekeys when the server says they run low.
    pub(crate) async fn ensure_prekeys(&self) -> Result<()> {
        let status = self
            .gateway
            .unary(Api::prekey_status, login::PrekeyStatusRequest {})
            .await?;
        if !status.refill {
            return Ok(());
        }
        let identity = self.store.identity()?.ok_or(ClientError::NotSignedIn)?;
        let (next_signed, next_one_time) = self.store.read(db::next_prekey_ids)?;
        let signed = (!status.has_signed_prekey || !self.store.read(db::has_signed_prekey)?)
            .then(|| e2e::signed_prekey(&identity, next_signed));
        let one_time = e2e::one_time_prekeys(next_one_time, PREKEY_BATCH);
        // Stored before the upload: a key the server hands out must never be one we lost.
        self.store
            .write(|tx| tx.add_prekeys(signed.as_ref(), &one_time, self.clock.now_ms()))?;
        let request = e2e::upload_request(signed.as_ref(), &one_time);
        self.gateway.unary(Api::upload_prekeys, request).await?;
        Ok(())
    }

    /// The devices of `user_id` this device knows, fetching the list the first time.
    pub(crate) async fn known_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>> {
        if !self.store.read(|c| db::device_list_known(c, user_id))? {
            self.refresh_devices(user_id).await?;
        }
        self.store.read(|c| db::devices_of(c, user_id))
    }

    /// Fetches `user_id`'s device list from the directory and stores it.
    pub(crate) async fn refresh_devices(&self, user_id: &str) -> Result<()> {
        self.refresh_devices_of(&[user_id.to_owned()]).await
    }

    /// Fetches the device lists of `user_ids` from the directory (as many per call as it
    /// takes) and stores them; a user the directory does not list has no devices.
    pub(crate) async fn refresh_devices_of(&self, user_ids: &[String]) -> Result<()> {
        for chunk in user_ids.chunks(LIST_DEVICES_CHUNK) {
            let request = login::ListDevicesRequest {
                user_ids: chunk.to_vec(),
            };
            let answer = self.gateway.unary(Api::list_devices, request).await?;
            let mut lists: HashMap<&str, Vec<DeviceRecord>> =
                chunk.iter().map(|u| (u.as_str(), Vec::new())).collect();
            for user in answer.users {
                let Some(list) = lists.get_mut(user.user_id.as_str()) else {
                    continue;
                };
                list.extend(user.devices.into_iter().filter_map(|d| {
                    Some(DeviceRecord {
                        user_id: user.user_id.clone(),
                        device_id: d.device_id,
                        identity_signing: d.identity_signing_key.try_into().ok()?,
                        identity_dh: d.identity_dh_key.try_into().ok()?,
                    })
                }));
            }
            let now = self.clock.now_ms();
            self.store.write(|tx| {
                for (user_id, devices) in &lists {
                    tx.replace_devices(user_id, devices, now)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Prekey bundles of every device of `user_id`, after checking their identities against
    /// what this device already trusts.
    pub(super) async fn fetch_bundles(&self, user_id: &str) -> Result<Vec<login::PrekeyBundle>> {
        let request = login::FetchBundlesRequest {
            user_id: user_id.to_owned(),
        };
        let answer = self.gateway.unary(Api::fetch_bundles, request).await?;
        let known = self.store.read(|c| db::devices_of(c, user_id))?;
        Ok(answer
            .bundles
            .into_iter()
            .filter(|b| {
                known.iter().any(|k| {
                    k.device_id == b.device_id
                        && k.identity_signing[..] == b.identity_signing_key[..]
                        && k.identity_dh[..] == b.identity_dh_key[..]
                })
            })
            .collect())
    }

    /// The sender device's trusted identity, fetching the sender's device list when the device
    /// is new to this one. None when the directory does not list it (drop the envelope).
    pub(super) async fn sender_device(
        &self,
        envelope: &chat::Envelope,
    ) -> Result<Option<DeviceRecord>> {
        let find = |devices: Vec<DeviceRecord>| {
            devices
                .into_iter()
                .find(|d| d.device_id == envelope.sender_device_id)
        };
        if let Some(device) = find(
            self.store
                .read(|c| db::devices_with_removed(c, &envelope.sender_user_id))?,
        ) {
            return Ok(Some(device));
        }
        self.refresh_devices(&envelope.sender_user_id).await?;
        Ok(find(self.store.read(|c| {
            db::devices_with_removed(c, &envelope.sender_user_id)
        })?))
    }
}
