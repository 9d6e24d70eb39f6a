//! Pairwise sends: one content encrypted with each recipient device's Double Ratchet session
//! (made from its prekey bundle on first contact), the session states saved before anything
//! leaves, then one `Chat.Send` for every envelope. A stale device list is fixed from the
//! server's answer and the send repeated.

use std::collections::HashMap;

use futures_util::StreamExt as _;
use juntos_proto::chat::v1 as chat;
use juntos_proto::error::{metadata_of, reason, reason_of};
use juntos_proto::login::v1 as login;
use tonic::{Code, Status};

use super::e2e;
use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::shared::Shared;
use crate::store::messaging::{self as db, DeviceRecord};

/// Rounds of device-list correction before a send waits for the next drain.
pub(super) const STALE_ROUNDS: usize = 4;
/// Prekey bundle fetches in flight at once.
const BUNDLE_FETCHES: usize = 16;

/// How a pairwise send went.
pub(super) enum Pairwise {
    /// Stored by the server for these devices.
    Sent {
        server_time_ms: i64,
        devices: Vec<String>,
    },
    /// Refused for good.
    Refused(String),
}

/// How one outbox item went.
pub(super) enum Outcome {
    /// Stored by the server.
    Sent { server_time_ms: i64 },
    /// Refused for good; dropped from the outbox.
    Refused(String),
}

impl Shared {
    /// Encrypts `content` for every device of `users` and every other device of this account,
    /// and sends it as one `Chat.Send`, fixing stale device lists as the server reports them.
    pub(super) async fn send_pairwise(
        &self,
        users: &[String],
        client_msg_id: &str,
        content: &[u8],
    ) -> Result<Pairwise> {
        let (me, my_device) = self.me_ids()?;
        let mut everyone: Vec<String> = users.to_vec();
        if !everyone.contains(&me) {
            everyone.push(me.clone());
        }
        for _ in 0..STALE_ROUNDS {
            let mut targets = Vec::new();
            for user in &everyone {
                targets.extend(self.known_devices(user).await?);
            }
            targets.retain(|d| d.device_id != my_device);
            let envelopes = self.encrypt_for(&targets, content).await?;
            let devices: Vec<String> = envelopes
                .iter()
                .map(|e| e.recipient_device_id.clone())
                .collect();
            let request = chat::SendRequest {
                client_msg_id: client_msg_id.to_owned(),
                envelopes,
            };
            let answer = self.gateway.unary_status(Api::send, request).await?;
            match answer {
                Ok(response) => {
                    return Ok(Pairwise::Sent {
                        server_time_ms: response.server_time_ms,
                        devices,
                    });
                }
                Err(status) if reason_of(&status).as_deref() == Some(reason::STALE_DEVICES) => {
                    let names: Vec<&str> = everyone.iter().map(String::as_str).collect();
                    self.fix_devices(&status, &names).await?;
                }
                Err(status) => return refusal(&status).map(Pairwise::Refused),
            }
        }
        Err(ClientError::Server {
            message: "the recipient's device list keeps changing; will retry".to_owned(),
        })
    }

    /// Encrypts `plaintext` for each target, creating sessions from prekey bundles where none
    /// exists, and saves every session state before anything leaves the device.
    async fn encrypt_for(
        &self,
        targets: &[DeviceRecord],
        plaintext: &[u8],
    ) -> Result<Vec<chat::OutgoingEnvelope>> {
        let identity = self.store.identity()?.ok_or(ClientError::NotSignedIn)?;
        // Bundles first (network), for the users that have a device without a session.
        let mut bundles: HashMap<String, login::PrekeyBundle> = HashMap::new();
        let mut users = Vec::new();
        for device in targets {
            let has_session = self
                .store
                .read(|c| db::ratchet_session(c, &device.device_id))?
                .is_some();
            if !has_session && !users.contains(&device.user_id) {
                users.push(device.user_id.clone());
            }
        }
        // A few at a time: a first message to a large group needs one per member.
        let fetched: Vec<Result<Vec<login::PrekeyBundle>>> = futures_util::stream::iter(users)
            .map(|user| async move { self.fetch_bundles(&user).await })
            .buffer_unordered(BUNDLE_FETCHES)
            .collect()
            .await;
        for answer in fetched {
            for bundle in answer? {
                bundles.insert(bundle.device_id.clone(), bundle);
            }
        }
        // Then read, encrypt and save under the crypto lock, with no await in between.
        let now = self.clock.now_ms();
        let _crypto = self.runtime.crypto();
        let mut envelopes = Vec::with_capacity(targets.len());
        let mut states = Vec::with_capacity(targets.len());
        let mut missing = false;
        for device in targets {
            let state = self
                .store
                .read(|c| db::ratchet_session(c, &device.device_id))?;
            let bundle = bundles.get(&device.device_id);
            if state.is_none() && bundle.is_none() {
                // The device has not published prekeys yet: it cannot be included now.
                missing = true;
                continue;
            }
            let (wire, new_state) =
                e2e::encrypt(&identity, device, state.as_deref(), bundle, plaintext, now)?;
            envelopes.push(chat::OutgoingEnvelope {
                recipient_user_id: device.user_id.clone(),
                recipient_device_id: device.device_id.clone(),
                ciphertext: wire,
            });
            states.push((device, new_state));
        }
        // Saved even when a device is missing: the sessions just made used up one-time
        // prekeys, and the next try must continue them rather than fetch new bundles.
        self.store.write(|tx| {
            for (device, state) in &states {
                tx.save_ratchet_session(&device.user_id, &device.device_id, state, now)?;
            }
            Ok(())
        })?;
        if missing {
            return Err(ClientError::Server {
                message: "a recipient device has no prekeys yet; will retry".to_owned(),
            });
        }
        Ok(envelopes)
    }

    /// Re-reads the device lists the server said were wrong.
    async fn fix_devices(&self, status: &Status, users: &[&str]) -> Result<()> {
        for user in users {
            if metadata_of(status, user).is_some() {
                self.refresh_devices(user).await?;
            }
        }
        Ok(())
    }
}

/// Why a refused send never will succeed (Ok), or the error to retry it after (Err).
pub(super) fn refusal(status: &Status) -> Result<String> {
    match status.code() {
        Code::InvalidArgument
        | Code::NotFound
        | Code::PermissionDenied
        | Code::FailedPrecondition => Ok(ClientError::from(status).to_string()),
        _ => Err(ClientError::from(status)),
    }
}
