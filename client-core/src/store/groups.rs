//! Group state in the client database: each group as the chat service last described it, this
//! device's sending chains and who was given them, other members' chains, and the service's
//! notice keys.

use rusqlite::{Connection, OptionalExtension, params};

use super::Tx;
use crate::error::Result;
use crate::model::records::{GroupInfo, GroupMemberInfo};

/// Received chains kept per sender device and group (older ones are dropped).
const RECEIVED_CHAINS_KEPT: i64 = 4;
/// Received chains kept per sender device across groups and statuses (a user is in at most
/// 1,000 groups; the newest are kept).
const RECEIVED_CHAINS_PER_DEVICE: i64 = 2_000;

/// The id this device's status chains (its own, and each poster's it received) are stored
/// under, beside the groups' chains: `status:<user id>`, which no group id can be (group ids are
/// alphanumeric).
pub(crate) fn status_audience(user_id: &str) -> String {
    format!("status:{user_id}")
}

/// A group with the member devices `digest` covers.
#[derive(Debug, Clone)]
pub(crate) struct GroupSnapshot {
    pub info: GroupInfo,
    /// `None` when a notice said the group changed since the last `GetGroup`.
    pub digest: Option<Vec<u8>>,
    /// (user id, device id) of every member device, this one included.
    pub devices: Vec<(String, String)>,
}

impl Tx<'_> {
    /// Replaces everything known of a group with what `GetGroup` (or a change) answered.
    pub(crate) fn save_group(&self, snapshot: &GroupSnapshot) -> Result<()> {
        let info = &snapshot.info;
        let version = i64::try_from(info.version).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT INTO groups (group_id, name, version, admin, active, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (group_id) DO UPDATE SET name = excluded.name, version = excluded.version,
                 admin = excluded.admin, active = excluded.active, digest = excluded.digest",
            params![
                info.group_id,
                info.name,
                version,
                info.admin,
                info.active,
                snapshot.digest
            ],
        )?;
        self.conn().execute(
            "DELETE FROM group_members WHERE group_id = ?1",
            [&info.group_id],
        )?;
        self.conn().execute(
            "DELETE FROM group_devices WHERE group_id = ?1",
            [&info.group_id],
        )?;
        let mut member = self.conn().prepare_cached(
            "INSERT INTO group_members (group_id, user_id, admin) VALUES (?1, ?2, ?3)",
        )?;
        for m in &info.members {
            member.execute(params![info.group_id, m.user_id, m.admin])?;
        }
        let mut device = self.conn().prepare_cached(
            "INSERT OR IGNORE INTO group_devices (group_id, user_id, device_id) VALUES (?1, ?2, ?3)",
        )?;
        for (user, id) in &snapshot.devices {
            device.execute(params![info.group_id, user, id])?;
        }
        Ok(())
    }

    /// Records what a notice (or a listing) said: the name and version, and whether this
    /// account is still in the group; a newer version means the member devices must be fetched
    /// again before the next send.
    pub(crate) fn note_group_change(
        &self,
        group_id: &str,
        name: &str,
        version: u64,
        active: Option<bool>,
    ) -> Result<()> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.conn().execute(
            "INSERT INTO groups (group_id, name, version, active, digest) VALUES (?1, ?2, ?3, ?4, NULL)
             ON CONFLICT (group_id) DO UPDATE SET
                 name = CASE WHEN excluded.version >= groups.version THEN excluded.name ELSE groups.name END,
                 version = max(groups.version, excluded.version),
                 active = coalesce(?5, groups.active),
                 digest = CASE WHEN excluded.version > groups.version THEN NULL ELSE groups.digest END",
            params![group_id, name, version, active.unwrap_or(true), active],
        )?;
        Ok(())
    }

    /// Forgets the member devices of a group, so the next send fetches them again.
    pub(crate) fn invalidate_group(&self, group_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE groups SET digest = NULL WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }

    /// Marks a group left (or removed from) here.
    pub(crate) fn mark_group_inactive(&self, group_id: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE groups SET active = 0, digest = NULL WHERE group_id = ?1",
            [group_id],
        )?;
        self.forget_own_sender_key(group_id)
    }

    /// Stores this device's sending chain for a group; `fresh` starts a new chain nobody holds.
    pub(crate) fn save_own_sender_key(
        &self,
        group_id: &str,
        state: &[u8],
        fresh: bool,
        now_ms: i64,
    ) -> Result<()> {
        if fresh {
            self.conn().execute(
                "DELETE FROM sender_keys_given WHERE group_id = ?1",
                [group_id],
            )?;
        }
        self.conn().execute(
            "INSERT INTO sender_keys_own (group_id, state, created_at_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT (group_id) DO UPDATE SET state = excluded.state",
            params![group_id, state, now_ms],
        )?;
        Ok(())
    }

    /// Drops this device's chain for a group (a member left: the next message starts another).
    pub(crate) fn forget_own_sender_key(&self, group_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sender_keys_own WHERE group_id = ?1",
            [group_id],
        )?;
        self.conn().execute(
            "DELETE FROM sender_keys_given WHERE group_id = ?1",
            [group_id],
        )?;
        Ok(())
    }

    /// Forgets that `device_id` holds this device's chain for `audience`, so the next send
    /// hands it over again (if the device is in that send's audience at all).
    pub(crate) fn forget_sender_key_given(&self, audience: &str, device_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sender_keys_given WHERE group_id = ?1 AND device_id = ?2",
            params![audience, device_id],
        )?;
        Ok(())
    }

    /// Records that `device_ids` were given this device's current chain for a group.
    pub(crate) fn mark_sender_key_given(
        &self,
        group_id: &str,
        device_ids: &[String],
    ) -> Result<()> {
        let mut insert = self.conn().prepare_cached(
            "INSERT OR IGNORE INTO sender_keys_given (group_id, device_id) VALUES (?1, ?2)",
        )?;
        for device in device_ids {
            insert.execute(params![group_id, device])?;
        }
        Ok(())
    }

    /// Stores a chain another member device gave this one, unless it is held already (the held
    /// state reaches back further); keeps the newest few chains per sender device.
    pub(crate) fn save_received_sender_key(
        &self,
        group_id: &str,
        sender_user_id: &str,
        sender_device_id: &str,
        chain_id: u32,
        state: &[u8],
    ) -> Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO sender_keys_received
                 (group_id, sender_user_id, sender_device_id, chain_id, state)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![group_id, sender_user_id, sender_device_id, chain_id, state],
        )?;
        self.conn().execute(
            "DELETE FROM sender_keys_received WHERE group_id = ?1 AND sender_device_id = ?2 AND id NOT IN (
                 SELECT id FROM sender_keys_received WHERE group_id = ?1 AND sender_device_id = ?2
                 ORDER BY id DESC LIMIT ?3)",
            params![group_id, sender_device_id, RECEIVED_CHAINS_KEPT],
        )?;
        // A peer cannot grow this table without bound by naming ever new groups.
        self.conn().execute(
            "DELETE FROM sender_keys_received WHERE sender_device_id = ?1 AND id NOT IN (
                 SELECT id FROM sender_keys_received WHERE sender_device_id = ?1
                 ORDER BY id DESC LIMIT ?2)",
            params![sender_device_id, RECEIVED_CHAINS_PER_DEVICE],
        )?;
        Ok(())
    }

    /// Replaces a received chain's state after it decrypted a message.
    pub(crate) fn update_received_sender_key(
        &self,
        group_id: &str,
        sender_device_id: &str,
        chain_id: u32,
        state: &[u8],
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE sender_keys_received SET state = ?4
             WHERE group_id = ?1 AND sender_device_id = ?2 AND chain_id = ?3",
            params![group_id, sender_device_id, chain_id, state],
        )?;
        Ok(())
    }

    /// Trusts notice keys (a key id once stored is never replaced).
    pub(crate) fn add_notice_keys(&self, keys: &[(String, [u8; 32])]) -> Result<()> {
        let mut insert = self
            .conn()
            .prepare_cached("INSERT OR IGNORE INTO notice_keys (key_id, public) VALUES (?1, ?2)")?;
        for (key_id, public) in keys {
            insert.execute(params![key_id, &public[..]])?;
        }
        Ok(())
    }
}

/// A group as stored, with its member devices.
pub(crate) fn snapshot(conn: &Connection, group_id: &str) -> Result<Option<GroupSnapshot>> {
    type Row = (String, i64, bool, bool, Option<Vec<u8>>);
    let row: Option<Row> = conn
        .query_row(
            "SELECT name, version, admin, active, digest FROM groups WHERE group_id = ?1",
            [group_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    let Some((name, version, admin, active, digest)) = row else {
        return Ok(None);
    };
    let members = conn
        .prepare_cached(
            "SELECT user_id, admin FROM group_members WHERE group_id = ?1 ORDER BY user_id",
        )?
        .query_map([group_id], |r| {
            Ok(GroupMemberInfo {
                user_id: r.get(0)?,
                admin: r.get(1)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let devices = conn
        .prepare_cached(
            "SELECT user_id, device_id FROM group_devices WHERE group_id = ?1
             ORDER BY user_id, device_id",
        )?
        .query_map([group_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(Some(GroupSnapshot {
        info: GroupInfo {
            group_id: group_id.to_owned(),
            name,
            version: u64::try_from(version).unwrap_or(0),
            admin,
            active,
            members,
        },
        digest,
        devices,
    }))
}

/// Every group this device knows of, by name.
pub(crate) fn group_ids(conn: &Connection) -> Result<Vec<String>> {
    Ok(conn
        .prepare("SELECT group_id FROM groups ORDER BY name, group_id")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

/// A sending chain's state and the devices given it.
pub(crate) type OwnSenderKey = (zeroize::Zeroizing<Vec<u8>>, Vec<String>);

/// This device's sending chain for a group, and the devices given it.
pub(crate) fn own_sender_key(conn: &Connection, group_id: &str) -> Result<Option<OwnSenderKey>> {
    let state: Option<Vec<u8>> = conn
        .query_row(
            "SELECT state FROM sender_keys_own WHERE group_id = ?1",
            [group_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(state) = state else {
        return Ok(None);
    };
    let given = conn
        .prepare_cached("SELECT device_id FROM sender_keys_given WHERE group_id = ?1")?
        .query_map([group_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some((zeroize::Zeroizing::new(state), given)))
}

/// A received chain's state.
pub(crate) fn received_sender_key(
    conn: &Connection,
    group_id: &str,
    sender_device_id: &str,
    chain_id: u32,
) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
    Ok(conn
        .query_row(
            "SELECT state FROM sender_keys_received
             WHERE group_id = ?1 AND sender_device_id = ?2 AND chain_id = ?3",
            params![group_id, sender_device_id, chain_id],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .optional()?
        .map(zeroize::Zeroizing::new))
}

/// A trusted notice key.
pub(crate) fn notice_key(conn: &Connection, key_id: &str) -> Result<Option<[u8; 32]>> {
    let key: Option<Vec<u8>> = conn
        .query_row(
            "SELECT public FROM notice_keys WHERE key_id = ?1",
            [key_id],
            |r| r.get(0),
        )
        .optional()?;
    Ok(key.and_then(|k| k.try_into().ok()))
}
