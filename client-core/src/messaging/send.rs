//! The outbox: queued sends drained in order, encrypted per device at send time.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt as _;
use juntos_proto::chat::v1 as chat;
use juntos_proto::error::{metadata_of, reason, reason_of};
use juntos_proto::login::v1 as login;
use tokio::sync::Notify;
use tonic::{Code, Status};

use super::e2e;
use crate::Client;
use crate::error::{ClientError, Result};
use crate::records::{Event, MessageStatus};
use crate::store::messaging::{self as db, DeviceRecord, OutboxItem};

/// Rounds of device-list correction before a send waits for the next drain.
pub(super) const STALE_ROUNDS: usize = 4;
/// Failed tries (other than network and certificate failures, rate limits and sign-outs)
/// before a send is given up.
const MAX_STUCK_ATTEMPTS: i64 = 20;
/// Prekey bundle fetches in flight at once.
const BUNDLE_FETCHES: usize = 16;
/// Most users one `Directory.ListDevices` call may name.
const LIST_DEVICES_CHUNK: usize = 256;
/// Longest wait between drain attempts while the network is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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

/// The outbox worker: drains whenever woken, backing off while the network is down (or the
/// server's certificate is refused). Holds the client only while draining, and ends once it is
/// gone or signed out.
pub(super) async fn run_outbox(client: Weak<Client>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let drained = match client.upgrade() {
            Some(client) => client.drain_outbox().await,
            None => return,
        };
        match drained {
            Ok(()) => {
                backoff = Duration::from_millis(250);
                wake.notified().await;
            }
            Err(ClientError::NotSignedIn | ClientError::SessionEnded) => return,
            Err(e) => {
                tracing::debug!(error = %e, ?backoff, "outbox waits for the network");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = wake.notified() => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Client {
    /// Sends the outbox in order until it is empty; stops at the first send that may succeed
    /// later (network down, rate limit), leaving it at the head.
    pub(crate) async fn drain_outbox(&self) -> Result<()> {
        // One drain at a time, so items leave strictly in order.
        let _drain = self.messaging_drain_lock().lock().await;
        while let Some(item) = self.store.read(db::outbox_head)? {
            let outcome = match self.send_item(&item).await {
                Ok(outcome) => outcome,
                // Offline, throttled or signed out: the item waits, however long that takes. A
                // refused certificate (captive portal, TLS proxy, a server certificate that
                // expired before its renewal) is a path problem too: nothing reached the server.
                Err(
                    e @ (ClientError::Network { .. }
                    | ClientError::Certificate { .. }
                    | ClientError::RateLimited { .. }
                    | ClientError::NotSignedIn
                    | ClientError::SessionEnded),
                ) => return Err(e),
                // Anything else may clear (a device without prekeys yet), but must not block
                // every later send forever.
                Err(e) if item.attempts + 1 < MAX_STUCK_ATTEMPTS => {
                    self.store.write(|tx| tx.count_attempt(item.seq))?;
                    return Err(e);
                }
                Err(e) => {
                    Outcome::Refused(format!("gave up after {MAX_STUCK_ATTEMPTS} tries: {e}"))
                }
            };
            let message_id =
                super::content::Content::decode_bytes(&item.content).map(|c| c.message_id);
            let changed = self.store.write(|tx| {
                tx.dequeue(item.seq)?;
                let Some(id) = &message_id else {
                    return Ok(None);
                };
                let moved = match &outcome {
                    Outcome::Sent { server_time_ms } => {
                        tx.advance_status(id, MessageStatus::Sent, Some(*server_time_ms))?
                    }
                    Outcome::Refused(_) => tx.advance_status(id, MessageStatus::Failed, None)?,
                };
                if moved { tx.message(id) } else { Ok(None) }
            })?;
            if let Outcome::Refused(error) = &outcome {
                self.emit(Event::SendFailed {
                    message_id: message_id.clone().unwrap_or_default(),
                    error: error.clone(),
                });
            }
            if let Some(message) = changed {
                self.emit(Event::MessageChanged { message });
            }
        }
        Ok(())
    }

    /// Encrypts `item` for every device it must reach and sends it, fixing a stale device list
    /// (or group) as the server reports it.
    async fn send_item(&self, item: &OutboxItem) -> Result<Outcome> {
        if !item.group_id.is_empty() {
            return self.send_group_item(item).await;
        }
        let users = [item.to_user_id.clone()];
        Ok(
            match self
                .send_pairwise(&users, &item.client_msg_id, &item.content)
                .await?
            {
                Pairwise::Sent { server_time_ms, .. } => Outcome::Sent { server_time_ms },
                Pairwise::Refused(why) => Outcome::Refused(why),
            },
        )
    }

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
            let api = self.api.clone();
            let answer = self
                .authorized_status(|token| {
                    let (api, request) = (api.clone(), request.clone());
                    async move { api.send(&token, request).await }
                })
                .await?;
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
        let _crypto = self.messaging.crypto();
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
            let api = self.api.clone();
            let users = chunk.to_vec();
            let answer = self
                .authorized(|token| {
                    let (api, users) = (api.clone(), users.clone());
                    async move { api.list_devices(&token, users).await }
                })
                .await?;
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
    async fn fetch_bundles(&self, user_id: &str) -> Result<Vec<login::PrekeyBundle>> {
        let api = self.api.clone();
        let user = user_id.to_owned();
        let answer = self
            .authorized(|token| {
                let (api, user) = (api.clone(), user.clone());
                async move { api.fetch_bundles(&token, user).await }
            })
            .await?;
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

    /// Re-reads the device lists the server said were wrong.
    async fn fix_devices(&self, status: &Status, users: &[&str]) -> Result<()> {
        for user in users {
            if metadata_of(status, user).is_some() {
                self.refresh_devices(user).await?;
            }
        }
        Ok(())
    }

    fn messaging_drain_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.messaging.drain
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
