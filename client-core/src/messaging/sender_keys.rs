//! This device's sending chains (sender keys, `crypto::sender_key`): one per group and one for
//! its statuses. A chain is made when there is none, and made anew when a device that holds it
//! is no longer in the audience (so someone who left never reads what follows); every device of
//! the audience that lacks it gets it over the pairwise sessions before anything is encrypted
//! with it. A device missing another's chain asks for it once.

use super::e2e;
use super::pairwise::Pairwise;
use super::queue::queue_in;
use crate::error::{ClientError, Result};
use crate::model::content::{self, Body, Content, SenderKey};
use crate::shared::Shared;
use crate::store::groups::{self as gdb, status_audience};
use crate::store::messaging as db;

/// Most envelopes one `Chat.Send` may carry (the chat service's cap).
const MAX_SEND_DEVICES: usize = 256;

/// Whether every device of an audience holds this device's current chain.
pub(super) enum Keyed {
    All,
    /// Some device could not be reached yet (its user's device list here was behind).
    Behind,
    /// The server refused to carry the chain for good.
    Refused(String),
}

/// Which of this device's sending chains.
#[derive(Debug, Clone, Copy)]
pub(super) enum Chain<'a> {
    /// The chain for one group.
    Group(&'a str),
    /// The chain for this account's statuses.
    Status,
}

impl Chain<'_> {
    /// The id the chain is stored under: the group id, or `status:<user id>` (never a group id,
    /// which is alphanumeric).
    pub(super) fn audience(&self, me: &str) -> String {
        match self {
            Chain::Group(group_id) => (*group_id).to_owned(),
            Chain::Status => status_audience(me),
        }
    }
}

impl Shared {
    /// Makes sure every device of `others` (user, device) holds this device's current `chain`,
    /// starting a new chain when a device that holds it is not among them. False when some
    /// device still lacks it (its user's device list here is behind).
    pub(super) async fn keyed(
        &self,
        chain: Chain<'_>,
        others: &[&(String, String)],
    ) -> Result<Keyed> {
        let (me, _) = self.me_ids()?;
        let audience = chain.audience(&me);
        let group_id = audience.as_str();
        let now = self.clock.now_ms();
        let current = self.store.read(|c| gdb::own_sender_key(c, group_id))?;
        let given = match current {
            Some((_, given)) if given.iter().all(|g| others.iter().any(|(_, d)| d == g)) => given,
            // None yet, or someone holding it left: a chain they never see.
            _ => {
                let state = e2e::new_sender_key();
                let _crypto = self.runtime.crypto();
                self.store
                    .write(|tx| tx.save_own_sender_key(group_id, &state, true, now))?;
                Vec::new()
            }
        };
        let mut lacking: Vec<String> = others
            .iter()
            .filter(|(_, d)| !given.contains(d))
            .map(|(u, _)| u.clone())
            .collect();
        lacking.sort_unstable();
        lacking.dedup();
        if lacking.is_empty() {
            return Ok(Keyed::All);
        }
        // The pairwise device lists must be those of the audience: fetch, in as few calls as
        // possible, those this device does not have or that lack a device.
        let mut behind = Vec::new();
        for user in &lacking {
            let known = self.store.read(|c| db::devices_of(c, user))?;
            let listed = self.store.read(|c| db::device_list_known(c, user))?;
            let missing = others
                .iter()
                .filter(|(u, _)| u == user)
                .any(|(_, d)| !known.iter().any(|k| &k.device_id == d));
            if !listed || missing {
                behind.push(user.clone());
            }
        }
        self.refresh_devices_of(&behind).await?;
        let Some((state, _)) = self.store.read(|c| gdb::own_sender_key(c, group_id))? else {
            return Ok(Keyed::Behind);
        };
        let distribution = e2e::sender_key_distribution(&state)?.to_vec();
        let body = match chain {
            Chain::Group(group_id) => Body::SenderKey(SenderKey {
                group_id: group_id.to_owned(),
                distribution,
            }),
            Chain::Status => Body::StatusKey(content::StatusKey { distribution }),
        };
        let content = Content::new(&me, group_id, now, body).encode_padded();
        // In sends the server takes (at most MAX_SEND_DEVICES envelopes, this account's other
        // devices in each).
        let mine = self.known_devices(&me).await?.len();
        let mut batches: Vec<Vec<String>> = Vec::new();
        let mut batch: Vec<String> = Vec::new();
        let mut count = mine;
        for user in lacking {
            let n = self.store.read(|c| db::devices_of(c, &user))?.len();
            if !batch.is_empty() && count + n > MAX_SEND_DEVICES {
                batches.push(std::mem::take(&mut batch));
                count = mine;
            }
            count += n;
            batch.push(user);
        }
        batches.push(batch);
        let mut reached: Vec<String> = given.clone();
        for users in batches {
            match self
                .send_pairwise(&users, &content::new_id(), &content)
                .await?
            {
                Pairwise::Sent { devices, .. } => {
                    // Only devices of the audience count: one the send also reached that the
                    // group does not list (yet) would start a new chain at the next send.
                    let audience_devices: Vec<String> = devices
                        .into_iter()
                        .filter(|d| others.iter().any(|(_, o)| o == d))
                        .collect();
                    self.store
                        .write(|tx| tx.mark_sender_key_given(group_id, &audience_devices))?;
                    reached.extend(audience_devices);
                }
                Pairwise::Refused(why) => {
                    return Ok(Keyed::Refused(format!(
                        "could not give a recipient this device's key: {why}"
                    )));
                }
            }
        }
        Ok(if others.iter().all(|(_, d)| reached.contains(d)) {
            Keyed::All
        } else {
            Keyed::Behind
        })
    }

    /// Encrypts `content` with this device's chain for `audience`, saving the advanced chain
    /// before the ciphertext leaves (a key is never used twice).
    pub(super) fn encrypt_with_chain(
        &self,
        audience: &str,
        content: &[u8],
        ad: &[u8],
    ) -> Result<Vec<u8>> {
        let _crypto = self.runtime.crypto();
        let (state, _) = self
            .store
            .read(|c| gdb::own_sender_key(c, audience))?
            .ok_or_else(|| ClientError::Server {
                message: "no sender key to send with".to_owned(),
            })?;
        let (wire, next) = e2e::group_encrypt(&state, content, ad)?;
        let now = self.clock.now_ms();
        self.store
            .write(|tx| tx.save_own_sender_key(audience, &next, false, now))?;
        Ok(wire)
    }

    /// Asks `sender_device` (of `sender_user`) to give this device its chain for `group_id`
    /// (empty: its status chain) with its next message, once per process. What was sent on the
    /// chain before is not recovered.
    pub(super) fn ask_for_key(
        &self,
        group_id: &str,
        sender_user: &str,
        sender_device: &str,
    ) -> Result<()> {
        let (me, my_device) = self.me_ids()?;
        if sender_user == me || !self.runtime.first_ask(group_id, sender_device) {
            return Ok(());
        }
        let body = Body::SenderKeyRequest(content::SenderKeyRequest {
            group_id: group_id.to_owned(),
        });
        let now = self.clock.now_ms();
        self.store
            .write(|tx| queue_in(tx, &me, &my_device, sender_user, body, now))?;
        self.runtime.outbox_wake.notify_one();
        Ok(())
    }
}
