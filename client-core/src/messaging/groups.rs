//! Groups: membership through the chat service's `Groups` API, group messages encrypted once
//! with this device's sender key and fanned out by the server, and the signed notices that keep
//! every member device's view current.
//!
//! Sending (an outbox item with a group id): this device's chain for the group
//! (`sender_keys.rs`) is made if there is none, and made again if any device that holds it is no
//! longer a member device (so someone who left never reads what follows); every member device
//! that lacks it gets it over the pairwise sessions (`Chat.Send`, stored before the group message, so it arrives first); then
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

use super::apply::{Processed, apply_content};
use super::e2e;
use super::limits::{check_group_id, check_text, within_bounds};
use super::pairwise::{Outcome, STALE_ROUNDS, refusal};
use super::queue::To;
use super::sender_keys::{Chain, Keyed};
use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::gateway::Call;
use crate::model::content::{self, Body, Content};
use crate::model::records::{
    Event, GroupAction, GroupInfo, GroupMemberInfo, GroupNoticeInfo, Message,
};
use crate::shared::Shared;
use crate::store::groups::{self as gdb, GroupSnapshot};
use crate::store::messaging as db;

/// Most group ids a listing fetches in one call.
const LIST_PAGE: u32 = 1_000;
/// Most members of a group (the chat service's cap).
const MAX_MEMBERS: usize = 1_024;

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

// === what the app asks ===

impl Shared {
    /// Creates a group named `name` with this account as admin and `members` (E.164 numbers or
    /// user ids) in it.
    pub(crate) async fn create_group(
        &self,
        name: String,
        members: Vec<String>,
    ) -> Result<GroupInfo> {
        let member_user_ids = self.resolve_members(&members).await?;
        let request = chat::CreateGroupRequest {
            name,
            member_user_ids,
        };
        let answer = self.gateway.unary(Api::create_group, request).await?;
        self.save_answer(answer.group)
    }

    /// Adds `members` (numbers or user ids) to a group (admins only).
    pub(crate) async fn add_group_members(
        &self,
        group_id: String,
        members: Vec<String>,
    ) -> Result<GroupInfo> {
        let answer = self
            .members_call(&group_id, &members, Api::add_members)
            .await?;
        self.save_answer(answer.group)
    }

    /// Removes `members` (numbers or user ids) from a group (admins only). The removed
    /// members' devices get nothing sent after this.
    pub(crate) async fn remove_group_members(
        &self,
        group_id: String,
        members: Vec<String>,
    ) -> Result<GroupInfo> {
        let answer = self
            .members_call(&group_id, &members, Api::remove_members)
            .await?;
        // Whoever left must not read what this device sends next.
        self.store.write(|tx| tx.forget_own_sender_key(&group_id))?;
        match answer.group {
            Some(group) => self.save_answer(Some(group)),
            None => self.left(&group_id),
        }
    }

    /// Leaves a group.
    pub(crate) async fn leave_group(&self, group_id: String) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::LeaveGroupRequest {
            group_id: group_id.clone(),
        };
        self.group_call(&group_id, Api::leave_group, request)
            .await?;
        self.left(&group_id)
    }

    /// Makes `members` admins of a group, or plain members (admins only).
    pub(crate) async fn set_group_admins(
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
        let answer = self.group_call(&group_id, Api::set_admins, request).await?;
        self.save_answer(answer.group)
    }

    /// Renames a group (admins only).
    pub(crate) async fn rename_group(&self, group_id: String, name: String) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        let request = chat::RenameGroupRequest {
            group_id: group_id.clone(),
            name,
        };
        let answer = self
            .group_call(&group_id, Api::rename_group, request)
            .await?;
        self.save_answer(answer.group)
    }

    /// One group, fetched from the server (members only).
    pub(crate) async fn group(&self, group_id: String) -> Result<GroupInfo> {
        check_group_id(&group_id)?;
        Ok(self.fetch_group(&group_id).await?.info)
    }

    /// The groups this account is in (from the server), then those it left, by name.
    pub(crate) async fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut after = String::new();
        loop {
            let request = chat::ListGroupsRequest {
                after_group_id: after.clone(),
                limit: LIST_PAGE,
            };
            let page = self.gateway.unary(Api::list_groups, request).await?;
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
    pub(crate) async fn send_group_text(&self, group_id: String, text: String) -> Result<Message> {
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
    pub(crate) async fn group_history(&self, group_id: String, limit: u32) -> Result<Vec<Message>> {
        check_group_id(&group_id)?;
        self.store
            .read(|c| db::history(c, &group_id, limit.clamp(1, 10_000)))
    }
}

// === membership ===

impl Shared {
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

    /// `Api::add_members` or `Api::remove_members` with `members` (numbers or user ids) of a
    /// group, through [`Self::group_call`].
    async fn members_call<C>(
        &self,
        group_id: &str,
        members: &[String],
        call: C,
    ) -> Result<chat::GroupResponse>
    where
        C: for<'a> Call<'a, chat::MembersRequest, chat::GroupResponse> + Sync,
    {
        check_group_id(group_id)?;
        let request = chat::MembersRequest {
            group_id: group_id.to_owned(),
            user_ids: self.resolve_members(members).await?,
        };
        self.group_call(group_id, call, request).await
    }

    /// A call about one group; NOT_A_MEMBER marks it left here.
    async fn group_call<Request, Answer, C>(
        &self,
        group_id: &str,
        call: C,
        request: Request,
    ) -> Result<Answer>
    where
        Request: Clone + Send + Sync,
        C: for<'a> Call<'a, Request, Answer> + Sync,
    {
        match self.gateway.unary_status(call, request).await? {
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
        let answer = self.gateway.unary_status(Api::get_group, request).await?;
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

impl Shared {
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
            let answer = self.gateway.unary_status(Api::send_group, request).await?;
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
}

// === receiving ===

impl Shared {
    /// A group message: decrypted with the sending device's chain and filed in the group.
    pub(super) async fn apply_group_message(&self, envelope: &chat::Envelope) -> Result<Processed> {
        let group_id = envelope.group_id.as_str();
        if check_group_id(group_id).is_err() {
            return Ok(Processed::Dropped);
        }
        let (me, _) = self.me_ids()?;
        let Ok(chain_id) = e2e::group_chain_of(&envelope.ciphertext) else {
            return Ok(Processed::Dropped);
        };
        let ad = e2e::group_associated_data(
            group_id,
            &envelope.sender_user_id,
            &envelope.sender_device_id,
        );
        let now = self.clock.now_ms();
        let _crypto = self.runtime.crypto();
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
            return Ok(Processed::Dropped);
        };
        let (plaintext, next) = match e2e::group_decrypt(&state, &envelope.ciphertext, &ad, now) {
            Ok(done) => done,
            Err(e) if e.is_duplicate() || e.predates_membership() => return Ok(Processed::Done),
            Err(e) => {
                tracing::debug!(error = %e, "group message did not decrypt");
                return Ok(Processed::Dropped);
            }
        };
        let Some(content) = Content::decode_bytes(&plaintext) else {
            return Ok(Processed::Dropped);
        };
        let allowed = matches!(
            content.body,
            Some(Body::Text(_) | Body::Edit(_) | Body::Delete(_) | Body::Reaction(_))
        );
        if content.from_user_id != envelope.sender_user_id
            || content.to_user_id != group_id
            || !allowed
            || !within_bounds(&content)
        {
            return Ok(Processed::Dropped);
        }
        let own = envelope.sender_user_id == me;
        let events = self.store.write(|tx| {
            tx.update_received_sender_key(group_id, &envelope.sender_device_id, chain_id, &next)?;
            let (events, _) = apply_content(tx, envelope, &content, group_id, own, true)?;
            Ok(events)
        })?;
        for event in events {
            self.emit(event);
        }
        Ok(Processed::Done)
    }

    /// A notice: checked against the chat service's key, then applied.
    pub(super) async fn apply_notice(&self, envelope: &chat::Envelope) -> Result<Processed> {
        let Ok(signed) = chat::SignedGroupNotice::decode(&envelope.ciphertext[..]) else {
            return Ok(Processed::Dropped);
        };
        let Some(key) = self.notice_key(&signed.key_id).await? else {
            return Ok(Processed::Dropped);
        };
        if !e2e::verify_notice(&key, &signed.notice, &signed.signature) {
            return Ok(Processed::Dropped);
        }
        let Ok(notice) = chat::GroupNotice::decode(&signed.notice[..]) else {
            return Ok(Processed::Dropped);
        };
        let Some(action) = action_of(notice.action()) else {
            return Ok(Processed::Dropped);
        };
        if notice.group_id != envelope.group_id || check_group_id(&notice.group_id).is_err() {
            return Ok(Processed::Dropped);
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
        Ok(Processed::Done)
    }

    /// The notice key `key_id`, fetching the service's keys once when it is new here.
    async fn notice_key(&self, key_id: &str) -> Result<Option<[u8; 32]>> {
        if key_id.is_empty() || key_id.len() > 64 {
            return Ok(None);
        }
        if let Some(key) = self.store.read(|c| gdb::notice_key(c, key_id))? {
            return Ok(Some(key));
        }
        let answer = self
            .gateway
            .unary(Api::get_notice_keys, chat::GetNoticeKeysRequest {})
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
