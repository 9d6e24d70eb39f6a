//! [`LoginStore`] on MongoDB: the production backend (a replica set or a sharded cluster).
//!
//! Collections (shard keys and why are in ARCHITECTURE.md):
//! * `accounts`: `_id` user id, `phone` (unique index), `created_at_ms`, `active_devices` (the
//!   count the device cap is checked against, changed only together with a device's state);
//! * `devices`: `_id` device id, `user_id`, identity keys, `created_at_ms`, `removed_at_ms`,
//!   `prekey_seq` (upload order of its one-time prekeys);
//! * `sessions`: `_id` session id, `user_id`, `device_id`, `revoked_at_ms`, `revoke_reason`;
//! * `refresh_tokens`: `_id` token hash, `session_id`, `expires_at_ms`, `rotated_at_ms`;
//! * `signed_prekeys`: `_id` device id; `one_time_prekeys`: `device_id`, `key_id`, `seq`;
//! * `contacts`: `_id` `{o: owner, c: contact}`, `phone`, `added_at_ms`;
//! * `settings`: `_id` user id, `name`, `about`, `presence`, `profile`, `updated_at_ms` (absent
//!   until the user first changes a setting: defaults apply).
//!
//! Every timestamp is an Int64 of Unix milliseconds. Writes use write concern majority with
//! journaling (set on the database, and on every transaction, by `juntos_store::mongo`).
//! Single-document conditional updates carry the atomic decisions (a phone's account, a refresh
//! token's rotation, the device counter, a one-time prekey handed out by `findOneAndDelete`);
//! where several documents change together they do so in a transaction whose first write is
//! that conditional update, so two racing transactions conflict on it and one retries (the
//! driver labels the conflict `TransientTransactionError`; `juntos_store::transaction!` runs the
//! transaction again).

use std::collections::HashSet;

use async_trait::async_trait;
use futures_util::TryStreamExt as _;
pub use juntos_store::mongo::DEFAULT_DATABASE;
use juntos_store::mongo::{
    Fields as _, MongoStore, Txn, binary, corrupt, index, is_duplicate_key, transaction,
    unique_index,
};
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::ReturnDocument;
use mongodb::{Client, ClientSession, Collection, Database};

use super::{
    Account, AddDeviceOutcome, Contact, Device, LoginStore, NewDevice, NewSession, OneTimePrekey,
    PrekeyBundle, Revocation, RevokeReason, RotateOutcome, Session, Settings, SettingsUpdate,
    SignedPrekey, StoreError, UserDevices, Visibility, unique_in_order,
};

/// A [`LoginStore`] in one MongoDB database.
#[derive(Clone)]
pub struct MongoLoginStore {
    client: Client,
    db: Database,
}

impl std::fmt::Debug for MongoLoginStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoLoginStore")
            .field("database", &self.db.name())
            .finish_non_exhaustive()
    }
}

const ACCOUNTS: &str = "accounts";
const DEVICES: &str = "devices";
const SESSIONS: &str = "sessions";
const REFRESH_TOKENS: &str = "refresh_tokens";
const SIGNED_PREKEYS: &str = "signed_prekeys";
const ONE_TIME_PREKEYS: &str = "one_time_prekeys";
const CONTACTS: &str = "contacts";
const SETTINGS: &str = "settings";

/// The names of the collections, for tests and operators.
pub const COLLECTIONS: &[&str] = &[
    ACCOUNTS,
    DEVICES,
    SESSIONS,
    REFRESH_TOKENS,
    SIGNED_PREKEYS,
    ONE_TIME_PREKEYS,
    CONTACTS,
    SETTINGS,
];

/// Made with [`MongoStore::connect`] (or [`MongoStore::with_client`]).
impl MongoStore for MongoLoginStore {
    async fn with_database(client: Client, db: Database) -> Result<Self, StoreError> {
        let store = Self { client, db };
        store.create_indexes().await?;
        Ok(store)
    }
}

impl MongoLoginStore {
    /// The database this store uses.
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let indexes = [
            (ACCOUNTS, unique_index(doc! { "phone": 1 }, "phone_unique")),
            (
                DEVICES,
                index(
                    doc! { "user_id": 1, "removed_at_ms": 1, "created_at_ms": 1 },
                    "by_user",
                ),
            ),
            (SESSIONS, index(doc! { "device_id": 1 }, "by_device")),
            (
                SESSIONS,
                index(doc! { "revoked_at_ms": 1 }, "by_revoked_at"),
            ),
            (
                REFRESH_TOKENS,
                index(doc! { "session_id": 1 }, "by_session"),
            ),
            (
                ONE_TIME_PREKEYS,
                unique_index(doc! { "device_id": 1, "key_id": 1 }, "device_key_unique"),
            ),
            (
                ONE_TIME_PREKEYS,
                index(doc! { "device_id": 1, "seq": 1 }, "by_device_upload_order"),
            ),
            (
                CONTACTS,
                index(
                    doc! { "_id.o": 1, "added_at_ms": 1, "_id.c": 1 },
                    "by_owner",
                ),
            ),
            (CONTACTS, index(doc! { "_id.c": 1 }, "by_contact")),
        ];
        for (collection, index) in indexes {
            self.collection(collection).create_index(index).await?;
        }
        Ok(())
    }

    /// The collection `name` (one of [`COLLECTIONS`]).
    fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// The document `_id: id` of collection `name`, read with `from_doc`.
    async fn find_by_id<T>(
        &self,
        name: &str,
        id: &str,
        from_doc: fn(&Document) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.collection(name)
            .find_one(doc! { "_id": id })
            .await?
            .map(|d| from_doc(&d))
            .transpose()
    }

    /// Those of `user_ids` that are accounts, read in the transaction of `s` when one is given.
    async fn existing_accounts(
        &self,
        user_ids: &[String],
        s: Option<&mut ClientSession>,
    ) -> Result<HashSet<String>, StoreError> {
        let accounts = self.collection(ACCOUNTS);
        let find = accounts
            .find(doc! { "_id": { "$in": user_ids } })
            .projection(doc! { "_id": 1 });
        let docs: Vec<Document> = match s {
            Some(s) => find.session(&mut *s).await?.stream(s).try_collect().await?,
            None => find.await?.try_collect().await?,
        };
        docs.iter().map(|d| d.string_field("_id")).collect()
    }

    /// Marks `device_id` removed (when it matches `filter` and is active), giving back its slot
    /// under the device cap, and deletes its prekeys; `true` when this call removed it.
    async fn remove_device(
        &self,
        s: &mut ClientSession,
        mut filter: Document,
        device_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        filter.insert("_id", device_id);
        filter.insert("removed_at_ms", Bson::Null);
        let removed = self
            .collection(DEVICES)
            .find_one_and_update(filter, doc! { "$set": { "removed_at_ms": now_ms } })
            .session(&mut *s)
            .await?;
        let Some(device) = removed else {
            return Ok(false);
        };
        let user_id = device.str_field("user_id")?;
        self.collection(ACCOUNTS)
            .update_one(
                doc! { "_id": user_id },
                doc! { "$inc": { "active_devices": -1 } },
            )
            .session(&mut *s)
            .await?;
        self.delete_prekeys(s, device_id).await?;
        Ok(true)
    }

    async fn delete_prekeys(
        &self,
        s: &mut ClientSession,
        device_id: &str,
    ) -> Result<(), StoreError> {
        self.collection(SIGNED_PREKEYS)
            .delete_one(doc! { "_id": device_id })
            .session(&mut *s)
            .await?;
        self.collection(ONE_TIME_PREKEYS)
            .delete_many(doc! { "device_id": device_id })
            .session(&mut *s)
            .await?;
        Ok(())
    }

    /// One attempt of [`LoginStore::rotate_refresh_token`], inside a transaction.
    async fn rotate_in(
        &self,
        s: &mut ClientSession,
        old_hash: &str,
        new_hash: &str,
        new_expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<Txn<RotateOutcome>, StoreError> {
        // The deciding write: only one caller marks the token rotated.
        let claimed = self
            .collection(REFRESH_TOKENS)
            .find_one_and_update(
                doc! { "_id": old_hash, "rotated_at_ms": Bson::Null },
                doc! { "$set": { "rotated_at_ms": now_ms } },
            )
            .session(&mut *s)
            .await?;
        let token = match claimed {
            Some(token) => token,
            None => {
                let found = self
                    .collection(REFRESH_TOKENS)
                    .find_one(doc! { "_id": old_hash })
                    .session(&mut *s)
                    .await?;
                let Some(token) = found else {
                    return Ok(Txn::Commit(RotateOutcome::Invalid));
                };
                // Already rotated: reuse, unless the session is gone already.
                let session_id = token.str_field("session_id")?;
                let revoked = self
                    .collection(SESSIONS)
                    .find_one_and_update(
                        doc! { "_id": session_id, "revoked_at_ms": Bson::Null },
                        doc! { "$set": {
                            "revoked_at_ms": now_ms,
                            "revoke_reason": RevokeReason::RefreshTokenReused.as_str(),
                        } },
                    )
                    .session(&mut *s)
                    .await?;
                let Some(session) = revoked else {
                    return Ok(Txn::Commit(RotateOutcome::Invalid));
                };
                // A device lives as long as its one session.
                let device_id = session.str_field("device_id")?;
                self.remove_device(s, Document::new(), device_id, now_ms)
                    .await?;
                return Ok(Txn::Commit(RotateOutcome::Reused {
                    session_id: session_id.to_owned(),
                }));
            }
        };
        let session_id = token.str_field("session_id")?;
        let session = self
            .collection(SESSIONS)
            .find_one(doc! { "_id": session_id })
            .session(&mut *s)
            .await?
            .map(|d| session_from_doc(&d))
            .transpose()?;
        let Some(session) = session else {
            return Ok(Txn::Abort(RotateOutcome::Invalid));
        };
        if !session.is_active() || token.i64_field("expires_at_ms")? <= now_ms {
            // Nothing may be written: abort the claim.
            return Ok(Txn::Abort(RotateOutcome::Invalid));
        }
        self.collection(REFRESH_TOKENS)
            .insert_one(doc! {
                "_id": new_hash,
                "session_id": session_id,
                "created_at_ms": now_ms,
                "expires_at_ms": new_expires_at_ms,
                "rotated_at_ms": Bson::Null,
            })
            .session(&mut *s)
            .await?;
        Ok(Txn::Commit(RotateOutcome::Rotated { session }))
    }
}

fn account_from_doc(d: &Document) -> Result<Account, StoreError> {
    Ok(Account {
        user_id: d.string_field("_id")?,
        phone: d.string_field("phone")?,
        created_at_ms: d.i64_field("created_at_ms")?,
    })
}

fn device_from_doc(d: &Document) -> Result<Device, StoreError> {
    Ok(Device {
        device_id: d.string_field("_id")?,
        user_id: d.string_field("user_id")?,
        name: d.string_field("name")?,
        platform: i32::try_from(d.i64_field("platform")?).map_err(|e| corrupt("platform", e))?,
        identity_signing_key: d.bytes_field("identity_signing_key")?,
        identity_dh_key: d.bytes_field("identity_dh_key")?,
        created_at_ms: d.i64_field("created_at_ms")?,
        removed_at_ms: d.opt_i64_field("removed_at_ms")?,
    })
}

fn session_from_doc(d: &Document) -> Result<Session, StoreError> {
    Ok(Session {
        session_id: d.string_field("_id")?,
        user_id: d.string_field("user_id")?,
        device_id: d.string_field("device_id")?,
        created_at_ms: d.i64_field("created_at_ms")?,
        revoked_at_ms: d.opt_i64_field("revoked_at_ms")?,
        // An unknown reason still means revoked; keep the time, drop the label.
        revoke_reason: d
            .get_str("revoke_reason")
            .ok()
            .and_then(RevokeReason::parse),
    })
}

fn signed_prekey_from_doc(d: &Document) -> Result<SignedPrekey, StoreError> {
    Ok(SignedPrekey {
        key_id: d.u32_field("key_id")?,
        public_key: d.bytes_field("public_key")?,
        signature: d.bytes_field("signature")?,
    })
}

/// The active devices of `user_id`, oldest first.
const ACTIVE_DEVICES_SORT: fn() -> Document = || doc! { "created_at_ms": 1, "_id": 1 };

#[async_trait]
impl LoginStore for MongoLoginStore {
    async fn find_or_create_account(
        &self,
        phone: &str,
        new_user_id: &str,
        now_ms: i64,
    ) -> Result<(Account, bool), StoreError> {
        let update = doc! { "$setOnInsert": {
            "_id": new_user_id,
            "phone": phone,
            "created_at_ms": now_ms,
            "active_devices": 0_i64,
        } };
        let mut tries = 0;
        loop {
            tries += 1;
            let result = self
                .collection(ACCOUNTS)
                .find_one_and_update(doc! { "phone": phone }, update.clone())
                .upsert(true)
                .return_document(ReturnDocument::After)
                .await;
            match result {
                Ok(Some(d)) => {
                    let account = account_from_doc(&d)?;
                    // New user ids are random: the account is ours only if we inserted it.
                    let created = account.user_id == new_user_id;
                    return Ok((account, created));
                }
                // Two upserts of one new phone race on the unique index. The loser either gets a
                // duplicate-key error or (on some servers) no document at all; either way the
                // winner's account is there to read.
                Ok(None) => {}
                Err(e) if is_duplicate_key(&e) => {}
                Err(e) => return Err(e.into()),
            }
            if let Some(d) = self
                .collection(ACCOUNTS)
                .find_one(doc! { "phone": phone })
                .await?
            {
                return Ok((account_from_doc(&d)?, false));
            }
            if tries >= 5 {
                return Err(StoreError::Corrupt(
                    "account upsert kept racing without a winner".into(),
                ));
            }
        }
    }

    async fn account(&self, user_id: &str) -> Result<Option<Account>, StoreError> {
        self.find_by_id(ACCOUNTS, user_id, account_from_doc).await
    }

    async fn add_device(
        &self,
        device: NewDevice,
        max_devices: u32,
    ) -> Result<AddDeviceOutcome, StoreError> {
        let record = doc! {
            "_id": &device.device_id,
            "user_id": &device.user_id,
            "name": &device.name,
            "platform": i64::from(device.platform),
            "identity_signing_key": binary(&device.identity_signing_key),
            "identity_dh_key": binary(&device.identity_dh_key),
            "created_at_ms": device.created_at_ms,
            "removed_at_ms": Bson::Null,
            "prekey_seq": 0_i64,
        };
        transaction!(self.client, |s| {
            // The deciding write: take a slot on the account's counter, if one is free.
            let slot = self
                .collection(ACCOUNTS)
                .update_one(
                    doc! {
                        "_id": &device.user_id,
                        "active_devices": { "$lt": i64::from(max_devices) },
                    },
                    doc! { "$inc": { "active_devices": 1 } },
                )
                .session(&mut *s)
                .await?;
            if slot.matched_count == 0 {
                Ok(Txn::Abort(AddDeviceOutcome::TooManyDevices))
            } else {
                self.collection(DEVICES)
                    .insert_one(record.clone())
                    .session(&mut *s)
                    .await?;
                Ok(Txn::Commit(AddDeviceOutcome::Added(device.registered())))
            }
        })
    }

    async fn device(&self, device_id: &str) -> Result<Option<Device>, StoreError> {
        self.find_by_id(DEVICES, device_id, device_from_doc).await
    }

    async fn devices(&self, user_id: &str) -> Result<Vec<Device>, StoreError> {
        let docs: Vec<Document> = self
            .collection(DEVICES)
            .find(doc! { "user_id": user_id, "removed_at_ms": Bson::Null })
            .sort(ACTIVE_DEVICES_SORT())
            .await?
            .try_collect()
            .await?;
        docs.iter().map(device_from_doc).collect()
    }

    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        transaction!(self.client, |s| {
            self.collection(SESSIONS)
                .insert_one(doc! {
                    "_id": &session.session_id,
                    "user_id": &session.user_id,
                    "device_id": &session.device_id,
                    "created_at_ms": session.created_at_ms,
                    "revoked_at_ms": Bson::Null,
                    "revoke_reason": Bson::Null,
                })
                .session(&mut *s)
                .await?;
            self.collection(REFRESH_TOKENS)
                .insert_one(doc! {
                    "_id": &session.refresh_token_hash,
                    "session_id": &session.session_id,
                    "created_at_ms": session.created_at_ms,
                    "expires_at_ms": session.refresh_expires_at_ms,
                    "rotated_at_ms": Bson::Null,
                })
                .session(&mut *s)
                .await?;
            Ok(Txn::Commit(()))
        })
    }

    async fn session(&self, session_id: &str) -> Result<Option<Session>, StoreError> {
        self.find_by_id(SESSIONS, session_id, session_from_doc)
            .await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        new_expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<RotateOutcome, StoreError> {
        transaction!(self.client, |s| {
            self.rotate_in(s, old_hash, new_hash, new_expires_at_ms, now_ms)
                .await
        })
    }

    async fn revoke_device_sessions(
        &self,
        user_id: &str,
        device_id: &str,
        now_ms: i64,
        reason: RevokeReason,
    ) -> Result<Vec<String>, StoreError> {
        transaction!(self.client, |s| {
            let owned = self
                .collection(DEVICES)
                .find_one(doc! { "_id": device_id, "user_id": user_id })
                .session(&mut *s)
                .await?;
            if owned.is_none() {
                Ok(Txn::Abort(Vec::new()))
            } else {
                self.remove_device(s, doc! { "user_id": user_id }, device_id, now_ms)
                    .await?;
                let filter = doc! { "device_id": device_id, "user_id": user_id, "revoked_at_ms": Bson::Null };
                let active: Vec<Document> = self
                    .collection(SESSIONS)
                    .find(filter.clone())
                    .sort(doc! { "_id": 1 })
                    .session(&mut *s)
                    .await?
                    .stream(&mut *s)
                    .try_collect()
                    .await?;
                let ids = active
                    .iter()
                    .map(|d| d.string_field("_id"))
                    .collect::<Result<Vec<_>, _>>()?;
                self.collection(SESSIONS)
                    .update_many(
                        doc! { "_id": { "$in": &ids }, "revoked_at_ms": Bson::Null },
                        doc! { "$set": { "revoked_at_ms": now_ms, "revoke_reason": reason.as_str() } },
                    )
                    .session(&mut *s)
                    .await?;
                // Only the owner's sign-out removes the device's keys (also when the device was
                // removed before).
                self.delete_prekeys(s, device_id).await?;
                Ok(Txn::Commit(ids))
            }
        })
    }

    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>, StoreError> {
        let docs: Vec<Document> = self
            .collection(SESSIONS)
            .find(doc! { "revoked_at_ms": { "$gte": since_ms } })
            .sort(doc! { "revoked_at_ms": 1, "_id": 1 })
            .projection(doc! { "revoked_at_ms": 1 })
            .await?
            .try_collect()
            .await?;
        docs.iter()
            .map(|d| {
                Ok(Revocation {
                    session_id: d.string_field("_id")?,
                    revoked_at_ms: d.i64_field("revoked_at_ms")?,
                })
            })
            .collect()
    }

    async fn set_signed_prekey(
        &self,
        device_id: &str,
        prekey: SignedPrekey,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        transaction!(self.client, |s| {
            // A write on the device, so a concurrent removal conflicts with this upload.
            let active = self
                .collection(DEVICES)
                .update_one(
                    doc! { "_id": device_id, "removed_at_ms": Bson::Null },
                    doc! { "$set": { "signed_prekey_at_ms": now_ms } },
                )
                .session(&mut *s)
                .await?;
            if active.matched_count == 0 {
                Ok(Txn::Abort(false))
            } else {
                self.collection(SIGNED_PREKEYS)
                    .replace_one(
                        doc! { "_id": device_id },
                        doc! {
                            "_id": device_id,
                            "key_id": i64::from(prekey.key_id),
                            "public_key": binary(&prekey.public_key),
                            "signature": binary(&prekey.signature),
                            "uploaded_at_ms": now_ms,
                        },
                    )
                    .upsert(true)
                    .session(&mut *s)
                    .await?;
                Ok(Txn::Commit(true))
            }
        })
    }

    async fn signed_prekey(&self, device_id: &str) -> Result<Option<SignedPrekey>, StoreError> {
        self.find_by_id(SIGNED_PREKEYS, device_id, signed_prekey_from_doc)
            .await
    }

    async fn add_one_time_prekeys(
        &self,
        device_id: &str,
        prekeys: Vec<OneTimePrekey>,
        max_stored: u32,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        // The last of a repeated key id wins, at the position of its last occurrence.
        let mut seen = HashSet::new();
        let mut unique: Vec<(usize, &OneTimePrekey)> = prekeys
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, p)| seen.insert(p.key_id))
            .collect();
        unique.reverse();
        let n = i64::try_from(prekeys.len()).map_err(|e| corrupt("prekeys", e))?;
        transaction!(self.client, |s| {
            // Reserve `n` upload positions on the device (and check it is active) in one write.
            let device = self
                .collection(DEVICES)
                .find_one_and_update(
                    doc! { "_id": device_id, "removed_at_ms": Bson::Null },
                    doc! { "$inc": { "prekey_seq": n } },
                )
                .return_document(ReturnDocument::After)
                .session(&mut *s)
                .await?;
            let Some(device) = device else {
                return Ok(Txn::Abort(None));
            };
            let base = device.i64_field("prekey_seq")? - n;
            if !unique.is_empty() {
                let ids: Vec<i64> = unique.iter().map(|(_, p)| i64::from(p.key_id)).collect();
                self.collection(ONE_TIME_PREKEYS)
                    .delete_many(doc! { "device_id": device_id, "key_id": { "$in": ids } })
                    .session(&mut *s)
                    .await?;
                let docs = unique.iter().map(|(i, p)| {
                    doc! {
                        "device_id": device_id,
                        "key_id": i64::from(p.key_id),
                        "public_key": binary(&p.public_key),
                        "seq": base + i64::try_from(*i).unwrap_or(i64::MAX),
                        "uploaded_at_ms": now_ms,
                    }
                });
                self.collection(ONE_TIME_PREKEYS)
                    .insert_many(docs)
                    .session(&mut *s)
                    .await?;
            }
            let count = self
                .collection(ONE_TIME_PREKEYS)
                .count_documents(doc! { "device_id": device_id })
                .session(&mut *s)
                .await?;
            let count = u32::try_from(count).map_err(|e| corrupt("count", e))?;
            if count > max_stored {
                let oldest: Vec<Document> = self
                    .collection(ONE_TIME_PREKEYS)
                    .find(doc! { "device_id": device_id })
                    .sort(doc! { "seq": 1 })
                    .limit(i64::from(count - max_stored))
                    .projection(doc! { "_id": 1 })
                    .session(&mut *s)
                    .await?
                    .stream(&mut *s)
                    .try_collect()
                    .await?;
                let ids: Vec<Bson> = oldest
                    .into_iter()
                    .filter_map(|mut d| d.remove("_id"))
                    .collect();
                self.collection(ONE_TIME_PREKEYS)
                    .delete_many(doc! { "_id": { "$in": ids } })
                    .session(&mut *s)
                    .await?;
                Ok(Txn::Commit(Some(max_stored)))
            } else {
                Ok(Txn::Commit(Some(count)))
            }
        })
    }

    async fn one_time_prekey_count(&self, device_id: &str) -> Result<u32, StoreError> {
        let count = self
            .collection(ONE_TIME_PREKEYS)
            .count_documents(doc! { "device_id": device_id })
            .await?;
        u32::try_from(count).map_err(|e| corrupt("count", e))
    }

    async fn take_bundles(
        &self,
        user_id: &str,
        except_device_id: Option<&str>,
    ) -> Result<Option<Vec<PrekeyBundle>>, StoreError> {
        if self.account(user_id).await?.is_none() {
            return Ok(None);
        }
        let mut filter = doc! { "user_id": user_id, "removed_at_ms": Bson::Null };
        if let Some(except) = except_device_id {
            filter.insert("_id", doc! { "$ne": except });
        }
        let devices = self
            .collection(DEVICES)
            .find(filter)
            .sort(ACTIVE_DEVICES_SORT())
            .await?;
        let devices: Vec<Document> = devices.try_collect().await?;
        let ids: Vec<&str> = devices
            .iter()
            .map(|d| d.str_field("_id"))
            .collect::<Result<_, _>>()?;
        let signed: Vec<Document> = self
            .collection(SIGNED_PREKEYS)
            .find(doc! { "_id": { "$in": &ids } })
            .await?
            .try_collect()
            .await?;
        let mut bundles = Vec::new();
        for device in &devices {
            let device = device_from_doc(device)?;
            let Some(signed) = signed
                .iter()
                .find(|d| d.get_str("_id") == Ok(device.device_id.as_str()))
            else {
                continue;
            };
            // Each one-time prekey is handed out at most once: whoever deletes it gets it.
            let one_time = self
                .collection(ONE_TIME_PREKEYS)
                .find_one_and_delete(doc! { "device_id": &device.device_id })
                .sort(doc! { "seq": 1 })
                .await?
                .map(|d| {
                    Ok::<_, StoreError>(OneTimePrekey {
                        key_id: d.u32_field("key_id")?,
                        public_key: d.bytes_field("public_key")?,
                    })
                })
                .transpose()?;
            bundles.push(PrekeyBundle {
                device_id: device.device_id,
                identity_signing_key: device.identity_signing_key,
                identity_dh_key: device.identity_dh_key,
                signed_prekey: signed_prekey_from_doc(signed)?,
                one_time_prekey: one_time,
            });
        }
        Ok(Some(bundles))
    }

    async fn devices_of(&self, user_ids: &[String]) -> Result<Vec<UserDevices>, StoreError> {
        let unique = unique_in_order(user_ids);
        let existing = self.existing_accounts(&unique, None).await?;
        let devices: Vec<Document> = self
            .collection(DEVICES)
            .find(doc! { "user_id": { "$in": &unique }, "removed_at_ms": Bson::Null })
            .sort(ACTIVE_DEVICES_SORT())
            .await?
            .try_collect()
            .await?;
        let devices = devices
            .iter()
            .map(device_from_doc)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(unique
            .into_iter()
            .filter(|u| existing.contains(u))
            .map(|user_id| UserDevices {
                devices: devices
                    .iter()
                    .filter(|d| d.user_id == user_id)
                    .cloned()
                    .collect(),
                user_id,
            })
            .collect())
    }

    async fn users_by_phones(
        &self,
        phones: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let unique = unique_in_order(phones);
        let found: Vec<Document> = self
            .collection(ACCOUNTS)
            .find(doc! { "phone": { "$in": &unique } })
            .projection(doc! { "_id": 1, "phone": 1 })
            .await?
            .try_collect()
            .await?;
        let mut pairs = Vec::new();
        for phone in unique {
            if let Some(d) = found
                .iter()
                .find(|d| d.get_str("phone") == Ok(phone.as_str()))
            {
                let user_id = d.string_field("_id")?;
                pairs.push((phone, user_id));
            }
        }
        Ok(pairs)
    }

    async fn add_contacts(
        &self,
        owner_user_id: &str,
        contacts: &[(String, String)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let ids: Vec<String> = contacts.iter().map(|(id, _)| id.clone()).collect();
        transaction!(self.client, |s| {
            let owner = self
                .collection(ACCOUNTS)
                .find_one(doc! { "_id": owner_user_id })
                .session(&mut *s)
                .await?;
            if owner.is_none() {
                return Ok(Txn::Abort(()));
            }
            let existing = self.existing_accounts(&ids, Some(&mut *s)).await?;
            for (user_id, phone) in contacts {
                if user_id == owner_user_id || !existing.contains(user_id) {
                    continue;
                }
                self.collection(CONTACTS)
                    .update_one(
                        doc! { "_id": { "o": owner_user_id, "c": user_id } },
                        doc! {
                            "$set": { "phone": phone },
                            "$setOnInsert": { "added_at_ms": now_ms },
                        },
                    )
                    .upsert(true)
                    .session(&mut *s)
                    .await?;
            }
            Ok(Txn::Commit(()))
        })
    }

    async fn contacts(&self, owner_user_id: &str) -> Result<Vec<Contact>, StoreError> {
        let docs: Vec<Document> = self
            .collection(CONTACTS)
            .find(doc! { "_id.o": owner_user_id })
            .sort(doc! { "added_at_ms": 1, "_id.c": 1 })
            .await?
            .try_collect()
            .await?;
        docs.iter()
            .map(|d| {
                let id = d.get_document("_id").map_err(|e| corrupt("_id", e))?;
                Ok(Contact {
                    user_id: id.string_field("c")?,
                    phone: d.string_field("phone")?,
                    added_at_ms: d.i64_field("added_at_ms")?,
                })
            })
            .collect()
    }

    async fn mutual_contacts(
        &self,
        user_id: &str,
        candidates: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let unique = unique_in_order(candidates);
        // Both directions in one query: the user's contacts among the candidates, and the
        // candidates that have the user as a contact.
        let mine: Vec<Document> = unique
            .iter()
            .map(|c| doc! { "o": user_id, "c": c })
            .collect();
        let theirs: Vec<Document> = unique
            .iter()
            .map(|c| doc! { "o": c, "c": user_id })
            .collect();
        let found: Vec<Document> = self
            .collection(CONTACTS)
            .find(doc! { "_id": { "$in": mine.into_iter().chain(theirs).collect::<Vec<_>>() } })
            .projection(doc! { "_id": 1 })
            .await?
            .try_collect()
            .await?;
        let (mut outgoing, mut incoming) = (HashSet::new(), HashSet::new());
        for d in &found {
            let id = d.get_document("_id").map_err(|e| corrupt("_id", e))?;
            let (o, c) = (id.str_field("o")?, id.str_field("c")?);
            if o == user_id {
                outgoing.insert(c.to_owned());
            }
            if c == user_id {
                incoming.insert(o.to_owned());
            }
        }
        Ok(unique
            .into_iter()
            .filter(|c| outgoing.contains(c) && incoming.contains(c))
            .collect())
    }

    async fn settings_of(
        &self,
        user_ids: &[String],
    ) -> Result<Vec<(String, Settings)>, StoreError> {
        let existing = self.existing_accounts(user_ids, None).await?;
        let docs: Vec<Document> = self
            .collection(SETTINGS)
            .find(doc! { "_id": { "$in": user_ids } })
            .await?
            .try_collect()
            .await?;
        let mut stored = std::collections::HashMap::new();
        for d in &docs {
            stored.insert(d.string_field("_id")?, settings_from_doc(d)?);
        }
        Ok(unique_in_order(user_ids)
            .into_iter()
            .filter(|u| existing.contains(u))
            .map(|user_id| {
                let settings = stored.remove(&user_id).unwrap_or_default();
                (user_id, settings)
            })
            .collect())
    }

    async fn update_settings(
        &self,
        user_id: &str,
        update: SettingsUpdate,
        now_ms: i64,
    ) -> Result<Option<Settings>, StoreError> {
        // Accounts are never deleted, so checking first and writing after is safe.
        if self
            .collection(ACCOUNTS)
            .find_one(doc! { "_id": user_id })
            .projection(doc! { "_id": 1 })
            .await?
            .is_none()
        {
            return Ok(None);
        }
        // One single-document upsert: each given field is set on its own, so concurrent
        // updates of different fields both take effect; defaults fill what was never set.
        let defaults = Settings::default();
        let mut set = doc! { "updated_at_ms": now_ms };
        let mut on_insert = doc! {};
        let fields = [
            ("name", update.name.clone(), defaults.name.clone()),
            ("about", update.about.clone(), defaults.about.clone()),
            (
                "presence",
                update.presence.map(|v| v.as_str().to_owned()),
                defaults.presence.as_str().to_owned(),
            ),
            (
                "profile",
                update.profile.map(|v| v.as_str().to_owned()),
                defaults.profile.as_str().to_owned(),
            ),
        ];
        for (key, given, default) in fields {
            match given {
                Some(value) => set.insert(key, value),
                None => on_insert.insert(key, default),
            };
        }
        let mut change = doc! { "$set": set };
        if !on_insert.is_empty() {
            change.insert("$setOnInsert", on_insert);
        }
        self.collection(SETTINGS)
            .find_one_and_update(doc! { "_id": user_id }, change)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await?
            .map(|d| settings_from_doc(&d))
            .transpose()
    }
}

/// A `settings` document, defaults for what is absent.
fn settings_from_doc(stored: &Document) -> Result<Settings, StoreError> {
    let text = |key: &str| stored.get_str(key).unwrap_or_default().to_owned();
    let visibility = |key: &str| match stored.get_str(key) {
        Ok(v) => Visibility::parse(v).ok_or_else(|| corrupt(key, v)),
        Err(_) => Ok(Visibility::default()),
    };
    Ok(Settings {
        name: text("name"),
        about: text("about"),
        presence: visibility("presence")?,
        profile: visibility("profile")?,
    })
}

#[cfg(test)]
mod tests;
