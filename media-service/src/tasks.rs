//! Background tasks with an owner: dropping [`Tasks`] aborts them.

use std::future::Future;

use tokio::task::JoinHandle;

/// A set of background tasks that are aborted when the set is dropped.
#[derive(Default)]
pub struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    /// Spawns `future` on the current runtime, owned by this set.
    pub fn spawn(&mut self, future: impl Future<Output = ()> + Send + 'static) {
        self.0.push(tokio::spawn(future));
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
