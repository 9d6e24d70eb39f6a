//! Statuses: texts that vanish 24 hours after posting, encrypted once with this device's status
//! chain (a sender key, like a group's) for the audience the user picks.
//!
//! Posting: the audience (every contact, every contact but some, or only some) is resolved to
//! user ids; every device of theirs (and this account's other devices) gets the status chain
//! over the pairwise sessions first, and the chain is started anew when a device that holds it
//! is not in the audience any more (so someone left out reads nothing from then on); then the
//! status is encrypted once and posted, and the server lets only the audience fetch it. The
//! server answers the 101st status of a rolling 24 hours with RESOURCE_EXHAUSTED: the app sees
//! `ClientError::RateLimited` with the wait until the next slot frees.
//!
//! Viewing: a listing reads what the server holds for this account, decrypts what is new with
//! the posters' chains (received in the mailbox: sync first) and forgets what expired or was
//! deleted. Viewing one sends the poster an encrypted "seen".

use juntos_proto::media::v1 as media;

use super::e2e;
use super::limits::{MAX_TEXT_BYTES, attachment_within_bounds, check_text};
use super::queue::queue_in;
use super::sender_keys::{Chain, Keyed};
use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::model::content::{self, Body, Content};
use crate::model::records::{StatusAudience, StatusInfo, TransferListener};
use crate::shared::Shared;
use crate::store::groups::{self as gdb, status_audience};
use crate::store::statuses as sdb;

/// Most users a status may be addressed to (the server's cap).
const MAX_AUDIENCE: usize = 5_000;
/// Statuses per listing page.
const LIST_PAGE: u32 = 500;
/// Pages one listing reads at most; a longer listing keeps what it did not reach.
const MAX_LIST_PAGES: usize = 20;

impl Shared {
    /// Posts `text` as a status for `audience`; it expires 24 hours from now.
    pub(crate) async fn post_status(
        &self,
        text: String,
        audience: StatusAudience,
    ) -> Result<StatusInfo> {
        check_text(&text)?;
        self.post_status_with(text, None, audience).await
    }

    /// Posts the picture or video at `path` as a status, with `caption`: encrypted and uploaded
    /// first (see `send_file`); the server deletes it with the status after 24 hours.
    pub(crate) async fn post_status_media(
        &self,
        path: String,
        caption: String,
        audience: StatusAudience,
        progress: Option<std::sync::Arc<dyn TransferListener>>,
    ) -> Result<StatusInfo> {
        check_text(&caption)?;
        let attachment = self
            .upload_file(std::path::Path::new(&path), progress)
            .await?;
        let local = std::fs::canonicalize(&path).ok();
        let local = local
            .as_deref()
            .and_then(std::path::Path::to_str)
            .map(str::to_owned);
        self.post_status_with(caption, Some((attachment, local)), audience)
            .await
    }

    async fn post_status_with(
        &self,
        text: String,
        attachment: Option<(content::Attachment, Option<String>)>,
        audience: StatusAudience,
    ) -> Result<StatusInfo> {
        let (me, my_device) = self.me_ids()?;
        let audience = self.audience_of(&me, audience).await?;
        // Every device of the audience, and this account's other devices.
        let mut others: Vec<(String, String)> = Vec::new();
        for user in audience.iter().chain([&me]) {
            for device in self.known_devices(user).await? {
                if device.device_id != my_device {
                    others.push((user.clone(), device.device_id));
                }
            }
        }
        let refs: Vec<&(String, String)> = others.iter().collect();
        // One chain user at a time, from keying to encrypting (as the outbox drains), so a
        // concurrent post can neither hand this chain to its audience nor start a new one in
        // between.
        let _drain = self.runtime.drain.lock().await;
        match self.keyed(Chain::Status, &refs).await? {
            Keyed::All => {}
            Keyed::Behind => {
                return Err(ClientError::Server {
                    message: "could not give every viewer the status key; try again".to_owned(),
                });
            }
            Keyed::Refused(why) => return Err(ClientError::Server { message: why }),
        }
        let client_status_id = content::new_id();
        let now = self.clock.now_ms();
        let plaintext = Content::new(
            &me,
            &status_audience(&me),
            now,
            Body::Text(content::Text {
                text: text.clone(),
                quoted_message_id: String::new(),
                forwarded: false,
                attachment: attachment.as_ref().map(|(a, _)| a.clone()),
            }),
        )
        .encode_padded();
        let ad = e2e::status_associated_data(&me, &my_device, &client_status_id);
        let ciphertext = self.encrypt_with_chain(&status_audience(&me), &plaintext, &ad)?;
        let request = media::PostStatusRequest {
            client_status_id,
            ciphertext,
            audience_user_ids: audience,
            media_blob_ids: attachment.iter().map(|(a, _)| a.blob_id.clone()).collect(),
        };
        let posted = self
            .gateway
            .unary(Api::post_status, request)
            .await?
            .status
            .ok_or_else(|| ClientError::Server {
                message: "the server answered without the status".to_owned(),
            })?;
        let info = StatusInfo {
            status_id: posted.status_id,
            poster_user_id: me,
            text,
            posted_ms: posted.posted_ms,
            expires_ms: posted.expires_ms,
            own: true,
            viewed: true,
            seen_by: Vec::new(),
            attachment: None,
        };
        self.store.write(|tx| {
            tx.save_status(&info, &my_device)?;
            if let Some((a, local)) = &attachment {
                tx.save_status_attachment(&info.status_id, a, local.as_deref())?;
            }
            Ok(())
        })?;
        let (me, _) = self.me_ids()?;
        let now = self.clock.now_ms();
        Ok(self
            .store
            .read(|c| sdb::statuses(c, &me, now))?
            .into_iter()
            .find(|s| s.status_id == info.status_id)
            .unwrap_or(info))
    }

    /// The unexpired statuses this account may see (its own included), newest first. Fetches
    /// the server's list; call `sync_now` (or keep `start` running) first so the posters' keys
    /// have arrived.
    pub(crate) async fn statuses(&self) -> Result<Vec<StatusInfo>> {
        let (me, _) = self.me_ids()?;
        let mut listed: Vec<media::Status> = Vec::new();
        let mut before = String::new();
        let mut complete = false;
        for _ in 0..MAX_LIST_PAGES {
            let request = media::ListStatusesRequest {
                before_status_id: before.clone(),
                limit: LIST_PAGE,
            };
            let page = self.gateway.unary(Api::list_statuses, request).await?;
            let more = page.more;
            if let Some(last) = page.statuses.last() {
                before.clone_from(&last.status_id);
            }
            listed.extend(page.statuses);
            if !more {
                complete = true;
                break;
            }
        }
        for status in &listed {
            if !self.store.read(|c| sdb::has_status(c, &status.status_id))? {
                self.open_status(status)?;
            }
        }
        let now = self.clock.now_ms();
        let ids: Vec<String> = listed.iter().map(|s| s.status_id.clone()).collect();
        self.store
            .write(|tx| tx.prune_statuses(now, complete.then_some(ids.as_slice())))?;
        self.store.read(|c| sdb::statuses(c, &me, now))
    }

    /// Marks a status viewed and tells its poster (encrypted). Returns it.
    pub(crate) async fn view_status(&self, status_id: String) -> Result<StatusInfo> {
        let (me, my_device) = self.me_ids()?;
        let poster = self
            .store
            .read(|c| sdb::status_poster(c, &status_id))?
            .ok_or_else(|| ClientError::InvalidInput {
                message: "no such status here (list statuses first)".to_owned(),
            })?;
        let now = self.clock.now_ms();
        self.store.write(|tx| {
            tx.mark_status_viewed(&status_id)?;
            if poster != me {
                let body = Body::StatusSeen(content::StatusSeen {
                    status_id: status_id.clone(),
                });
                queue_in(tx, &me, &my_device, &poster, body, now)?;
            }
            Ok(())
        })?;
        self.runtime.outbox_wake.notify_one();
        self.store
            .read(|c| sdb::statuses(c, &me, now))?
            .into_iter()
            .find(|s| s.status_id == status_id)
            .ok_or_else(|| ClientError::InvalidInput {
                message: "the status has expired".to_owned(),
            })
    }

    /// Deletes one of this account's statuses everywhere before it expires.
    pub(crate) async fn delete_status(&self, status_id: String) -> Result<()> {
        if status_id.is_empty() || status_id.len() > 64 {
            return Err(ClientError::InvalidInput {
                message: "not a status id".to_owned(),
            });
        }
        let request = media::DeleteStatusRequest {
            status_id: status_id.clone(),
        };
        self.gateway.unary(Api::delete_status, request).await?;
        self.store.write(|tx| tx.delete_status(&status_id))
    }

    /// The user ids a status for `audience` goes to (never this account itself).
    async fn audience_of(&self, me: &str, audience: StatusAudience) -> Result<Vec<String>> {
        let contacts = self.store.read(sdb::contact_ids)?;
        let mut users = match audience {
            StatusAudience::Contacts => contacts,
            StatusAudience::ContactsExcept { excluded } => {
                let mut left_out = Vec::with_capacity(excluded.len());
                for peer in &excluded {
                    left_out.push(self.resolve(peer).await?);
                }
                contacts
                    .into_iter()
                    .filter(|c| !left_out.contains(c))
                    .collect()
            }
            StatusAudience::Only { members } => {
                let mut chosen = Vec::with_capacity(members.len());
                for peer in &members {
                    chosen.push(self.resolve(peer).await?);
                }
                chosen
            }
        };
        users.retain(|u| u != me);
        users.sort_unstable();
        users.dedup();
        if users.len() > MAX_AUDIENCE {
            return Err(ClientError::InvalidInput {
                message: format!("a status goes to at most {MAX_AUDIENCE} people"),
            });
        }
        Ok(users)
    }

    /// Decrypts a listed status with its poster device's chain and stores it; a status whose
    /// key has not arrived (or that does not decrypt) is left for a later listing.
    fn open_status(&self, status: &media::Status) -> Result<()> {
        let audience = status_audience(&status.poster_user_id);
        let Ok(chain_id) = e2e::group_chain_of(&status.ciphertext) else {
            return Ok(());
        };
        let ad = e2e::status_associated_data(
            &status.poster_user_id,
            &status.poster_device_id,
            &status.client_status_id,
        );
        let now = self.clock.now_ms();
        let _crypto = self.runtime.crypto();
        let Some(state) = self
            .store
            .read(|c| gdb::received_sender_key(c, &audience, &status.poster_device_id, chain_id))?
        else {
            tracing::debug!("a status on a chain this device was not given (yet)");
            drop(_crypto);
            // Ask for the chain for the poster's next status (this one stays unread here).
            return self.ask_for_key("", &status.poster_user_id, &status.poster_device_id);
        };
        let (plaintext, next) = match e2e::group_decrypt(&state, &status.ciphertext, &ad, now) {
            Ok(done) => done,
            Err(e) => {
                tracing::debug!(error = %e, "a status did not decrypt");
                return Ok(());
            }
        };
        let Some(content) = Content::decode_bytes(&plaintext) else {
            return Ok(());
        };
        let Some(Body::Text(text)) = &content.body else {
            return Ok(());
        };
        if content.from_user_id != status.poster_user_id
            || content.to_user_id != audience
            || text.text.len() > MAX_TEXT_BYTES
            || text
                .attachment
                .as_ref()
                .is_some_and(|a| !attachment_within_bounds(a))
        {
            return Ok(());
        }
        let info = StatusInfo {
            status_id: status.status_id.clone(),
            poster_user_id: status.poster_user_id.clone(),
            text: text.text.clone(),
            posted_ms: status.posted_ms,
            expires_ms: status.expires_ms,
            own: false,
            viewed: false,
            seen_by: Vec::new(),
            attachment: None,
        };
        self.store.write(|tx| {
            tx.update_received_sender_key(&audience, &status.poster_device_id, chain_id, &next)?;
            tx.save_status(&info, &status.poster_device_id)?;
            if let Some(a) = &text.attachment {
                tx.save_status_attachment(&info.status_id, a, None)?;
            }
            Ok(())
        })
    }
}
