//! The gateway's task bookkeeping: every task it spawns (HTTP connections, sessions, sockets, dialled
//! connections) ends when the gateway's token is cancelled, and `Gateway::shutdown` waits until the last one
//! has ended, by waiting for the last clone of the `alive` sender to drop (the mini-redis pattern).

use std::future::Future;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Spawns tasks that stop with the gateway and are counted until they end.
#[derive(Clone, Debug)]
pub(crate) struct Tasks {
    /// The gateway's token; every task's token is this one or a child of it.
    pub cancel: CancellationToken,
    alive: mpsc::Sender<()>,
}

impl Tasks {
    /// Tasks stopped by `cancel`, and the receiver that yields `None` once every task (and every `Tasks`
    /// clone) is gone.
    pub(crate) fn new(cancel: CancellationToken) -> (Self, mpsc::Receiver<()>) {
        let (alive, ended) = mpsc::channel(1);
        (Self { cancel, alive }, ended)
    }

    /// Runs `future` until it ends or the gateway stops.
    pub(crate) fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.spawn_until(self.cancel.clone(), future);
    }

    /// Runs `future` until it ends or `cancel` (a child of the gateway's token) is cancelled.
    pub(crate) fn spawn_until(
        &self,
        cancel: CancellationToken,
        future: impl Future<Output = ()> + Send + 'static,
    ) {
        let alive = self.alive.clone();
        tokio::spawn(async move {
            let _alive = alive;
            tokio::select! {
                () = cancel.cancelled() => {}
                () = future => {}
            }
        });
    }
}
