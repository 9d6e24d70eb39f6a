//! The doorbell: wakes a device's live `Connect` stream when its mailbox got something, and
//! tells an older stream of the same device that a newer one took over.
//!
//! This one is in process: a registry of the streams connected to this process. The mailbox is
//! the truth and a stream also polls it on every heartbeat tick, so a lost ring only delays
//! delivery. With several chat pods, [`super::RedisRoutes`] sits in front of it: it maps
//! each device connected here to this pod in Redis and rings devices connected elsewhere through
//! their pod's pub/sub channel, whose subscriber calls [`Doorbell::ring`] there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The streams connected to this process, one per device.
#[derive(Debug, Default)]
pub struct Doorbell {
    devices: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    signals: Arc<Signals>,
}

#[derive(Debug, Default)]
struct Signals {
    rung: Notify,
    replaced: Notify,
}

impl Doorbell {
    /// A doorbell with nobody connected.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Registers a new stream of `device_id`; an older stream of the device is told it was
    /// replaced. The registration ends when the returned value is dropped.
    pub fn register(self: &Arc<Self>, device_id: &str) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let signals = Arc::new(Signals::default());
        let old = self.lock().insert(
            device_id.to_owned(),
            Entry {
                id,
                signals: Arc::clone(&signals),
            },
        );
        if let Some(old) = old {
            // `notify_one` keeps a permit, so the old stream sees it even if not waiting now.
            old.signals.replaced.notify_one();
        }
        Registration {
            doorbell: Arc::clone(self),
            device_id: device_id.to_owned(),
            id,
            signals,
        }
    }

    /// Wakes `device_id`'s stream, if one is connected here.
    pub fn ring(&self, device_id: &str) {
        if let Some(entry) = self.lock().get(device_id) {
            entry.signals.rung.notify_one();
        }
    }

    /// Wakes every stream connected here (after doorbells may have been lost).
    pub fn ring_all(&self) {
        for entry in self.lock().values() {
            entry.signals.rung.notify_one();
        }
    }

    /// How many devices have a stream here.
    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    /// Whether `device_id` has a stream here.
    pub fn is_connected(&self, device_id: &str) -> bool {
        self.lock().contains_key(device_id)
    }

    /// The devices with a stream here.
    pub fn devices(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        juntos_store::lock(&self.devices)
    }
}

/// One stream's place in the [`Doorbell`].
#[derive(Debug)]
pub struct Registration {
    doorbell: Arc<Doorbell>,
    device_id: String,
    id: u64,
    signals: Arc<Signals>,
}

impl Registration {
    /// Resolves when the device's mailbox was rung since the last call.
    pub async fn rung(&self) {
        self.signals.rung.notified().await;
    }

    /// Resolves once a newer stream of the device has registered.
    pub async fn replaced(&self) {
        self.signals.replaced.notified().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut devices = self.doorbell.lock();
        // Only remove our own entry, never the one that replaced us.
        if devices
            .get(&self.device_id)
            .is_some_and(|e| e.id == self.id)
        {
            devices.remove(&self.device_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn resolves(f: impl std::future::Future<Output = ()>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_ring_before_waiting_is_not_lost() {
        let bell = Doorbell::new();
        let reg = bell.register("d1");
        bell.ring("d1");
        bell.ring("d2");
        assert!(resolves(reg.rung()).await);
        assert!(!resolves(reg.rung()).await, "one permit, not two");
    }

    #[tokio::test]
    async fn a_second_registration_replaces_the_first() {
        let bell = Doorbell::new();
        let first = bell.register("d1");
        let second = bell.register("d1");
        assert!(resolves(first.replaced()).await);
        assert!(!resolves(second.replaced()).await);
        bell.ring("d1");
        assert!(resolves(second.rung()).await);
        assert!(!resolves(first.rung()).await);
        // The replaced stream ending does not unregister the new one.
        drop(first);
        assert_eq!(bell.connected(), 1);
        drop(second);
        assert_eq!(bell.connected(), 0);
    }
}
