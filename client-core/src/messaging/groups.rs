//! Groups: membership through the chat service's `Groups` API, group messages encrypted once
//! with this device's sender key and fanned out by the server, and the signed notices that keep
//! every member device's view current.
//!
//! Sending (an outbox item with a group id): this device's chain for the group is made if there
//! is none, and made again if any device that holds it is no longer a member device (so someone
//! who left never reads what follows); every member device that lacks it gets it over the
//! pairwise sessions (`Chat.Send`, stored before the group message, so it arrives first); then
//! the content is encrypted once and `Groups.SendGroup` stores it for every member device,
//! naming the member devices it was keyed for. A STALE_GROUP answer means the membership or a
//! member's devices changed: the group is fetched again and the round repeats.
//!
//! Receiving: a notice is checked against the service's notice key and applied (a member who
//! left makes this device drop its chain); a group message is decrypted with the sending
//! device's chain and filed in the group's history.

use juntos_proto::chat::v1 as chat;
use juntos_proto::error::{reason, reason_of};
use prost::Message as _;

use super::content::{self, Body, Content, SenderKey};
use super::e2e;
use super::send::{Outcome, Pairwise, STALE_ROUNDS, refusal};
use super::{To, check_text};
use crate::Client;
use crate::error::{ClientError, Result};
use crate::records::{Event, GroupAction, GroupInfo, GroupMemberInfo, GroupNoticeInfo, Message};
use crate::store::groups::{self as gdb, GroupSnapshot};
use crate::store::messaging as db;

/// Most group ids a listing fetches in one call.
const LIST_PAGE: u32 = 1_000;
/// Most envelopes one `Chat.Send` may carry (the chat service's cap).
const MAX_SEND_DEVICES: usize = 256;
/// Most members of a group (the chat service's cap).
const MAX_MEMBERS: usize = 1_024;
/// Longest group id accepted from the app or a peer.
const MAX_GROUP_ID_LEN: usize = 64;

pub(super) fn check_group_id(group_id: &str) -> Result<()> {
    let valid = !group_id.is_empty()
        && group_id.len() <= MAX_GROUP_ID_LEN
        && group_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(ClientError::InvalidInput {
            message: "not a group id".to_owned(),
        })
    }
}

/// A group as the server answered it, for the store.
fn snapshot_of(group: chat::Group) -> GroupSnapshot {
    let admin = |role: i32| role == chat::GroupRole::Admin as i32;
    let devices = group
        .members
        .iter()
        .flat_map(|m| {
            m.device_ids
                .iter()
                .map(move |d| (m.user_id.clone(), d.clone()))
        })
        .collect();
    GroupSnapshot {
        info: GroupInfo {
            admin: admin(group.my_role),
            active: true,
            members: group
                .members
                .iter()
                .map(|m| GroupMemberInfo {
                    user_id: m.user_id.clone(),
                    admin: admin(m.role),
                })
                .collect(),
            group_id: group.group_id,
            name: group.name,
            version: group.version,
        },
        digest: Some(group.member_devices_digest),
        devices,
    }
}

fn action_of(action: chat::NoticeAction) -> Option<GroupAction> {
    use chat::NoticeAction as A;
    Some(match action {
        A::Created => GroupAction::Created,
        A::Added => GroupAction::Added,
        A::Removed => GroupAction::Removed,
        A::Left => GroupAction::Left,
        A::Promoted => GroupAction::Promoted,
        A::Demoted => GroupAction::Demoted,
        A::Renamed => GroupAction::Renamed,
        A::Unspecified => return None,
    })
}

// === exported ===

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// Creates a group named `name` with this account as admin and `members` (E.164 numbers or
    /// user ids) in it.
    pub async fn create_group(&self, name: String, members: Vec<String>) -> Result<GroupInfo> {
        let member_user_ids = self.resolve_members(&members).await?;
        let request = chat::CreateGroupRequest {
            name,
            member_user_ids,
        };
        let api = self.api.clone();
        let answer = self
            .authorized(|token| {
                let (api, request) = (api.clone(), request.clone());
                async move { api.create_group(&token, request).await }
            })
            .await?;
        self.save_answer(answer.group)
    }

    /// Adds `members` (numbers or user ids) to a group (admins only).
    pub async fn add_group_members(
        &self,
        group_id: String,
        members: Vec<String>,
    ) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::MembersRequest {
            group_id: group_id.clone(),
            user_ids: self.resolve_members(&members).await?,
        };
        let api = self.api.clone();
        let answer = self
            .group_call(&group_id, |token| {
                let (api, request) = (api.clone(), request.clone());
                async move { api.add_members(&token, request).await }
            })
            .await?;
        self.save_answer(answer.group)
    }

    /// Removes `members` (numbers or user ids) from a group (admins only). The removed
    /// members' devices get nothing sent after this.
    pub async fn remove_group_members(
        &self,
        group_id: String,
        members: Vec<String>,
    ) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::MembersRequest {
            group_id: group_id.clone(),
            user_ids: self.resolve_members(&members).await?,
        };
        let api = self.api.clone();
        let answer = self
            .group_call(&group_id, |token| {
                let (api, request) = (api.clone(), request.clone());
                async move { api.remove_members(&token, request).await }
            })
            .await?;
        // Whoever left must not read what this device sends next.
        self.store.write(|tx| tx.forget_own_sender_key(&group_id))?;
        match answer.group {
            Some(group) => self.save_answer(Some(group)),
            None => self.left(&group_id),
        }
    }

    /// Leaves a group.
    pub async fn leave_group(&self, group_id: String) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::LeaveGroupRequest {
            group_id: group_id.clone(),
        };
        let api = self.api.clone();
        self.group_call(&group_id, |token| {
            let (api, request) = (api.clone(), request.clone());
            async move { api.leave_group(&token, request).await }
        })
        .await?;
        self.left(&group_id)
    }

    /// Makes `members` admins of a group, or plain members (admins only).
    pub async fn set_group_admins(
        &self,
        group_id: String,
        members: Vec<String>,
        admin: bool,
    ) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::SetAdminsRequest {
            group_id: group_id.clone(),
            user_ids: self.resolve_members(&members).await?,
            admin,
        };
        let api = self.api.clone();
        let answer = self
            .group_call(&group_id, |token| {
                let (api, request) = (api.clone(), request.clone());
                async move { api.set_admins(&token, request).await }
            })
            .await?;
        self.save_answer(answer.group)
    }

    /// Renames a group (admins only).
    pub async fn rename_group(&self, group_id: String, name: String) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::RenameGroupRequest {
            group_id: group_id.clone(),
            name,
        };
        let api = self.api.clone();
        let answer = self
            .group_call(&group_id, |token| {
                let (api, request) = (api.clone(), request.clone());
                async move { api.rename_group(&token, request).await }
            })
            .await?;
        self.save_answer(answer.group)
    }

    /// One group, fetched from the server (members only).
    pub async fn group(&self, group_id: String) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        Ok(self.fetch_group(&group_id).await?.info)
    }

    /// The groups this account is in (from the server), then those it left, by name.
    pub async fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut after = String::new();
        loop {
            let request = chat::ListGroupsRequest {
                after_group_id: after.clone(),
                limit: LIST_PAGE,
            };
            let api = self.api.clone();
            let page = self
                .authorized(|token| {
                    let (api, request) = (api.clone(), request.clone());
                    async move { api.list_groups(&token, request).await }
                })
                .await?;
            self.store.write(|tx| {
                for g in &page.groups {
                    tx.note_group_change(&g.group_id, &g.name, g.version, Some(true))?;
                }
                Ok(())
            })?;
            match page.groups.last() {
                Some(last) if page.more => after.clone_from(&last.group_id),
                _ => break,
            }
        }
        self.store.read(|c| {
            gdb::group_ids(c)?
                .iter()
                .filter_map(|id| gdb::snapshot(c, id).transpose())
                .map(|s| s.map(|s| s.info))
                .collect()
        })
    }

    /// Sends `text` to every member of a group. Returns the queued message at once.
    pub async fn send_group_text(&self, group_id: String, text: String) -> Result<Message> {
        check_group_id(&group_id)?;
        check_text(&text)?;
        let known = self.store.read(|c| gdb::snapshot(c, &group_id))?;
        if known.is_some_and(|g| !g.info.active) {
            return Err(ClientError::InvalidInput {
                message: "you are no longer in this group".to_owned(),
            });
        }
        self.queue_for(
            To::Group(&group_id),
            Body::Text(content::Text {
                text,
                quoted_message_id: String::new(),
                forwarded: false,
                attachment: None,
            }),
        )
    }

    /// The newest `limit` messages of a group, oldest first.
    pub async fn group_history(&self, group_id: String, limit: u32) -> Result<Vec<Message>> {
        check_group_id(&group_id)?;
        self.store
            .read(|c| db::history(c, &group_id, limit.clamp(1, 10_000)))
    }
}

// === membership ===

impl Client {
    /// The user ids of `peers` (numbers or user ids), at most a group's worth.
    async fn resolve_members(&self, peers: &[String]) -> Result<Vec<String>> {
        if peers.len() > MAX_MEMBERS {
            return Err(ClientError::InvalidInput {
                message: format!("a group has at most {MAX_MEMBERS} members"),
            });
        }
        let mut users = Vec::with_capacity(peers.len());
        for peer in peers {
            users.push(self.resolve(peer).await?);
        }
        Ok(users)
    }

    /// A call about one group; NOT_A_MEMBER marks it left here.
    async fn group_call<T, F, Fut>(&self, group_id: &str, call: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        match self.authorized_status(call).await? {
            Ok(answer) => Ok(answer),
            Err(status) => {
                if reason_of(&status).as_deref() == Some(reason::NOT_A_MEMBER) {
                    self.store.write(|tx| tx.mark_group_inactive(group_id))?;
                }
                Err(ClientError::from(&status))
            }
        }
    }

    /// Stores a group the server answered with.
    fn save_answer(&self, group: Option<chat::Group>) -> Result<GroupInfo> {
        let group = group.ok_or_else(|| ClientError::Server {
            message: "the server answered without the group".to_owned(),
        })?;
        let snapshot = snapshot_of(group);
        self.store.write(|tx| tx.save_group(&snapshot))?;
        Ok(snapshot.info)
    }

    /// This account left (or was removed from) a group.
    fn left(&self, group_id: &str) -> Result<GroupInfo> {
        self.store.write(|tx| tx.mark_group_inactive(group_id))?;
        self.store
            .read(|c| gdb::snapshot(c, group_id))?
            .map(|s| s.info)
            .ok_or_else(|| ClientError::InvalidInput {
                message: "no such group".to_owned(),
            })
    }

    /// `Groups.GetGroup`, stored.
    async fn fetch_group(&self, group_id: &str) -> Result<GroupSnapshot> {
        match self.try_fetch_group(group_id).await? {
            Ok(snapshot) => Ok(snapshot),
            Err(status) => {
                if reason_of(&status).as_deref() == Some(reason::NOT_A_MEMBER) {
                    self.store.write(|tx| tx.mark_group_inactive(group_id))?;
                }
                Err(ClientError::from(&status))
            }
        }
    }

    /// `Groups.GetGroup`, stored; a refusal comes back as the server's status.
    async fn try_fetch_group(
        &self,
        group_id: &str,
    ) -> Result<Result<GroupSnapshot, tonic::Status>> {
        let request = chat::GetGroupRequest {
            group_id: group_id.to_owned(),
        };
        let api = self.api.clone();
        let answer = self
            .authorized_status(|token| {
                let (api, request) = (api.clone(), request.clone());
                async move { api.get_group(&token, request).await }
            })
            .await?;
        let group = match answer {
            Ok(answer) => answer.group.ok_or_else(|| ClientError::Server {
                message: "the server answered without the group".to_owned(),
            })?,
            Err(status) => return Ok(Err(status)),
        };
        let snapshot = snapshot_of(group);
        self.store.write(|tx| tx.save_group(&snapshot))?;
        Ok(Ok(snapshot))
    }
}

// === sending ===

impl Client {
    /// Sends one queued group message (see the module docs).
    pub(super) async fn send_group_item(&self, item: &db::OutboxItem) -> Result<Outcome> {
        let (me, my_device) = self.me_ids()?;
        let group_id = item.group_id.as_str();
        for _ in 0..STALE_ROUNDS {
            let snapshot = match self.store.read(|c| gdb::snapshot(c, group_id))? {
                Some(s) if s.digest.is_some() && s.info.active => s,
                Some(s) if !s.info.active => {
                    return Ok(Outcome::Refused(
                        "you are no longer in this group".to_owned(),
                    ));
                }
                _ => match self.try_fetch_group(group_id).await? {
                    Ok(s) => s,
                    Err(status) => return self.refused_or(&status, group_id),
                },
            };
            let others: Vec<&(String, String)> = snapshot
                .devices
                .iter()
                .filter(|(_, d)| *d != my_device)
                .collect();
            match self.keyed(Chain::Group(group_id), &others).await? {
                Keyed::All => {}
                Keyed::Behind => {
                    // A member device could not be given the key (its list was behind): look
                    // again.
                    self.store.write(|tx| tx.invalidate_group(group_id))?;
                    continue;
                }
                Keyed::Refused(why) => return Ok(Outcome::Refused(why)),
            }
            let ad = e2e::group_associated_data(group_id, &me, &my_device);
            let ciphertext = self.encrypt_with_chain(group_id, &item.content, &ad)?;
            let request = chat::SendGroupRequest {
                group_id: group_id.to_owned(),
                client_msg_id: item.client_msg_id.clone(),
                ciphertext,
                member_devices_digest: snapshot.digest.clone().unwrap_or_default(),
            };
            let api = self.api.clone();
            let answer = self
                .authorized_status(|token| {
                    let (api, request) = (api.clone(), request.clone());
                    async move { api.send_group(&token, request).await }
                })
                .await?;
            match answer {
                Ok(response) => {
                    return Ok(Outcome::Sent {
                        server_time_ms: response.server_time_ms,
                    });
                }
                Err(status) if reason_of(&status).as_deref() == Some(reason::STALE_GROUP) => {
                    self.store.write(|tx| tx.invalidate_group(group_id))?;
                }
                Err(status) => return self.refused_or(&status, group_id),
            }
        }
        Err(ClientError::Server {
            message: "the group keeps changing; will retry".to_owned(),
        })
    }

    /// A refused group send: for good when the caller is no member (or the request can never
    /// pass), else an error to retry after.
    fn refused_or(&self, status: &tonic::Status, group_id: &str) -> Result<Outcome> {
        if reason_of(status).as_deref() == Some(reason::NOT_A_MEMBER) {
            self.store.write(|tx| tx.mark_group_inactive(group_id))?;
            return Ok(Outcome::Refused("you are not in this group".to_owned()));
        }
        refusal(status).map(Outcome::Refused)
    }

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
                let _crypto = self.messaging.crypto();
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
        let _crypto = self.messaging.crypto();
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
}

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

/// Where a user's status chains are stored.
pub(super) fn status_audience(user_id: &str) -> String {
    format!("status:{user_id}")
}

// === receiving ===

/// What applying a group envelope came to.
pub(super) enum Applied {
    /// Applied, or a harmless duplicate.
    Done,
    /// Can never be applied: acknowledge and report.
    Dropped,
}

impl Client {
    /// A group message: decrypted with the sending device's chain and filed in the group.
    pub(super) async fn apply_group_message(&self, envelope: &chat::Envelope) -> Result<Applied> {
        let group_id = envelope.group_id.as_str();
        if check_group_id(group_id).is_err() {
            return Ok(Applied::Dropped);
        }
        let (me, _) = self.me_ids()?;
        let Ok(chain_id) = e2e::group_chain_of(&envelope.ciphertext) else {
            return Ok(Applied::Dropped);
        };
        let ad = e2e::group_associated_data(
            group_id,
            &envelope.sender_user_id,
            &envelope.sender_device_id,
        );
        let now = self.clock.now_ms();
        let _crypto = self.messaging.crypto();
        let Some(state) = self.store.read(|c| {
            gdb::received_sender_key(c, group_id, &envelope.sender_device_id, chain_id)
        })?
        else {
            tracing::debug!("a group message on a chain this device was never given");
            drop(_crypto);
            self.ask_for_key(
                group_id,
                &envelope.sender_user_id,
                &envelope.sender_device_id,
            )?;
            return Ok(Applied::Dropped);
        };
        let (plaintext, next) = match e2e::group_decrypt(&state, &envelope.ciphertext, &ad, now) {
            Ok(done) => done,
            Err(e) if e.is_duplicate() || e.predates_membership() => return Ok(Applied::Done),
            Err(e) => {
                tracing::debug!(error = %e, "group message did not decrypt");
                return Ok(Applied::Dropped);
            }
        };
        let Some(content) = Content::decode_bytes(&plaintext) else {
            return Ok(Applied::Dropped);
        };
        let allowed = matches!(
            content.body,
            Some(Body::Text(_) | Body::Edit(_) | Body::Delete(_) | Body::Reaction(_))
        );
        if content.from_user_id != envelope.sender_user_id
            || content.to_user_id != group_id
            || !allowed
            || !super::receive::within_bounds(&content)
        {
            return Ok(Applied::Dropped);
        }
        let own = envelope.sender_user_id == me;
        let events = self.store.write(|tx| {
            tx.update_received_sender_key(group_id, &envelope.sender_device_id, chain_id, &next)?;
            let (events, _) =
                super::receive::apply_content(tx, envelope, &content, group_id, own, true)?;
            Ok(events)
        })?;
        for event in events {
            self.emit(event);
        }
        Ok(Applied::Done)
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
        if sender_user == me || !self.messaging.first_ask(group_id, sender_device) {
            return Ok(());
        }
        let body = Body::SenderKeyRequest(content::SenderKeyRequest {
            group_id: group_id.to_owned(),
        });
        let now = self.clock.now_ms();
        self.store
            .write(|tx| super::queue_in(tx, &me, &my_device, sender_user, body, now))?;
        self.messaging.outbox_wake.notify_one();
        Ok(())
    }

    /// A notice: checked against the chat service's key, then applied.
    pub(super) async fn apply_notice(&self, envelope: &chat::Envelope) -> Result<Applied> {
        let Ok(signed) = chat::SignedGroupNotice::decode(&envelope.ciphertext[..]) else {
            return Ok(Applied::Dropped);
        };
        let Some(key) = self.notice_key(&signed.key_id).await? else {
            return Ok(Applied::Dropped);
        };
        if !e2e::verify_notice(&key, &signed.notice, &signed.signature) {
            return Ok(Applied::Dropped);
        }
        let Ok(notice) = chat::GroupNotice::decode(&signed.notice[..]) else {
            return Ok(Applied::Dropped);
        };
        let Some(action) = action_of(notice.action()) else {
            return Ok(Applied::Dropped);
        };
        if notice.group_id != envelope.group_id || check_group_id(&notice.group_id).is_err() {
            return Ok(Applied::Dropped);
        }
        let (me, _) = self.me_ids()?;
        let about_me = notice.subject_user_ids.contains(&me);
        let active = match action {
            GroupAction::Removed | GroupAction::Left if about_me => Some(false),
            GroupAction::Created | GroupAction::Added if about_me => Some(true),
            _ if !notice.exists => Some(false),
            _ => None,
        };
        self.store.write(|tx| {
            tx.note_group_change(&notice.group_id, &notice.name, notice.version, active)?;
            if matches!(action, GroupAction::Removed | GroupAction::Left) || active == Some(false) {
                // Whoever left must not read what this device sends next.
                tx.forget_own_sender_key(&notice.group_id)?;
            }
            Ok(())
        })?;
        self.emit(Event::GroupChanged {
            notice: GroupNoticeInfo {
                group_id: notice.group_id,
                version: notice.version,
                actor_user_id: notice.actor_user_id,
                action,
                subject_user_ids: notice.subject_user_ids,
                promoted_user_ids: notice.promoted_user_ids,
                name: notice.name,
                time_ms: notice.time_ms,
                exists: notice.exists,
            },
        });
        Ok(Applied::Done)
    }

    /// The notice key `key_id`, fetching the service's keys once when it is new here.
    async fn notice_key(&self, key_id: &str) -> Result<Option<[u8; 32]>> {
        if key_id.is_empty() || key_id.len() > 64 {
            return Ok(None);
        }
        if let Some(key) = self.store.read(|c| gdb::notice_key(c, key_id))? {
            return Ok(Some(key));
        }
        let api = self.api.clone();
        let answer = self
            .authorized(|token| {
                let api = api.clone();
                async move {
                    api.get_notice_keys(&token, chat::GetNoticeKeysRequest {})
                        .await
                }
            })
            .await?;
        let keys: Vec<(String, [u8; 32])> = answer
            .keys
            .into_iter()
            .filter(|k| !k.key_id.is_empty() && k.key_id.len() <= 64)
            .filter_map(|k| Some((k.key_id, k.public_key.try_into().ok()?)))
            .collect();
        self.store.write(|tx| tx.add_notice_keys(&keys))?;
        self.store.read(|c| gdb::notice_key(c, key_id))
    }
}

/// Stores a chain another device sent this one pairwise (inside the transaction that saves the
/// session which decrypted it): a group's, or with `key.group_id` `None` the sender's status
/// chain. False when the distribution is malformed.
pub(super) fn accept_sender_key(
    tx: &db::Tx<'_>,
    envelope: &chat::Envelope,
    group_id: Option<&str>,
    distribution: &[u8],
) -> Result<bool> {
    let audience = match group_id {
        Some(group_id) if check_group_id(group_id).is_ok() => group_id.to_owned(),
        Some(_) => return Ok(false),
        None => status_audience(&envelope.sender_user_id),
    };
    let Ok((chain_id, state)) = e2e::accept_sender_key(distribution) else {
        return Ok(false);
    };
    tx.save_received_sender_key(
        &audience,
        &envelope.sender_user_id,
        &envelope.sender_device_id,
        chain_id,
        &state,
    )?;
    Ok(true)
}
