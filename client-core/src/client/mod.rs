//! The uniffi layer: [`Client`], the object apps hold, and the handles it hands out for groups,
//! media, statuses, presence and the profile. Each is a thin wrapper over the device they share
//! ([`Shared`]): it checks nothing and decides nothing, it only names the work for the apps
//! (Kotlin, Swift, Python) and `juntos-cli`. The account (sign-in, sign-out, me) and core
//! messaging (send, history, listen, sync, the outbox) are on the client itself.

mod groups;
mod media;
mod presence;
mod profile;
mod statuses;

use std::path::PathBuf;
use std::sync::Arc;

use juntos_clock::{SharedClock, SystemClock};

pub use self::groups::Groups;
pub use self::media::Media;
pub use self::presence::Presence;
pub use self::profile::Profile;
pub use self::statuses::Statuses;
use crate::config::ClientConfig;
use crate::error::Result;
use crate::model::records::{
    Account, CodeRequest, Conversation, EventListener, Me, Message, SessionInfo,
};
use crate::shared::Shared;

/// A Juntos client: one device, its local state in `<home_dir>/client.db`, and its connection to
/// one server (the gateway).
#[derive(Debug, uniffi::Object)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

#[uniffi::export(async_runtime = "tokio")]
impl Client {
    /// A client for the gateway at `server_url` (`https://host[:port]`, trusting the web PKI
    /// roots; or `http://host:port` for a server on this machine) keeping its state in
    /// `home_dir` (created if missing). Does not touch the network: it connects on first use.
    #[uniffi::constructor]
    pub fn new(server_url: String, home_dir: String) -> Result<Arc<Self>> {
        Self::with_clock(&server_url, home_dir, Arc::new(SystemClock))
    }

    /// A client as `config` says: [`Client::new`] plus the settings a self-hosted server needs
    /// (an extra CA or pinned certificate). A PEM that holds no valid certificate is
    /// [`ClientError::InvalidInput`](crate::ClientError::InvalidInput). Does not touch the
    /// network.
    #[uniffi::constructor]
    pub fn with_config(config: ClientConfig) -> Result<Arc<Self>> {
        Self::with_config_and_clock(config, Arc::new(SystemClock))
    }

    // --- the handles ---

    /// Groups: membership, group messages and their history.
    pub fn groups(&self) -> Arc<Groups> {
        Arc::new(Groups::new(Arc::clone(&self.shared)))
    }

    /// Media: files sent to a user, and downloads of any message's attachment.
    pub fn media(&self) -> Arc<Media> {
        Arc::new(Media::new(Arc::clone(&self.shared)))
    }

    /// Statuses: posting, viewing and deleting them.
    pub fn statuses(&self) -> Arc<Statuses> {
        Arc::new(Statuses::new(Arc::clone(&self.shared)))
    }

    /// Presence: other users', asked once or followed.
    pub fn presence(&self) -> Arc<Presence> {
        Arc::new(Presence::new(Arc::clone(&self.shared)))
    }

    /// The profile: this user's (name, about line, photo, privacy) and others'.
    pub fn profile(&self) -> Arc<Profile> {
        Arc::new(Profile::new(Arc::clone(&self.shared)))
    }

    // --- the account ---

    /// Asks the server to text a sign-in code to `phone` (E.164, e.g. "+12015550123").
    pub async fn request_code(&self, phone: String) -> Result<CodeRequest> {
        self.shared.request_code(phone).await
    }

    /// Signs this device in with the `code` texted to `phone`, registering it as `device_name`.
    ///
    /// The device's identity keys are made on the first try and kept, so a retried sign-in
    /// presents the same keys.
    pub async fn sign_in(
        &self,
        phone: String,
        code: String,
        device_name: String,
    ) -> Result<Account> {
        self.shared.sign_in(phone, code, device_name).await
    }

    /// Signs this device out: the server revokes its session and removes the device, then the
    /// local session and identity keys are deleted. A session the server had already ended
    /// counts as signed out. On a network error nothing local changes, so it can be retried.
    pub async fn sign_out(&self) -> Result<()> {
        self.shared.sign_out().await
    }

    /// The account, this device and the account's devices, from the server.
    pub async fn me(&self) -> Result<Me> {
        self.shared.me().await
    }

    /// Whether this device has a session (local state; no network).
    pub fn is_signed_in(&self) -> bool {
        self.session().is_some()
    }

    /// The local session's user and device, if signed in (no network).
    pub fn session(&self) -> Option<SessionInfo> {
        self.shared.session_info()
    }

    // --- messaging ---

    /// Starts messaging in the background: publishes prekeys if needed, keeps a live connection
    /// that receives messages (reconnecting with backoff), and drains the outbox whenever the
    /// network allows. Events go to `listener`. It ends on [`Client::stop`], on sign-out, when
    /// the server ends the session, or when another connection of this device takes over; call
    /// `stop` before dropping the client.
    pub async fn start(&self, listener: Option<Arc<dyn EventListener>>) -> Result<()> {
        Arc::clone(&self.shared).start(listener).await
    }

    /// Stops the background connection and outbox worker (queued sends stay queued).
    pub fn stop(&self) {
        self.shared.runtime.stop();
    }

    /// Sends `text` to `peer` (an E.164 number or a user id). Returns the queued message at once;
    /// its status moves to sent, delivered and read as that happens (see the events).
    pub async fn send_text(&self, peer: String, text: String) -> Result<Message> {
        self.shared.send_text(peer, text).await
    }

    /// Replies to `quoted_message_id` with `text`, in the conversation with `peer`.
    pub async fn reply(
        &self,
        peer: String,
        quoted_message_id: String,
        text: String,
    ) -> Result<Message> {
        self.shared.reply(peer, quoted_message_id, text).await
    }

    /// Forwards the text of `message_id` to `peer`, marked as forwarded.
    pub async fn forward(&self, peer: String, message_id: String) -> Result<Message> {
        self.shared.forward(peer, message_id).await
    }

    /// Replaces the text of one of this account's messages, on every device of both users.
    pub async fn edit(&self, message_id: String, text: String) -> Result<Message> {
        self.shared.edit(message_id, text).await
    }

    /// Deletes one of this account's messages for everyone.
    pub async fn delete_for_everyone(&self, message_id: String) -> Result<Message> {
        self.shared.delete_for_everyone(message_id).await
    }

    /// Reacts to a message with one emoji (empty removes this account's reaction).
    pub async fn react(&self, message_id: String, emoji: String) -> Result<Message> {
        self.shared.react(message_id, emoji).await
    }

    /// Marks the conversation with `peer` read here and tells the sender (read receipts).
    pub async fn mark_read(&self, peer: String) -> Result<u32> {
        self.shared.mark_read(peer).await
    }

    /// The newest `limit` messages with `peer`, oldest first.
    pub async fn history(&self, peer: String, limit: u32) -> Result<Vec<Message>> {
        self.shared.history(peer, limit).await
    }

    /// Every conversation, most recent first.
    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        self.shared.conversations()
    }

    /// Sends everything queued now; the number of sends still waiting (0 when all went).
    pub async fn flush_outbox(&self) -> Result<u64> {
        self.shared.flush_outbox().await
    }

    /// Receives once without a live connection (for clients that poll): fetches, applies and
    /// acknowledges everything waiting. The number of envelopes processed.
    pub async fn sync_now(&self) -> Result<u64> {
        self.shared.sync_mailbox().await
    }

    /// The safety number of this account and `peer`: 60 digits both users see alike when no
    /// one is in the middle. Compare it in person or over a call.
    pub async fn safety_number(&self, peer: String) -> Result<String> {
        self.shared.safety_number(peer).await
    }
}

// === Rust only ===

impl Client {
    /// [`Client::new`] with a given clock (tests move it to exercise token expiry).
    pub fn with_clock(
        server_url: &str,
        home_dir: impl Into<PathBuf>,
        clock: SharedClock,
    ) -> Result<Arc<Self>> {
        let shared = Shared::open(server_url, None, home_dir.into(), clock)?;
        Ok(Arc::new(Self {
            shared: Arc::new(shared),
        }))
    }

    /// [`Client::with_config`] with a given clock.
    pub fn with_config_and_clock(config: ClientConfig, clock: SharedClock) -> Result<Arc<Self>> {
        let shared = Shared::open(
            &config.server_url,
            config.extra_ca_pem.as_deref(),
            config.home_dir.into(),
            clock,
        )?;
        Ok(Arc::new(Self {
            shared: Arc::new(shared),
        }))
    }
}

#[cfg(test)]
mod tests;
