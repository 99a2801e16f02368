//! The agent's tasks, owned: every task a component starts beyond the call that started it (an `up`'s
//! lifecycle commands after `ready`, a command's process, an SSH connection) is spawned through a [`Tasks`],
//! so `Agent::serve` can wait for them when it stops, and end those still running after a grace period.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A set of tasks that ends together.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    /// Cancelled once the grace period is over: tasks still running then are dropped.
    ending: CancellationToken,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `future` on a task of the set; its output is `None` when the set ended it first.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let ending = self.ending.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                output = future => Some(output),
                () = ending.cancelled() => None,
            }
        })
    }

    /// Runs `work` on the blocking pool, as a task of the set (which cannot end it early: blocking work
    /// of the agent checks whether anyone still wants its result).
    pub fn spawn_blocking<F, T>(&self, work: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.tracker.spawn_blocking(work)
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Takes no more tasks, waits up to `grace` for those running, then ends the rest and waits for them
    /// (blocking work at most one more second).
    pub async fn end(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::info!(
                tasks = self.tracker.len(),
                "tasks still running {grace:?} after the agent stopped; ending them"
            );
            self.ending.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), self.tracker.wait()).await;
        }
    }
}
