//! The plain data the client hands to apps (uniffi records).

use juntos_proto::login::v1 as pb;
use juntos_proto::otp::v1 as otp;

/// A code was sent.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CodeRequest {
    /// Number of digits in the code.
    pub code_length: u32,
    /// Seconds until the code expires.
    pub expires_in_seconds: u32,
    /// Seconds until another code may be requested for this number.
    pub resend_after_seconds: u32,
}

impl From<otp::RequestCodeResponse> for CodeRequest {
    fn from(r: otp::RequestCodeResponse) -> Self {
        Self {
            code_length: r.code_length,
            expires_in_seconds: r.expires_in_seconds,
            resend_after_seconds: r.resend_after_seconds,
        }
    }
}

/// The account and device a sign-in landed on.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Account {
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// True when this sign-in created the account.
    pub new_account: bool,
}

/// Who this device is signed in as (from local state; no network).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SessionInfo {
    pub user_id: String,
    pub device_id: String,
}

/// One registered device of the account.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DeviceSummary {
    pub device_id: String,
    /// The name the device registered with.
    pub name: String,
}

impl From<pb::Device> for DeviceSummary {
    fn from(d: pb::Device) -> Self {
        Self {
            device_id: d.device_id,
            name: d.name,
        }
    }
}

/// The account as the server knows it.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Me {
    pub user_id: String,
    /// This device's id.
    pub device_id: String,
    /// The account's phone number, E.164.
    pub phone: String,
    /// The account's active devices, this one included.
    pub devices: Vec<DeviceSummary>,
}

impl std::fmt::Debug for Me {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the phone number: Debug output ends up in logs.
        f.debug_struct("Me")
            .field("user_id", &self.user_id)
            .field("device_id", &self.device_id)
            .field("devices", &self.devices)
            .finish_non_exhaustive()
    }
}

impl From<pb::MeResponse> for Me {
    fn from(r: pb::MeResponse) -> Self {
        Self {
            user_id: r.user_id,
            device_id: r.device_id,
            phone: r.phone,
            devices: r.devices.into_iter().map(DeviceSummary::from).collect(),
        }
    }
}

/// Where an outgoing message is, or that an incoming one was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum MessageStatus {
    /// Waiting in the outbox (offline, or not yet sent).
    Queued,
    /// Stored by the server.
    Sent,
    /// On at least one of the recipient's devices.
    Delivered,
    /// Read on at least one of the recipient's devices (or, incoming, read here).
    Read,
    /// Could not be sent (refused by the server); it will not be retried.
    Failed,
    /// Incoming and not yet read here.
    Received,
}

impl MessageStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed => "failed",
            Self::Received => "received",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "queued" => Self::Queued,
            "sent" => Self::Sent,
            "delivered" => Self::Delivered,
            "read" => Self::Read,
            "failed" => Self::Failed,
            _ => Self::Received,
        }
    }

    /// Outgoing progress only moves forward: queued < sent < delivered < read.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Self::Queued | Self::Failed | Self::Received => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Read => 3,
        }
    }
}

/// One user's reaction to a message.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MessageReaction {
    pub user_id: String,
    pub emoji: String,
}

/// A message in the local history.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct Message {
    /// Chosen by the sending device; the id replies, edits, deletes and reactions refer to.
    pub message_id: String,
    /// The other user of the conversation (for a group message, the group id).
    pub conversation_user_id: String,
    /// The group, for a group message.
    pub group_id: Option<String>,
    pub sender_user_id: String,
    pub sender_device_id: String,
    /// Sent by this account (from this or another of its devices).
    pub outgoing: bool,
    /// The text; empty once deleted for everyone.
    pub body: String,
    /// The message this replies to.
    pub quoted_message_id: Option<String>,
    pub forwarded: bool,
    pub status: MessageStatus,
    /// The sender's clock when written, Unix ms.
    pub sent_at_ms: i64,
    /// The server's clock when stored, Unix ms (once known).
    pub server_time_ms: Option<i64>,
    pub edited: bool,
    pub deleted: bool,
    pub reactions: Vec<MessageReaction>,
    /// A picture, video, voice note or file sent with the message (`body` is its caption).
    pub attachment: Option<AttachmentInfo>,
}

/// What a message's attachment is (the blob itself is fetched with `client.media().download`).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentInfo {
    pub file_name: String,
    pub mime_type: String,
    /// Bytes.
    pub size: u64,
    /// A picture's size in pixels (0 when unknown).
    pub width: u32,
    pub height: u32,
    /// A small JPEG preview of a picture (empty when none).
    pub thumbnail: Vec<u8>,
    /// Where this device has the file: the sender's own file, or where it was downloaded.
    pub local_path: Option<String>,
}

impl std::fmt::Debug for AttachmentInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the name or preview: Debug output ends up in logs.
        f.debug_struct("AttachmentInfo")
            .field("mime_type", &self.mime_type)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Told how a transfer (an upload or a download) goes; implemented by the app.
#[uniffi::export(with_foreign)]
pub trait TransferListener: Send + Sync {
    /// `done` of `total` bytes have moved.
    fn on_progress(&self, done: u64, total: u64);
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the text: Debug output ends up in logs.
        f.debug_struct("Message")
            .field("message_id", &self.message_id)
            .field("outgoing", &self.outgoing)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A conversation in the local history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Conversation {
    pub user_id: String,
    /// The phone number, when this device resolved it.
    pub phone: Option<String>,
    pub last_message_id: String,
    pub unread: u32,
}

/// Something the app should know about, delivered through [`EventListener`].
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum Event {
    /// A new message arrived (or another device of this account sent one).
    MessageReceived { message: Message },
    /// A message changed: edited, deleted, reacted to, or its status moved.
    MessageChanged { message: Message },
    /// A message could not be sent and will not be retried.
    SendFailed { message_id: String, error: String },
    /// Something arrived that could not be decrypted (it is dropped).
    Undecryptable {
        sender_user_id: String,
        sender_device_id: String,
    },
    /// The live connection to the server is up.
    Connected,
    /// The live connection dropped; the client reconnects by itself.
    Disconnected { reason: String },
    /// A followed user's presence changed (see `client.presence().follow`).
    PresenceChanged { presence: PresenceInfo },
    /// A group this account is in changed (a notice signed by the chat service).
    GroupChanged { notice: GroupNoticeInfo },
    /// Someone saw one of this account's statuses.
    StatusSeen {
        status_id: String,
        viewer_user_id: String,
    },
}

/// Who a status is for.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum StatusAudience {
    /// Every contact (everyone this device found by phone number).
    Contacts,
    /// Every contact but these (E.164 numbers or user ids).
    ContactsExcept { excluded: Vec<String> },
    /// Only these (E.164 numbers or user ids).
    Only { members: Vec<String> },
}

/// A status (24 hours from posting), decrypted.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct StatusInfo {
    /// The server's id.
    pub status_id: String,
    pub poster_user_id: String,
    pub text: String,
    /// Unix ms.
    pub posted_ms: i64,
    /// Unix ms; gone everywhere after this.
    pub expires_ms: i64,
    /// Posted by this account.
    pub own: bool,
    /// Viewed by this account (always true for its own).
    pub viewed: bool,
    /// For this account's own statuses: who saw it (user ids, first first).
    pub seen_by: Vec<String>,
    /// A picture or video shown with the status (`text` is its caption); fetch it with
    /// `client.media().download(status_id)`.
    pub attachment: Option<AttachmentInfo>,
}

impl std::fmt::Debug for StatusInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the text: Debug output ends up in logs.
        f.debug_struct("StatusInfo")
            .field("status_id", &self.status_id)
            .field("own", &self.own)
            .finish_non_exhaustive()
    }
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupMemberInfo {
    pub user_id: String,
    pub admin: bool,
}

/// A group as this device last saw it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupInfo {
    pub group_id: String,
    pub name: String,
    /// Raised by every change.
    pub version: u64,
    /// Whether this account is an admin.
    pub admin: bool,
    /// False once this account left or was removed.
    pub active: bool,
    /// Sorted by user id (empty when only a notice told this device of the group).
    pub members: Vec<GroupMemberInfo>,
}

/// What a group notice says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum GroupAction {
    Created,
    Added,
    Removed,
    Left,
    Promoted,
    Demoted,
    Renamed,
}

/// One change of a group, as the chat service announced it to every member.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupNoticeInfo {
    pub group_id: String,
    /// The group's version after the change.
    pub version: u64,
    /// Who made the change (for `Left`, who left).
    pub actor_user_id: String,
    pub action: GroupAction,
    /// Who was added, removed, promoted or demoted (for `Created`, the first members).
    pub subject_user_ids: Vec<String>,
    /// Members who became admins because no admin was left.
    pub promoted_user_ids: Vec<String>,
    /// The group's name after the change.
    pub name: String,
    /// The chat service's clock at the change, Unix ms.
    pub time_ms: i64,
    /// False once the last member left.
    pub exists: bool,
}

/// Who may see one thing about this user, among mutual contacts (both have each other's
/// number); nobody else ever does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Visibility {
    /// Every mutual contact (the default).
    Contacts,
    /// Nobody.
    Nobody,
}

/// This user's profile and privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Settings {
    /// Display name (empty: not set).
    pub name: String,
    /// About line (empty: not set).
    pub about: String,
    /// Who sees when this user is online and was last seen.
    pub presence: Visibility,
    /// Who sees the name and about line.
    pub profile: Visibility,
}

/// Another user's profile, as this user may see it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ProfileInfo {
    pub user_id: String,
    pub name: String,
    pub about: String,
}

/// Another user's presence, as this user may see it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PresenceInfo {
    pub user_id: String,
    /// False: this user may no longer see it; forget what was shown.
    pub visible: bool,
    pub online: bool,
    /// When last seen online, Unix milliseconds; `None` while online or when never seen.
    pub last_seen_ms: Option<i64>,
}

impl From<juntos_proto::chat::v1::Presence> for PresenceInfo {
    fn from(p: juntos_proto::chat::v1::Presence) -> Self {
        Self {
            user_id: p.user_id,
            visible: p.visible,
            online: p.online,
            last_seen_ms: (p.last_seen_ms > 0).then_some(p.last_seen_ms),
        }
    }
}

/// Receives [`Event`]s; implemented by the app (in Kotlin, Swift, Python or Rust).
#[uniffi::export(with_foreign)]
pub trait EventListener: Send + Sync {
    fn on_event(&self, event: Event);
}
