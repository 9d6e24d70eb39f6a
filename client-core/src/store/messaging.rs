//! Messaging state in the client database: prekeys, remote devices, ratchet sessions, contacts,
//! history and the outbox. Everything that must change together (a decrypted message, the
//! session state that decrypted it and the prekey it consumed) changes in one [`Tx`].

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, Tx};
use crate::error::{ClientError, Result};
use crate::model::content::Attachment;
use crate::model::records::{Conversation, Message, MessageReaction, MessageStatus};

/// A remote device's public identity as the directory listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRecord {
    pub user_id: String,
    pub device_id: String,
    pub identity_signing: [u8; 32],
    pub identity_dh: [u8; 32],
}

/// A send waiting in the outbox.
#[derive(Debug, Clone)]
pub(crate) struct OutboxItem {
    pub seq: i64,
    pub client_msg_id: String,
    /// Empty for a group send.
    pub to_user_id: String,
    /// Empty for a pairwise send.
    pub group_id: String,
    pub content: Vec<u8>,
    /// Failed tries that were not the network's fault.
    pub attempts: i64,
}

/// One of this device's prekeys (secret and public halves).
#[derive(Clone)]
pub(crate) struct StoredPrekey {
    pub key_id: u32,
    pub secret: zeroize::Zeroizing<[u8; 32]>,
    pub public: [u8; 32],
    /// Signed prekeys only.
    pub signature: Option<[u8; 64]>,
}

// === prekeys ===

impl Tx<'_> {
    /// Stores new prekeys of this device.
    pub(crate) fn add_prekeys(
        &self,
        signed: Option<&StoredPrekey>,
        one_time: &[StoredPrekey],
        now_ms: i64,
    ) -> Result<()> {
        if let Some(p) = signed {
            let signature = p
                .signature
                .ok_or_else(|| storage("signed prekey without signature"))?;
            self.conn().execute(
                "INSERT INTO signed_prekeys (key_id, secret, public, signature, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    p.key_id,
                    &p.secret[..],
                    &p.public[..],
                    &signature[..],
                    now_ms
                ],
            )?;
        }
        let mut insert = self.conn().prepare(
            "INSERT INTO one_time_prekeys (key_id, secret, public, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for p in one_time {
            insert.execute(params![p.key_id, &p.secret[..], &p.public[..], now_ms])?;
        }
        Ok(())
    }

    /// Deletes a one-time prekey a first message consumed.
    pub(crate) fn consume_one_time_prekey(&self, key_id: u32) -> Result<()> {
        self.conn()
            .execute("DELETE FROM one_time_prekeys WHERE key_id = ?1", [key_id])?;
        Ok(())
    }
}

/// The next free key ids: (signed, one-time).
pub(crate) fn next_prekey_ids(conn: &Connection) -> Result<(u32, u32)> {
    let signed: u32 = conn.query_row(
        "SELECT COALESCE(MAX(key_id), 0) + 1 FROM signed_prekeys",
        [],
        |r| r.get(0),
    )?;
    let one_time: u32 = conn.query_row(
        "SELECT COALESCE(MAX(key_id), 0) + 1 FROM one_time_prekeys",
        [],
        |r| r.get(0),
    )?;
    Ok((signed, one_time))
}

/// The secret of signed prekey `key_id`.
pub(crate) fn signed_prekey_secret(
    conn: &Connection,
    key_id: u32,
) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>> {
    secret(
        conn,
        "SELECT secret FROM signed_prekeys WHERE key_id = ?1",
        key_id,
    )
}

/// The secret of one-time prekey `key_id`.
pub(crate) fn one_time_prekey_secret(
    conn: &Connection,
    key_id: u32,
) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>> {
    secret(
        conn,
        "SELECT secret FROM one_time_prekeys WHERE key_id = ?1",
        key_id,
    )
}

/// Whether this device has a signed prekey.
pub(crate) fn has_signed_prekey(conn: &Connection) -> Result<bool> {
    Ok(
        conn.query_row("SELECT EXISTS (SELECT 1 FROM signed_prekeys)", [], |r| {
            r.get(0)
        })?,
    )
}

fn secret(
    conn: &Connection,
    sql: &str,
    key_id: u32,
) -> Result<Option<zeroize::Zeroizing<[u8; 32]>>> {
    let bytes: Option<Vec<u8>> = conn.query_row(sql, [key_id], |r| r.get(0)).optional()?;
    bytes
        .map(|b| {
            let b = zeroize::Zeroizing::new(b);
            <[u8; 32]>::try_from(b.as_slice())
                .map(zeroize::Zeroizing::new)
                .map_err(|_| storage("corrupt prekey"))
        })
        .transpose()
}

// === devices and sessions ===

impl Tx<'_> {
    /// Makes `devices` the known device list of `user_id`. Devices no longer listed are kept as
    /// removed (mail they sent before leaving still decrypts; nothing more is sent to them).
    /// Trust is on first use: a known device id listed with other identity keys keeps its first
    /// keys, and identity keys already known under another user are not accepted; such entries
    /// are skipped (their messages will not decrypt), the rest of the list is stored.
    pub(crate) fn replace_devices(
        &self,
        user_id: &str,
        devices: &[DeviceRecord],
        now_ms: i64,
    ) -> Result<()> {
        let known = devices_with_removed(self.conn(), user_id)?;
        self.conn().execute(
            "UPDATE devices SET removed_at_ms = ?2 WHERE user_id = ?1 AND removed_at_ms IS NULL",
            params![user_id, now_ms],
        )?;
        self.conn().execute(
            "INSERT INTO device_lists (user_id, fetched_at_ms) VALUES (?1, ?2)
             ON CONFLICT DO UPDATE SET fetched_at_ms = excluded.fetched_at_ms",
            params![user_id, now_ms],
        )?;
        for d in devices {
            let changed = known.iter().any(|k| {
                k.device_id == d.device_id
                    && (k.identity_signing != d.identity_signing || k.identity_dh != d.identity_dh)
            });
            if changed {
                tracing::warn!(device_id = %d.device_id, "a device's identity keys changed; not trusted");
                continue;
            }
            let elsewhere: bool = self.conn().query_row(
                "SELECT EXISTS (SELECT 1 FROM devices WHERE user_id <> ?1 AND (identity_signing = ?2 OR identity_dh = ?3))",
                params![user_id, &d.identity_signing[..], &d.identity_dh[..]],
                |r| r.get(0),
            )?;
            if elsewhere {
                tracing::warn!(device_id = %d.device_id, "identity keys listed under two users; not trusted");
                continue;
            }
            self.conn().execute(
                "INSERT INTO devices (user_id, device_id, identity_signing, identity_dh) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET removed_at_ms = NULL",
                params![user_id, d.device_id, &d.identity_signing[..], &d.identity_dh[..]],
            )?;
        }
        Ok(())
    }

    /// Stores a session's state.
    pub(crate) fn save_ratchet_session(
        &self,
        user_id: &str,
        device_id: &str,
        state: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO ratchet_sessions (device_id, user_id, state, updated_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id) DO UPDATE SET user_id = excluded.user_id, state = excluded.state,
                 updated_at_ms = excluded.updated_at_ms",
            params![device_id, user_id, state, now_ms],
        )?;
        Ok(())
    }
}

impl Tx<'_> {
    /// Owes `user_id` a delivered receipt for `message_id`.
    pub(crate) fn owe_receipt(&self, user_id: &str, message_id: &str) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO pending_receipts (user_id, message_id) VALUES (?1, ?2)",
            params![user_id, message_id],
        )?;
        Ok(())
    }

    /// Takes every owed receipt: `(user_id, message ids)`.
    pub(crate) fn take_owed_receipts(&self) -> Result<Vec<(String, Vec<String>)>> {
        let rows: Vec<(String, String)> = self
            .conn()
            .prepare("SELECT user_id, message_id FROM pending_receipts ORDER BY user_id, rowid")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        self.conn().execute("DELETE FROM pending_receipts", [])?;
        let mut owed: Vec<(String, Vec<String>)> = Vec::new();
        for (user, id) in rows {
            match owed.last_mut() {
                Some((last, ids)) if *last == user => ids.push(id),
                _ => owed.push((user, vec![id])),
            }
        }
        Ok(owed)
    }

    /// Records that a session with `base_key` was accepted from `device_id`; false if it was
    /// before (a replayed first message).
    pub(crate) fn accept_base_key(&self, device_id: &str, base_key: &[u8]) -> Result<bool> {
        Ok(self.conn().execute(
            "INSERT OR IGNORE INTO accepted_base_keys (device_id, base_key) VALUES (?1, ?2)",
            params![device_id, base_key],
        )? == 1)
    }

    /// Forgets everything this device knew for messaging as a signed-in device: sessions,
    /// prekeys, device lists, the outbox (queued messages become failed) and owed receipts.
    /// With `history`, the history and contacts go too.
    pub(crate) fn wipe_messaging(&self, history: bool) -> Result<()> {
        self.conn().execute_batch(
            "DELETE FROM ratchet_sessions; DELETE FROM archived_sessions; DELETE FROM accepted_base_keys;
             DELETE FROM signed_prekeys; DELETE FROM one_time_prekeys; DELETE FROM devices;
             DELETE FROM device_lists; DELETE FROM outbox; DELETE FROM pending_receipts;
             DELETE FROM sender_keys_own; DELETE FROM sender_keys_given;
             DELETE FROM sender_keys_received; DELETE FROM notice_keys;
             DELETE FROM group_devices; UPDATE groups SET digest = NULL;
             UPDATE messages SET status = 'failed' WHERE outgoing = 1 AND status = 'queued';",
        )?;
        if history {
            self.conn().execute_batch(
                "DELETE FROM messages; DELETE FROM reactions; DELETE FROM contacts;
                 DELETE FROM groups; DELETE FROM group_members;
                 DELETE FROM statuses; DELETE FROM status_views;",
            )?;
        }
        Ok(())
    }
}

/// Whether a session with `base_key` was accepted from `device_id` before.
pub(crate) fn base_key_accepted(
    conn: &Connection,
    device_id: &str,
    base_key: &[u8],
) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM accepted_base_keys WHERE device_id = ?1 AND base_key = ?2)",
        params![device_id, base_key],
        |r| r.get(0),
    )?)
}

/// Whether the history holds messages another account sent as "me".
pub(crate) fn history_owner_differs(store: &Store, user_id: &str) -> Result<bool> {
    store.read(|conn| {
        Ok(conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE outgoing = 1 AND sender_user_id <> ?1)",
            [user_id],
            |r| r.get(0),
        )?)
    })
}

/// Sessions kept per device besides the current one.
const ARCHIVED_PER_DEVICE: i64 = 3;

impl Tx<'_> {
    /// Keeps `state` as an earlier session of `device_id` (dropping the oldest beyond a few).
    pub(crate) fn archive_session(&self, device_id: &str, state: &[u8], now_ms: i64) -> Result<()> {
        self.conn().execute(
            "INSERT INTO archived_sessions (device_id, state, archived_at_ms) VALUES (?1, ?2, ?3)",
            params![device_id, state, now_ms],
        )?;
        self.conn().execute(
            "DELETE FROM archived_sessions WHERE device_id = ?1 AND id NOT IN
                 (SELECT id FROM archived_sessions WHERE device_id = ?1 ORDER BY id DESC LIMIT ?2)",
            params![device_id, ARCHIVED_PER_DEVICE],
        )?;
        Ok(())
    }

    /// Forgets archived session `id` (it became current again).
    pub(crate) fn unarchive_session(&self, id: i64) -> Result<()> {
        self.conn()
            .execute("DELETE FROM archived_sessions WHERE id = ?1", [id])?;
        Ok(())
    }
}

/// The archived sessions of `device_id`, newest first: `(id, state)`.
pub(crate) fn archived_sessions(conn: &Connection, device_id: &str) -> Result<Vec<(i64, Vec<u8>)>> {
    Ok(conn
        .prepare("SELECT id, state FROM archived_sessions WHERE device_id = ?1 ORDER BY id DESC")?
        .query_map([device_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

/// The devices of `user_id` the directory lists now (the ones to send to).
pub(crate) fn devices_of(conn: &Connection, user_id: &str) -> Result<Vec<DeviceRecord>> {
    read_devices(
        conn,
        "SELECT device_id, identity_signing, identity_dh FROM devices
                        WHERE user_id = ?1 AND removed_at_ms IS NULL ORDER BY device_id",
        user_id,
    )
}

/// Every device of `user_id` this device knows, removed ones included (to decrypt their mail).
pub(crate) fn devices_with_removed(conn: &Connection, user_id: &str) -> Result<Vec<DeviceRecord>> {
    read_devices(
        conn,
        "SELECT device_id, identity_signing, identity_dh FROM devices
                        WHERE user_id = ?1 ORDER BY device_id",
        user_id,
    )
}

fn read_devices(conn: &Connection, sql: &str, user_id: &str) -> Result<Vec<DeviceRecord>> {
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map([user_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let mut devices = Vec::new();
    for row in rows {
        let (device_id, signing, dh) = row?;
        devices.push(DeviceRecord {
            user_id: user_id.to_owned(),
            device_id,
            identity_signing: signing
                .try_into()
                .map_err(|_| storage("corrupt device key"))?,
            identity_dh: dh.try_into().map_err(|_| storage("corrupt device key"))?,
        });
    }
    Ok(devices)
}

/// Whether `user_id`'s device list was ever fetched.
pub(crate) fn device_list_known(conn: &Connection, user_id: &str) -> Result<bool> {
    Ok(conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM device_lists WHERE user_id = ?1)",
        [user_id],
        |r| r.get(0),
    )?)
}

/// The stored state of the session with `device_id`.
pub(crate) fn ratchet_session(conn: &Connection, device_id: &str) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .query_row(
            "SELECT state FROM ratchet_sessions WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )
        .optional()?)
}

// === contacts ===

impl Tx<'_> {
    /// Remembers that `phone` is `user_id`.
    pub(crate) fn save_contact(&self, user_id: &str, phone: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO contacts (user_id, phone) VALUES (?1, ?2)
             ON CONFLICT DO UPDATE SET user_id = excluded.user_id, phone = excluded.phone",
            params![user_id, phone],
        )?;
        Ok(())
    }
}

/// The user with `phone`, if resolved before.
pub(crate) fn contact_by_phone(conn: &Connection, phone: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT user_id FROM contacts WHERE phone = ?1",
            [phone],
            |r| r.get(0),
        )
        .optional()?)
}

// === history ===

/// A message as it is inserted.
#[derive(Debug, Clone)]
pub(crate) struct NewMessage {
    pub message_id: String,
    pub conversation_user_id: String,
    pub sender_user_id: String,
    pub sender_device_id: String,
    pub outgoing: bool,
    pub body: String,
    pub quoted_message_id: Option<String>,
    pub forwarded: bool,
    pub status: MessageStatus,
    pub sent_at_ms: i64,
    pub server_time_ms: Option<i64>,
    /// A message of the group `conversation_user_id`.
    pub in_group: bool,
    /// Its attachment, and where this device has the file (the sender's own).
    pub attachment: Option<(Attachment, Option<String>)>,
}

impl Tx<'_> {
    /// Inserts a message; false when its id is already in the history (a duplicate).
    pub(crate) fn insert_message(&self, m: &NewMessage) -> Result<bool> {
        let inserted = self.conn().execute(
            "INSERT OR IGNORE INTO messages (message_id, conversation_user_id, sender_user_id, sender_device_id,
                 outgoing, body, quoted_message_id, forwarded, status, sent_at_ms, server_time_ms, in_group)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                m.message_id,
                m.conversation_user_id,
                m.sender_user_id,
                m.sender_device_id,
                m.outgoing,
                m.body,
                m.quoted_message_id,
                m.forwarded,
                m.status.as_str(),
                m.sent_at_ms,
                m.server_time_ms,
                m.in_group,
            ],
        )?;
        if inserted == 1
            && let Some((attachment, local_path)) = &m.attachment
        {
            super::media::insert_attachment(
                self.conn(),
                &m.message_id,
                attachment,
                local_path.as_deref(),
            )?;
        }
        Ok(inserted == 1)
    }

    /// Queues `content` for `to_user_id`.
    pub(crate) fn enqueue(
        &self,
        client_msg_id: &str,
        to_user_id: &str,
        content: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        self.enqueue_for(client_msg_id, to_user_id, "", content, now_ms)
    }

    /// Queues `content` for the members of `group_id`.
    pub(crate) fn enqueue_group(
        &self,
        client_msg_id: &str,
        group_id: &str,
        content: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        self.enqueue_for(client_msg_id, "", group_id, content, now_ms)
    }

    fn enqueue_for(
        &self,
        client_msg_id: &str,
        to_user_id: &str,
        group_id: &str,
        content: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        self.conn().execute(
            "INSERT INTO outbox (client_msg_id, to_user_id, group_id, content, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![client_msg_id, to_user_id, group_id, content, now_ms],
        )?;
        Ok(())
    }

    /// Removes a drained outbox item.
    pub(crate) fn dequeue(&self, seq: i64) -> Result<()> {
        self.conn()
            .execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// Counts a failed attempt.
    pub(crate) fn count_attempt(&self, seq: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?1",
            [seq],
        )?;
        Ok(())
    }

    /// Sets an outgoing message's status (and server time), only ever forward (or to failed).
    /// True when something changed.
    pub(crate) fn advance_status_in(
        &self,
        conversation_user_id: &str,
        message_id: &str,
        status: MessageStatus,
    ) -> Result<bool> {
        let in_conversation: bool = self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE message_id = ?1 AND conversation_user_id = ?2)",
            params![message_id, conversation_user_id],
            |r| r.get(0),
        )?;
        Ok(in_conversation && self.advance_status(message_id, status, None)?)
    }

    /// Sets an outgoing message's status (and server time), only ever forward (or to failed).
    /// True when something changed.
    pub(crate) fn advance_status(
        &self,
        message_id: &str,
        status: MessageStatus,
        server_time_ms: Option<i64>,
    ) -> Result<bool> {
        let Some(current) = self
            .conn()
            .query_row(
                "SELECT status FROM messages WHERE message_id = ?1 AND outgoing = 1",
                [message_id],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        else {
            return Ok(false);
        };
        let current = MessageStatus::parse(&current);
        let moves = match status {
            MessageStatus::Failed => current == MessageStatus::Queued,
            _ => status.rank() > current.rank(),
        };
        if moves {
            self.conn().execute(
                "UPDATE messages SET status = ?2, server_time_ms = COALESCE(?3, server_time_ms) WHERE message_id = ?1",
                params![message_id, status.as_str(), server_time_ms],
            )?;
        }
        Ok(moves)
    }

    /// Replaces the text of `message_id` if `sender_user_id` sent it and it is not deleted.
    pub(crate) fn edit_message(
        &self,
        message_id: &str,
        sender_user_id: &str,
        text: &str,
        at_ms: i64,
    ) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE messages SET body = ?3, edited_at_ms = ?4
             WHERE message_id = ?1 AND sender_user_id = ?2 AND deleted = 0",
            params![message_id, sender_user_id, text, at_ms],
        )? == 1)
    }

    /// Deletes `message_id` for everyone if `sender_user_id` sent it: the text and reactions go.
    pub(crate) fn delete_message(&self, message_id: &str, sender_user_id: &str) -> Result<bool> {
        let deleted = self.conn().execute(
            "UPDATE messages SET body = '', deleted = 1, quoted_message_id = NULL
             WHERE message_id = ?1 AND sender_user_id = ?2 AND deleted = 0",
            params![message_id, sender_user_id],
        )? == 1;
        if deleted {
            self.conn()
                .execute("DELETE FROM reactions WHERE message_id = ?1", [message_id])?;
            // Deleted for everyone: no preview, key or capability stays behind either.
            self.conn().execute(
                "DELETE FROM attachments WHERE message_id = ?1",
                [message_id],
            )?;
        }
        Ok(deleted)
    }

    /// Sets (or with an empty emoji removes) `user_id`'s reaction to a message of the
    /// conversation with `conversation_user_id`. False if there is no such message or it is
    /// deleted.
    pub(crate) fn set_reaction(
        &self,
        conversation_user_id: &str,
        message_id: &str,
        user_id: &str,
        emoji: &str,
    ) -> Result<bool> {
        let exists: bool = self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM messages
                            WHERE message_id = ?1 AND conversation_user_id = ?2 AND deleted = 0)",
            params![message_id, conversation_user_id],
            |r| r.get(0),
        )?;
        if !exists {
            return Ok(false);
        }
        if emoji.is_empty() {
            self.conn().execute(
                "DELETE FROM reactions WHERE message_id = ?1 AND user_id = ?2",
                params![message_id, user_id],
            )?;
        } else {
            self.conn().execute(
                "INSERT INTO reactions (message_id, user_id, emoji) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO UPDATE SET emoji = excluded.emoji",
                params![message_id, user_id, emoji],
            )?;
        }
        Ok(true)
    }

    /// Marks the incoming messages of a conversation read; their ids (to send read receipts).
    pub(crate) fn mark_read(&self, conversation_user_id: &str) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .conn()
            .prepare(
                "SELECT message_id FROM messages
                 WHERE conversation_user_id = ?1 AND outgoing = 0 AND status = 'received' ORDER BY id",
            )?
            .query_map([conversation_user_id], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        self.conn().execute(
            "UPDATE messages SET status = 'read' WHERE conversation_user_id = ?1 AND outgoing = 0 AND status = 'received'",
            [conversation_user_id],
        )?;
        Ok(ids)
    }

    /// One message with its reactions.
    pub(crate) fn message(&self, message_id: &str) -> Result<Option<Message>> {
        message(self.conn(), message_id)
    }
}

/// The head of the outbox.
pub(crate) fn outbox_head(conn: &Connection) -> Result<Option<OutboxItem>> {
    Ok(conn
        .query_row(
            "SELECT seq, client_msg_id, to_user_id, content, attempts, group_id
             FROM outbox ORDER BY seq LIMIT 1",
            [],
            |r| {
                Ok(OutboxItem {
                    seq: r.get(0)?,
                    client_msg_id: r.get(1)?,
                    to_user_id: r.get(2)?,
                    content: r.get(3)?,
                    attempts: r.get(4)?,
                    group_id: r.get(5)?,
                })
            },
        )
        .optional()?)
}

/// How many sends wait in the outbox.
pub(crate) fn outbox_len(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))?)
}

const MESSAGE_COLUMNS: &str =
    "message_id, conversation_user_id, sender_user_id, sender_device_id, outgoing, body,
    quoted_message_id, forwarded, status, sent_at_ms, server_time_ms, edited_at_ms, deleted,
    in_group";

fn message_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    let conversation: String = r.get(1)?;
    Ok(Message {
        message_id: r.get(0)?,
        group_id: r.get::<_, bool>(13)?.then(|| conversation.clone()),
        conversation_user_id: conversation,
        sender_user_id: r.get(2)?,
        sender_device_id: r.get(3)?,
        outgoing: r.get(4)?,
        body: r.get(5)?,
        quoted_message_id: r.get(6)?,
        forwarded: r.get(7)?,
        status: MessageStatus::parse(&r.get::<_, String>(8)?),
        sent_at_ms: r.get(9)?,
        server_time_ms: r.get(10)?,
        edited: r.get::<_, Option<i64>>(11)?.is_some(),
        deleted: r.get(12)?,
        reactions: Vec::new(),
        attachment: None,
    })
}

fn with_reactions(conn: &Connection, mut m: Message) -> Result<Message> {
    m.reactions = conn
        .prepare("SELECT user_id, emoji FROM reactions WHERE message_id = ?1 ORDER BY user_id")?
        .query_map([&m.message_id], |r| {
            Ok(MessageReaction {
                user_id: r.get(0)?,
                emoji: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    m.attachment = super::media::attachment_info(conn, &m.message_id)?;
    Ok(m)
}

/// One message with its reactions.
pub(crate) fn message(conn: &Connection, message_id: &str) -> Result<Option<Message>> {
    let m = conn
        .query_row(
            &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ?1"),
            [message_id],
            message_from_row,
        )
        .optional()?;
    m.map(|m| with_reactions(conn, m)).transpose()
}

/// The newest `limit` messages of a conversation, oldest first.
pub(crate) fn history(
    conn: &Connection,
    conversation_user_id: &str,
    limit: u32,
) -> Result<Vec<Message>> {
    let mut messages: Vec<Message> = conn
        .prepare(&format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_user_id = ?1 ORDER BY id DESC LIMIT ?2"
        ))?
        .query_map(params![conversation_user_id, limit], message_from_row)?
        .collect::<Result<_, _>>()?;
    messages.reverse();
    messages
        .into_iter()
        .map(|m| with_reactions(conn, m))
        .collect()
}

/// Every conversation, most recent first.
pub(crate) fn conversations(conn: &Connection) -> Result<Vec<Conversation>> {
    Ok(conn
        .prepare(
            "SELECT m.conversation_user_id, c.phone,
                    (SELECT message_id FROM messages WHERE conversation_user_id = m.conversation_user_id
                     ORDER BY id DESC LIMIT 1),
                    SUM(CASE WHEN m.outgoing = 0 AND m.status = 'received' THEN 1 ELSE 0 END),
                    MAX(m.id)
             FROM messages m LEFT JOIN contacts c ON c.user_id = m.conversation_user_id
             GROUP BY m.conversation_user_id ORDER BY MAX(m.id) DESC",
        )?
        .query_map([], |r| {
            Ok(Conversation { user_id: r.get(0)?, phone: r.get(1)?, last_message_id: r.get(2)?, unread: r.get(3)? })
        })?
        .collect::<Result<_, _>>()?)
}

fn storage(message: &str) -> ClientError {
    ClientError::Storage {
        message: message.to_owned(),
    }
}
