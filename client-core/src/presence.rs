//! Presence: whether other users are online and when they were last seen, as the server lets
//! this user see it (mutual contacts only, and only as each owner allows), asked once or
//! followed over the live connection.

use juntos_proto::chat::v1 as chat;

use crate::api::Api;
use crate::error::Result;
use crate::model::records::PresenceInfo;
use crate::shared::Shared;

impl Shared {
    /// The presence of `peers` (phone numbers or user ids) this user may see; the others are
    /// left out. A Network error while the server's presence store is down.
    pub(crate) async fn presence(&self, peers: Vec<String>) -> Result<Vec<PresenceInfo>> {
        let user_ids = self.resolve_all(&peers).await?;
        let request = chat::GetPresenceRequest { user_ids };
        let answer = self.gateway.unary(Api::get_presence, request).await?;
        Ok(answer.users.into_iter().map(PresenceInfo::from).collect())
    }

    /// Follows the presence of `peers` (replacing any earlier list; empty stops): while the
    /// live connection is up (see `start`), each change arrives as `Event::PresenceChanged`,
    /// starting with the current presence of each one this user may see.
    pub(crate) async fn follow_presence(&self, peers: Vec<String>) -> Result<()> {
        let user_ids = self.resolve_all(&peers).await?;
        self.runtime.set_followed(user_ids);
        Ok(())
    }
}
