//! Messaging: the outbox, the inbox, local history and the events apps see.
//!
//! Sending: an action (text, reply, edit, …) becomes a `Content`, stored in the history and
//! queued in the outbox in one transaction, so it survives a crash or a closed app.
//! The outbox drains in order: per recipient device (the peer's devices and this account's other
//! devices) the content is encrypted with that device's Double Ratchet session (made from its
//! prekey bundle on first contact), the session states are saved, then `Chat.Send` stores every
//! envelope at once; a retry reuses the `client_msg_id`, so the server stores nothing twice. A
//! stale device list is fixed from the server's answer and the send retried.
//!
//! Receiving: each envelope is decrypted, applied to the history together with the session state
//! that decrypted it (one transaction), then acknowledged; duplicates are dropped by message id.
//! Delivered receipts go back to the sender automatically.
//!
//! Layout, each file using only those listed before it: `limits` (what is accepted), `e2e` (the
//! crypto module's bytes in and out of the store), `queue` (history and outbox written
//! together), `apply` (what received content does), `directory` (device lists, prekeys),
//! `pairwise` (one content to every device of some users), `sender_keys` (this device's sending
//! chains), then the features: `conversations`, `media`, `groups`, `statuses`, the `outbox`
//! worker and the live connection (`receive`); this file starts the last two.

mod apply;
mod conversations;
mod directory;
mod e2e;
mod groups;
mod limits;
mod media;
mod outbox;
mod pairwise;
mod queue;
mod receive;
mod sender_keys;
mod statuses;

use std::sync::Arc;

use crate::error::Result;
use crate::model::records::EventListener;
use crate::shared::Shared;

impl Shared {
    /// Starts messaging in the background: publishes prekeys if needed, then runs the live
    /// connection (`receive.rs`) and the outbox worker (`outbox.rs`), replacing any running
    /// ones. They end on `runtime.stop()`, on sign-out, when the server ends the session, or
    /// when another connection of this device takes over.
    pub(crate) async fn start(
        self: Arc<Self>,
        listener: Option<Arc<dyn EventListener>>,
    ) -> Result<()> {
        self.me_ids()?;
        self.runtime.set_listener(listener);
        if let Err(e) = self.ensure_prekeys().await {
            tracing::warn!(error = %e, "could not publish prekeys yet; will retry on reconnect");
        }
        self.runtime.restart(|| {
            vec![
                tokio::spawn(outbox::run_outbox(
                    Arc::downgrade(&self),
                    Arc::clone(&self.runtime.outbox_wake),
                )),
                tokio::spawn(receive::run_connection(Arc::clone(&self))),
            ]
        });
        Ok(())
    }
}
