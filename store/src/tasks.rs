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
