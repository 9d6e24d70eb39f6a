//! What runs while a client is started: the app's listener, the background tasks (the outbox
//! worker and the live connection) and their wake-ups, and the locks that keep sends in order
//! and sessions from advancing twice from one state.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::model::records::{Event, EventListener};

/// What runs while a client is started, and the locks its work shares.
#[derive(Default)]
pub(crate) struct Runtime {
    /// The app's listener, told every [`Event`].
    listener: Mutex<Option<Arc<dyn EventListener>>>,
    /// The background tasks (the outbox worker and the live connection).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Wakes the outbox worker.
    pub(crate) outbox_wake: Arc<Notify>,
    /// Held while the outbox drains, so sends leave in order (and while a status is keyed and
    /// encrypted, so no two users of a sending chain interleave).
    pub(crate) drain: tokio::sync::Mutex<()>,
    /// Held from reading a ratchet state to saving its successor (never across an await), so
    /// sending and receiving never both advance the same session from one state: that would
    /// reuse a message key.
    crypto: Mutex<()>,
    /// The users whose presence the live connection follows.
    followed: Mutex<Vec<String>>,
    /// Wakes the live connection when `followed` changes.
    pub(crate) follow_wake: Arc<Notify>,
    /// (audience, sender device) pairs whose missing chain this process asked for already.
    asked_for_keys: Mutex<HashSet<(String, String)>>,
}

impl Runtime {
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        juntos_store::lock(m)
    }

    /// Tells the listener, if any.
    pub(crate) fn emit(&self, event: Event) {
        let listener = Self::lock(&self.listener).clone();
        if let Some(listener) = listener {
            listener.on_event(event);
        }
    }

    /// Makes `listener` the one told of events.
    pub(crate) fn set_listener(&self, listener: Option<Arc<dyn EventListener>>) {
        *Self::lock(&self.listener) = listener;
    }

    /// Ends the background tasks running now and runs the ones `spawn` starts instead.
    pub(crate) fn restart(&self, spawn: impl FnOnce() -> Vec<JoinHandle<()>>) {
        let mut tasks = Self::lock(&self.tasks);
        for task in tasks.drain(..) {
            task.abort();
        }
        tasks.extend(spawn());
    }

    /// Ends the background tasks.
    pub(crate) fn stop(&self) {
        for task in Self::lock(&self.tasks).drain(..) {
            task.abort();
        }
    }

    /// The crypto lock (see the field).
    pub(crate) fn crypto(&self) -> std::sync::MutexGuard<'_, ()> {
        Self::lock(&self.crypto)
    }

    /// The users whose presence is followed.
    pub(crate) fn followed(&self) -> Vec<String> {
        Self::lock(&self.followed).clone()
    }

    /// Whether to ask `sender_device` for its chain for `audience` (once per process).
    pub(crate) fn first_ask(&self, audience: &str, sender_device: &str) -> bool {
        let mut asked = Self::lock(&self.asked_for_keys);
        if asked.len() >= 10_000 {
            asked.clear();
        }
        asked.insert((audience.to_owned(), sender_device.to_owned()))
    }

    /// Replaces the followed users and tells the live connection.
    pub(crate) fn set_followed(&self, user_ids: Vec<String>) {
        *Self::lock(&self.followed) = user_ids;
        self.follow_wake.notify_one();
    }
}
