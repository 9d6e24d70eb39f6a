//! Groups (`juntos.chat.v1.Groups`): membership, group sends fanned out to every member device,
//! and the signed notices that tell members what changed.
//!
//! A change is computed from the group as read ([`apply`], pure), then written with its notices
//! on condition that the group still has the version it was read at; a concurrent change makes
//! the write miss, and the change is computed again from the newer group. Notices go to every
//! device of every member before and after the change (so a removed member learns it), in the
//! same transaction, so they are ordered with the messages in every mailbox.
//!
//! A group send names the member devices its sender gave its sender key to, as a digest
//! ([`devices_digest`]); a send whose digest is not the group's current one is refused as
//! STALE_GROUP, so a sender never writes to a member it has not keyed (or keyed one who left).
//! The store refuses a send whose group changed since its recipients were read, so nothing sent
//! after a removal reaches the removed member.

use std::collections::BTreeSet;

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use juntos_proto::chat::v1::{GroupNotice, NoticeAction, SignedGroupNotice};
use juntos_proto::meta::Caller;
use prost::Message as _;
use sha2::{Digest as _, Sha256};

use super::send::check_client_msg_id;
use super::{ChatService, MAX_ENVELOPE_BYTES, MAX_RECIPIENTS};
use crate::directory::DeviceMap;
use crate::error::{Error, Result};
use crate::store::{
    EnvelopeKind, Group, GroupListing, GroupMember, GroupRole, GroupWrite, OutgoingEnvelope,
    SendBatch, SendOutcome,
};

/// Most members of one group.
pub const MAX_GROUP_MEMBERS: usize = 1_024;
/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 100;
/// Most groups one user may be in.
pub const MAX_GROUPS_PER_USER: u64 = 1_000;
/// `ListGroups` page size when the request says 0.
pub const DEFAULT_LIST_LIMIT: u32 = 100;
/// Largest `ListGroups` page.
pub const MAX_LIST_LIMIT: u32 = 1_000;
/// Most users one `ActiveDevices` call to login may name.
const DIRECTORY_CHUNK: usize = 1_000;
/// How often a change or a group send is computed again after losing a race.
const MAX_ATTEMPTS: usize = 8;
/// Longest user id accepted in a group request (login's ids are far shorter).
const MAX_ID_LEN: usize = 128;

/// What a notice signature covers: this context, then the encoded `GroupNotice`.
pub const NOTICE_CONTEXT: &[u8] = b"juntos-group-notice-v1";

// === notice signing ===

/// The Ed25519 key the chat service signs notices with. Every chat pod must hold the same one
/// (`--notice-signing-key` or the shared data dir), so clients trust notices from any pod.
pub struct NoticeSigner {
    key: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for NoticeSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoticeSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl NoticeSigner {
    /// The signer with the key of `seed`; its id is the first 8 bytes of SHA-256 of the public
    /// key, in hex.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let key = SigningKey::from_bytes(seed);
        let key_id = hex::encode(&Sha256::digest(key.verifying_key().as_bytes())[..8]);
        Self { key, key_id }
    }

    /// A signer with a fresh random key (one process, or tests).
    pub fn random() -> Self {
        let mut seed = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
        Self::from_seed(&seed)
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The encoded `SignedGroupNotice` of `notice`.
    pub fn sign(&self, notice: &GroupNotice) -> Vec<u8> {
        let notice = notice.encode_to_vec();
        let mut signed = Vec::with_capacity(NOTICE_CONTEXT.len() + notice.len());
        signed.extend_from_slice(NOTICE_CONTEXT);
        signed.extend_from_slice(&notice);
        SignedGroupNotice {
            signature: self.key.sign(&signed).to_bytes().to_vec(),
            notice,
            key_id: self.key_id.clone(),
        }
        .encode_to_vec()
    }
}

// === the rules ===

/// One change of a group's membership, roles or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(Vec<String>),
    Remove(Vec<String>),
    Leave,
    SetAdmins { user_ids: Vec<String>, admin: bool },
    Rename(String),
}

/// A change worked out against one version of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The group after the change (no members: deleted).
    pub group: Group,
    pub action: NoticeAction,
    pub subjects: Vec<String>,
    /// Members made admins because the change left no admin.
    pub promoted: Vec<String>,
    /// Users added (who must exist and have room for another group).
    pub added: Vec<String>,
}

/// Works out `change` by `actor` on `group` at `now_ms`: `None` when it changes nothing.
pub fn apply(group: &Group, actor: &str, change: &Change, now_ms: i64) -> Result<Option<Applied>> {
    let me = group.member(actor).ok_or(Error::NotAMember)?;
    // Every change but leaving is an admin's.
    if me.role != GroupRole::Admin && *change != Change::Leave {
        return Err(Error::NotAnAdmin);
    }
    let mut next = group.clone();
    next.version = group.version + 1;
    let (action, subjects, added) = match change {
        Change::Add(user_ids) => {
            let added: Vec<String> = user_ids
                .iter()
                .filter(|u| group.member(u).is_none())
                .cloned()
                .collect();
            let count = group.members.len() + added.len();
            if count > MAX_GROUP_MEMBERS {
                return Err(Error::TooManyMembers {
                    count,
                    limit: MAX_GROUP_MEMBERS,
                });
            }
            next.members.extend(added.iter().map(|user_id| GroupMember {
                user_id: user_id.clone(),
                role: GroupRole::Member,
                joined_ms: now_ms,
            }));
            next.members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
            (NoticeAction::Added, added.clone(), added)
        }
        Change::Remove(user_ids) => {
            let removed: Vec<String> = user_ids
                .iter()
                .filter(|u| group.member(u).is_some())
                .cloned()
                .collect();
            next.members.retain(|m| !removed.contains(&m.user_id));
            (NoticeAction::Removed, removed, Vec::new())
        }
        Change::Leave => {
            next.members.retain(|m| m.user_id != actor);
            (NoticeAction::Left, vec![actor.to_owned()], Vec::new())
        }
        Change::SetAdmins { user_ids, admin } => {
            let role = if *admin {
                GroupRole::Admin
            } else {
                GroupRole::Member
            };
            let mut changed = Vec::new();
            for user_id in user_ids {
                let member = next
                    .members
                    .iter_mut()
                    .find(|m| &m.user_id == user_id)
                    .ok_or(Error::InvalidGroup("a listed user is not a member"))?;
                if member.role != role {
                    member.role = role;
                    changed.push(user_id.clone());
                }
            }
            if !next.members.iter().any(|m| m.role == GroupRole::Admin) {
                return Err(Error::LastAdmin);
            }
            let action = if *admin {
                NoticeAction::Promoted
            } else {
                NoticeAction::Demoted
            };
            (action, changed, Vec::new())
        }
        Change::Rename(name) => {
            if *name == group.name {
                return Ok(None);
            }
            next.name = name.clone();
            (NoticeAction::Renamed, Vec::new(), Vec::new())
        }
    };
    if subjects.is_empty() && action != NoticeAction::Renamed {
        return Ok(None);
    }
    // A group with members always has an admin: the longest-standing member takes over.
    let mut promoted = Vec::new();
    if !next.members.is_empty() && !next.members.iter().any(|m| m.role == GroupRole::Admin) {
        let heir = next
            .members
            .iter_mut()
            .min_by(|a, b| (a.joined_ms, &a.user_id).cmp(&(b.joined_ms, &b.user_id)))
            .expect("not empty");
        heir.role = GroupRole::Admin;
        promoted.push(heir.user_id.clone());
    }
    Ok(Some(Applied {
        group: next,
        action,
        subjects,
        promoted,
        added,
    }))
}

/// SHA-256 over the lines `"<user_id> <device_id>\n"` of every device of every member of
/// `group` in `devices`, sorted bytewise: what `SendGroup` must name.
pub fn devices_digest(group: &Group, devices: &DeviceMap) -> [u8; 32] {
    let mut lines: Vec<String> = group
        .members
        .iter()
        .flat_map(|m| {
            devices
                .get(&m.user_id)
                .into_iter()
                .flatten()
                .map(move |d| format!("{} {d}\n", m.user_id))
        })
        .collect();
    lines.sort_unstable();
    let mut hash = Sha256::new();
    for line in &lines {
        hash.update(line.as_bytes());
    }
    hash.finalize().into()
}

/// A group name: trimmed, 1–100 characters, no control characters.
fn check_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_GROUP_NAME_CHARS {
        return Err(Error::InvalidGroup("a group name has 1-100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::InvalidGroup(
            "a group name cannot hold control characters",
        ));
    }
    Ok(name.to_owned())
}

/// A list of user ids: at most [`MAX_GROUP_MEMBERS`], each 1–128 bytes; duplicates dropped.
fn check_users(user_ids: Vec<String>) -> Result<Vec<String>> {
    if user_ids.len() > MAX_GROUP_MEMBERS {
        return Err(Error::TooManyMembers {
            count: user_ids.len(),
            limit: MAX_GROUP_MEMBERS,
        });
    }
    let mut seen = BTreeSet::new();
    let mut users = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        if user_id.is_empty() || user_id.len() > MAX_ID_LEN {
            return Err(Error::InvalidGroup("a user id is empty or too long"));
        }
        if seen.insert(user_id.clone()) {
            users.push(user_id);
        }
    }
    Ok(users)
}

fn check_group_id(group_id: &str) -> Result<()> {
    let valid = !group_id.is_empty()
        && group_id.len() <= MAX_ID_LEN
        && group_id.bytes().all(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        // No group can have this id: the caller is in no such group.
        Err(Error::NotAMember)
    }
}

// === the service ===

/// A group as a member sees it: with each member's active devices.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group: Group,
    pub devices: DeviceMap,
    pub digest: [u8; 32],
    /// The viewer's role.
    pub role: GroupRole,
}

impl GroupView {
    fn new(group: Group, mut devices: DeviceMap, viewer: &str) -> Self {
        devices.retain(|user, _| group.member(user).is_some());
        let digest = devices_digest(&group, &devices);
        let role = group.member(viewer).map_or(GroupRole::Member, |m| m.role);
        Self {
            group,
            devices,
            digest,
            role,
        }
    }
}

impl ChatService {
    /// The active devices of `users`, asking login at most [`DIRECTORY_CHUNK`] users at a time;
    /// `fresh` skips the directory's cache. Membership changes and `GetGroup` (rare, and what
    /// senders key their messages for) ask fresh; group sends use the cache and ask fresh only
    /// before refusing, as pairwise sends do.
    async fn devices_of(&self, users: &[String], fresh: bool) -> Result<DeviceMap> {
        let mut all = DeviceMap::with_capacity(users.len());
        for chunk in users.chunks(DIRECTORY_CHUNK) {
            let found = if fresh {
                self.directory.active_devices_fresh(chunk).await?
            } else {
                self.directory.active_devices(chunk).await?
            };
            all.extend(found);
        }
        Ok(all)
    }

    /// The group, if `caller` is a member of it.
    async fn group_of_member(&self, caller: &Caller, group_id: &str) -> Result<Group> {
        check_group_id(group_id)?;
        self.store
            .group(group_id)
            .await?
            .filter(|g| g.member(&caller.user_id).is_some())
            .ok_or(Error::NotAMember)
    }

    /// Refuses users that do not exist (absent from `devices`) or are in too many groups.
    async fn check_joiners(&self, joiners: &[String], devices: &DeviceMap) -> Result<()> {
        if let Some(missing) = joiners.iter().find(|u| !devices.contains_key(*u)) {
            return Err(Error::NoSuchUser {
                user_id: missing.clone(),
            });
        }
        let counts = self.store.group_counts(joiners).await?;
        if let Some((user_id, _)) = counts.iter().find(|(_, n)| **n >= MAX_GROUPS_PER_USER) {
            return Err(Error::TooManyGroups {
                user_id: user_id.clone(),
                limit: MAX_GROUPS_PER_USER,
            });
        }
        Ok(())
    }

    /// The notices of a change to every device in `devices`, signed.
    fn notices(&self, caller: &Caller, notice: &GroupNotice, devices: &DeviceMap) -> SendBatch {
        let signed = Bytes::from(self.notice_signer.sign(notice));
        let mut envelopes: Vec<OutgoingEnvelope> = devices
            .iter()
            .flat_map(|(user, ids)| {
                let signed = &signed;
                ids.iter().map(move |device| OutgoingEnvelope {
                    recipient_user_id: user.clone(),
                    recipient_device_id: device.clone(),
                    ciphertext: signed.clone(),
                })
            })
            .collect();
        envelopes.sort_by(|a, b| a.recipient_device_id.cmp(&b.recipient_device_id));
        SendBatch {
            sender_user_id: caller.user_id.clone(),
            sender_device_id: caller.device_id.clone(),
            client_msg_id: format!("notice-{}-{}", notice.group_id, notice.version),
            envelopes,
            now_ms: notice.time_ms,
            kind: EnvelopeKind::Notice,
            group_id: notice.group_id.clone(),
            group_version: None,
        }
    }

    /// Writes `applied` (a change by `caller` at `now_ms` of the group at `base_version`; `None`:
    /// a new group) with a signed notice of it to every device in `devices`, charging the
    /// caller's send rate for the fan-out, and rings those devices. Whether it was written
    /// (`false`: the group is no longer at `base_version`, or already exists).
    async fn write_change(
        &self,
        caller: &Caller,
        applied: &Applied,
        base_version: Option<u64>,
        devices: &DeviceMap,
        now_ms: i64,
    ) -> Result<bool> {
        let group = &applied.group;
        let notice = GroupNotice {
            group_id: group.group_id.clone(),
            version: group.version,
            actor_user_id: caller.user_id.clone(),
            action: applied.action.into(),
            subject_user_ids: applied.subjects.clone(),
            name: group.name.clone(),
            time_ms: now_ms,
            exists: !group.members.is_empty(),
            promoted_user_ids: applied.promoted.clone(),
        };
        let notices = self.notices(caller, &notice, devices);
        self.check_rate_n(&caller.user_id, fan_out_cost(notices.envelopes.len()))?;
        let recipients = device_ids(&notices);
        let written = self
            .store
            .write_group(GroupWrite {
                group: group.clone(),
                base_version,
                notices,
            })
            .await?;
        if written {
            self.ring(&recipients);
        }
        Ok(written)
    }

    /// `Groups.CreateGroup`: a new group with `caller` as admin and `member_user_ids`.
    pub async fn create_group(
        &self,
        caller: &Caller,
        name: &str,
        member_user_ids: Vec<String>,
    ) -> Result<GroupView> {
        let name = check_name(name)?;
        let mut others = check_users(member_user_ids)?;
        others.retain(|u| *u != caller.user_id);
        if others.len() + 1 > MAX_GROUP_MEMBERS {
            return Err(Error::TooManyMembers {
                count: others.len() + 1,
                limit: MAX_GROUP_MEMBERS,
            });
        }
        let now_ms = self.clock.now_ms();
        let mut everyone = others.clone();
        everyone.push(caller.user_id.clone());
        let devices = self.devices_of(&everyone, true).await?;
        self.check_joiners(&everyone, &devices).await?;

        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut id);
        let mut members: Vec<GroupMember> = everyone
            .iter()
            .map(|user_id| GroupMember {
                user_id: user_id.clone(),
                role: if *user_id == caller.user_id {
                    GroupRole::Admin
                } else {
                    GroupRole::Member
                },
                joined_ms: now_ms,
            })
            .collect();
        members.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        let created = Applied {
            group: Group {
                group_id: hex::encode(id),
                name,
                version: 1,
                created_ms: now_ms,
                members,
            },
            action: NoticeAction::Created,
            subjects: others,
            promoted: Vec::new(),
            added: everyone,
        };
        if !self
            .write_change(caller, &created, None, &devices, now_ms)
            .await?
        {
            // 128 random bits collided: never in practice.
            return Err(Error::GroupBusy);
        }
        Ok(GroupView::new(created.group, devices, &caller.user_id))
    }

    /// A change of membership, roles or name by `caller`; the group after it (`None` when the
    /// caller left, or the group is gone).
    pub async fn change_group(
        &self,
        caller: &Caller,
        group_id: &str,
        change: Change,
    ) -> Result<Option<GroupView>> {
        let change = match change {
            Change::Add(users) => Change::Add(check_users(users)?),
            Change::Remove(users) => Change::Remove(check_users(users)?),
            Change::SetAdmins { user_ids, admin } => Change::SetAdmins {
                user_ids: check_users(user_ids)?,
                admin,
            },
            Change::Rename(name) => Change::Rename(check_name(&name)?),
            Change::Leave => Change::Leave,
        };
        for _ in 0..MAX_ATTEMPTS {
            let group = self.group_of_member(caller, group_id).await?;
            let now_ms = self.clock.now_ms();
            let Some(applied) = apply(&group, &caller.user_id, &change, now_ms)? else {
                let devices = self.devices_of(&member_ids(&group), true).await?;
                return Ok(Some(GroupView::new(group, devices, &caller.user_id)));
            };
            // Everyone before and after the change hears of it.
            let concerned: BTreeSet<String> = member_ids(&group)
                .into_iter()
                .chain(member_ids(&applied.group))
                .collect();
            let concerned: Vec<String> = concerned.into_iter().collect();
            let devices = self.devices_of(&concerned, true).await?;
            self.check_joiners(&applied.added, &devices).await?;
            let written = self
                .write_change(caller, &applied, Some(group.version), &devices, now_ms)
                .await?;
            if written {
                let still_member = applied.group.member(&caller.user_id).is_some();
                return Ok(
                    still_member.then(|| GroupView::new(applied.group, devices, &caller.user_id))
                );
            }
            // Another change came first: work this one out again on the newer group.
        }
        Err(Error::GroupBusy)
    }

    /// `Groups.GetGroup`.
    pub async fn get_group(&self, caller: &Caller, group_id: &str) -> Result<GroupView> {
        let group = self.group_of_member(caller, group_id).await?;
        let devices = self.devices_of(&member_ids(&group), true).await?;
        Ok(GroupView::new(group, devices, &caller.user_id))
    }

    /// `Groups.ListGroups`: a page of the caller's groups after `after_group_id`.
    pub async fn list_groups(
        &self,
        caller: &Caller,
        after_group_id: &str,
        limit: u32,
    ) -> Result<(Vec<GroupListing>, bool)> {
        if after_group_id.len() > MAX_ID_LEN {
            return Err(Error::InvalidGroup("after_group_id is too long"));
        }
        let limit = match limit {
            0 => DEFAULT_LIST_LIMIT,
            n => n.min(MAX_LIST_LIMIT),
        };
        Ok(self
            .store
            .groups_of(&caller.user_id, after_group_id, limit)
            .await?)
    }

    /// `Groups.SendGroup`: stores `ciphertext` for every member device but the caller's, if
    /// `digest` names the group's current member devices. Returns the server time of the
    /// (first) store.
    pub async fn send_group(
        &self,
        caller: &Caller,
        group_id: &str,
        client_msg_id: String,
        ciphertext: Bytes,
        digest: &[u8],
    ) -> Result<i64> {
        check_client_msg_id(&client_msg_id)?;
        if ciphertext.is_empty() {
            return Err(Error::InvalidEnvelope(
                "a group message has an empty ciphertext",
            ));
        }
        if ciphertext.len() > MAX_ENVELOPE_BYTES {
            return Err(Error::EnvelopeTooLarge {
                size: ciphertext.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        self.check_rate(&caller.user_id)?;
        let mut charged = false;
        for _ in 0..MAX_ATTEMPTS {
            let group = match self.group_of_member(caller, group_id).await {
                Ok(group) => group,
                // A retry of a message stored before the sender left gets its answer.
                Err(Error::NotAMember) => {
                    return match self.store.sent_at(&caller.user_id, &client_msg_id).await? {
                        Some(time) => Ok(time),
                        None => Err(Error::NotAMember),
                    };
                }
                Err(e) => return Err(e),
            };
            let users = member_ids(&group);
            let mut devices = self.devices_of(&users, false).await?;
            if devices_digest(&group, &devices)[..] != *digest {
                // The cache may be behind the client: ask again before refusing.
                devices = self.devices_of(&users, true).await?;
                if devices_digest(&group, &devices)[..] != *digest {
                    if let Some(time) = self.store.sent_at(&caller.user_id, &client_msg_id).await? {
                        return Ok(time);
                    }
                    return Err(Error::StaleGroup {
                        version: group.version,
                    });
                }
            }
            let mut envelopes: Vec<OutgoingEnvelope> = Vec::new();
            for (user, ids) in &devices {
                for device in ids.iter().filter(|d| **d != caller.device_id) {
                    envelopes.push(OutgoingEnvelope {
                        recipient_user_id: user.clone(),
                        recipient_device_id: device.clone(),
                        ciphertext: ciphertext.clone(),
                    });
                }
            }
            envelopes.sort_by(|a, b| a.recipient_device_id.cmp(&b.recipient_device_id));
            if !charged {
                // One send was taken above; the rest of what this fan-out costs now.
                self.check_rate_n(&caller.user_id, fan_out_cost(envelopes.len()) - 1)?;
                charged = true;
            }
            let batch = SendBatch {
                sender_user_id: caller.user_id.clone(),
                sender_device_id: caller.device_id.clone(),
                client_msg_id: client_msg_id.clone(),
                envelopes,
                now_ms: self.clock.now_ms(),
                kind: EnvelopeKind::Group,
                group_id: group.group_id.clone(),
                group_version: Some(group.version),
            };
            let recipients = device_ids(&batch);
            match self.store.send(batch).await? {
                SendOutcome::Stored { server_time_ms, .. } => {
                    self.ring(&recipients);
                    return Ok(server_time_ms);
                }
                SendOutcome::Duplicate { server_time_ms } => return Ok(server_time_ms),
                // Changed between the read and the write: read it again.
                SendOutcome::StaleGroup => {}
            }
        }
        Err(Error::GroupBusy)
    }

    /// The notice keys clients verify notices with.
    pub fn notice_keys(&self) -> Vec<(String, [u8; 32])> {
        vec![(
            self.notice_signer.key_id().to_owned(),
            self.notice_signer.public_key(),
        )]
    }
}

/// What writing to `devices` mailboxes costs of the sender's send rate: one per
/// [`MAX_RECIPIENTS`] devices (what the pairwise sends reaching them would cost), at least one.
fn fan_out_cost(devices: usize) -> usize {
    devices.div_ceil(MAX_RECIPIENTS).max(1)
}

fn member_ids(group: &Group) -> Vec<String> {
    group.members.iter().map(|m| m.user_id.clone()).collect()
}

fn device_ids(batch: &SendBatch) -> Vec<String> {
    batch
        .envelopes
        .iter()
        .map(|e| e.recipient_device_id.clone())
        .collect()
}

#[cfg(test)]
mod tests;
