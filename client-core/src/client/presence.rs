//! [`Presence`]: `client.presence()`.

use std::sync::Arc;

use crate::error::Result;
use crate::model::records::PresenceInfo;
use crate::shared::Shared;

/// Presence: whether other users are online, as the server lets this user see it (mutual
/// contacts only, and only as each owner allows).
#[derive(Debug, uniffi::Object)]
pub struct Presence {
    shared: Arc<Shared>,
}

impl Presence {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[uniffi::export(async_runtime = "tokio")]
impl Presence {
    /// The presence of `peers` (phone numbers or user ids) this user may see; the others are
    /// left out. A Network error while the server's presence store is down.
    pub async fn get(&self, peers: Vec<String>) -> Result<Vec<PresenceInfo>> {
        self.shared.presence(peers).await
    }

    /// Follows the presence of `peers` (replacing any earlier list; empty stops): while the
    /// live connection is up (see `Client.start`), each change arrives as
    /// `Event::PresenceChanged`, starting with the current presence of each one this user may
    /// see.
    pub async fn follow(&self, peers: Vec<String>) -> Result<()> {
        self.shared.follow_presence(peers).await
    }
}
