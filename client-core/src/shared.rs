//! [`Shared`]: what a client and its handles share, the one device this library runs: its
//! connection to the gateway, its database, its clock and home directory, and what runs while
//! it is started. The work itself is in `impl Shared` blocks in the modules that own it
//! (`account.rs`, `messaging/`, `presence.rs`, `profile.rs`); `client/` exports it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use juntos_clock::SharedClock;
use juntos_proto::login::v1 as login;

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::gateway::Gateway;
use crate::model::records::Event;
use crate::runtime::Runtime;
use crate::store::Store;
use crate::store::messaging as db;

/// The name of the database file inside the client's home directory.
pub(crate) const DATABASE_FILE: &str = "client.db";

/// Most users one question about people (their presence, their profiles) or one follow list may
/// name (the server's cap).
const MAX_USERS: usize = 256;

/// One device: its state in `<home_dir>/client.db` and its connection to one server (the
/// gateway).
pub(crate) struct Shared {
    /// The gateway's calls with this device's tokens.
    pub(crate) gateway: Gateway,
    pub(crate) store: Arc<Store>,
    pub(crate) clock: SharedClock,
    /// Where the database lives; downloads go to `media/` in it unless told otherwise.
    pub(crate) home_dir: PathBuf,
    /// The app's listener, the background tasks, their wake-ups and the locks they share.
    pub(crate) runtime: Runtime,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("gateway", &self.gateway)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The device kept in `home_dir` (created if missing, private to this user), talking to the
    /// gateway at `server_url`. Does not touch the network.
    pub(crate) fn open(
        server_url: &str,
        extra_ca_pem: Option<&str>,
        home_dir: PathBuf,
        clock: SharedClock,
    ) -> Result<Self> {
        if home_dir.as_os_str().is_empty() {
            return Err(ClientError::InvalidInput {
                message: "home directory is empty".to_owned(),
            });
        }
        let api = Api::new(server_url, extra_ca_pem)?;
        create_private_dir(&home_dir)?;
        let store = Arc::new(Store::open(&home_dir.join(DATABASE_FILE))?);
        Ok(Self {
            gateway: Gateway::new(api, Arc::clone(&store), Arc::clone(&clock)),
            store,
            clock,
            home_dir,
            runtime: Runtime::default(),
        })
    }

    /// Tells the app's listener, if any.
    pub(crate) fn emit(&self, event: Event) {
        self.runtime.emit(event);
    }

    /// The signed-in user and device.
    pub(crate) fn me_ids(&self) -> Result<(String, String)> {
        let session = self.store.session()?.ok_or(ClientError::NotSignedIn)?;
        Ok((session.user_id, session.device_id))
    }

    /// The user `peer` names: an E.164 phone number (resolved through the directory and
    /// remembered) or a user id.
    pub(crate) async fn resolve(&self, peer: &str) -> Result<String> {
        let peer = peer.trim();
        if !peer.starts_with('+') {
            if peer.is_empty()
                || peer.len() > 64
                || !peer.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(ClientError::InvalidInput {
                    message: "not a phone number or user id".to_owned(),
                });
            }
            return Ok(peer.to_owned());
        }
        if let Some(user_id) = self.store.read(|c| db::contact_by_phone(c, peer))? {
            return Ok(user_id);
        }
        let request = login::ResolvePhonesRequest {
            phones: vec![peer.to_owned()],
        };
        let answer = self.gateway.unary(Api::resolve_phones, request).await?;
        let Some(found) = answer.contacts.into_iter().find(|c| c.phone == peer) else {
            return Err(ClientError::InvalidInput {
                message: "no Juntos user has this number".to_owned(),
            });
        };
        self.store
            .write(|tx| tx.save_contact(&found.user_id, &found.phone))?;
        Ok(found.user_id)
    }

    /// The user ids `peers` name (phone numbers or user ids), at most [`MAX_USERS`].
    pub(crate) async fn resolve_all(&self, peers: &[String]) -> Result<Vec<String>> {
        if peers.len() > MAX_USERS {
            return Err(ClientError::InvalidInput {
                message: format!("at most {MAX_USERS} users at a time"),
            });
        }
        let mut ids = Vec::with_capacity(peers.len());
        for peer in peers {
            ids.push(self.resolve(peer).await?);
        }
        Ok(ids)
    }
}

/// Creates `dir` (and its parents) if missing; a directory this creates is private to the user
/// (it will hold keys and tokens).
fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    Ok(())
}
