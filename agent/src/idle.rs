//! The activity model behind idle shutdown: who used the workspace last, what keeps it busy now,
//! and a wait that ends once nothing has happened for the idle timeout.
//!
//! Sources are named so that `skiff status` can say why a workspace is still up. Only real use counts:
//! bytes from the user, running commands, builds. Keep-alives never call [`Activity::touch`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use skiff::api::IdleStatus;
use tokio::sync::Notify;

/// Names of activity sources, as `skiff status` shows them.
pub mod source {
    /// `skiff up` itself.
    pub const UP: &str = "up";
    /// The agent was started by a client command.
    pub const AGENT_START: &str = "agent start";
    /// A running exec (shell or command).
    pub const EXEC: &str = "exec";
    /// Bytes typed into or piped to an exec.
    pub const EXEC_INPUT: &str = "exec input";
    /// Bytes sent into a forwarded connection.
    pub const FORWARD: &str = "forward";
    /// An image build or a lifecycle command.
    pub const BUILD: &str = "build";
    /// An upload of the workspace's files.
    pub const UPLOAD: &str = "upload";
}

#[derive(Debug)]
struct State {
    last: SystemTime,
    last_source: &'static str,
    busy: BTreeMap<&'static str, usize>,
}

/// The workspace's activity.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

impl Activity {
    /// Starts counting from now, as if `source` had just happened.
    pub fn new(source: &'static str) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                last: SystemTime::now(),
                last_source: source,
                busy: BTreeMap::new(),
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `source` just happened.
    pub fn touch(&self, source: &'static str) {
        let mut state = self.lock();
        state.last = SystemTime::now();
        state.last_source = source;
        drop(state);
        self.changed.notify_waiters();
    }

    /// Marks `source` busy until the guard drops; a busy workspace never counts as idle.
    pub fn busy(self: &Arc<Self>, source: &'static str) -> BusyGuard {
        *self.lock().busy.entry(source).or_default() += 1;
        self.touch(source);
        BusyGuard {
            activity: Arc::clone(self),
            source,
        }
    }

    /// The countdown as `skiff status` shows it.
    pub fn status(&self, timeout: Option<Duration>) -> IdleStatus {
        let state = self.lock();
        let idle = SystemTime::now()
            .duration_since(state.last)
            .unwrap_or_default();
        let busy_sources: Vec<String> = state
            .busy
            .keys()
            .map(|source| (*source).to_owned())
            .collect();
        let stops_in_seconds = match timeout {
            Some(timeout) if busy_sources.is_empty() => {
                Some(timeout.saturating_sub(idle).as_secs())
            }
            _ => None,
        };
        IdleStatus {
            timeout_seconds: timeout.map_or(0, |timeout| timeout.as_secs()),
            idle_seconds: idle.as_secs(),
            stops_in_seconds,
            last_activity_source: state.last_source.to_owned(),
            last_activity_unix_ms: state
                .last
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| {
                    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
                }),
            busy_sources,
        }
    }

    /// Returns once nothing has been busy and nothing has happened for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            // Register interest before reading the state, so a change in between is not missed.
            let changed = self.changed.notified();
            let wait = {
                let state = self.lock();
                if state.busy.is_empty() {
                    let idle = SystemTime::now()
                        .duration_since(state.last)
                        .unwrap_or_default();
                    if idle >= timeout {
                        return;
                    }
                    Some(timeout - idle)
                } else {
                    None
                }
            };
            match wait {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Keeps a source busy while it lives.
#[derive(Debug)]
pub struct BusyGuard {
    activity: Arc<Activity>,
    source: &'static str,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut state = self.activity.lock();
        if let Some(count) = state.busy.get_mut(self.source) {
            *count -= 1;
            if *count == 0 {
                state.busy.remove(self.source);
            }
        }
        drop(state);
        // The end of a busy period is when the idle countdown starts.
        self.activity.touch(self.source);
    }
}
