//! Background tasks with an owner: dropping [`Tasks`] aborts them. And the graceful shutdown
//! they and the servers drain on: one [`ShutdownTrigger`], any number of [`Shutdown`] listeners
//! ([`shutdown_channel`]).

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A set of background tasks that are aborted when the set is dropped.
#[derive(Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Spawns `future` on the current runtime, owned by this set.
    pub fn spawn(&mut self, future: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(future));
    }

    /// Takes over the tasks of `other`.
    pub fn extend(&mut self, mut other: Tasks) {
        self.0.append(&mut other.0);
    }
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("count", &self.0.len())
            .finish()
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Fires the shutdown.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// Waits for the shutdown; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new, unfired shutdown.
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), Shutdown(rx))
}

impl ShutdownTrigger {
    /// Starts the shutdown.
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once the shutdown has started (at once if it already has, or if the trigger is
    /// gone).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|fired| *fired).await;
    }

    /// [`Shutdown::wait`] as an owned future.
    pub async fn wait_owned(mut self) {
        self.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_the_set_aborts_its_tasks() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut tasks = Tasks::default();
        tasks.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        });
        drop(tasks);
        // The task held the only sender; aborting it drops the sender and closes the channel.
        assert!(rx.recv().await.is_none());
    }
}
