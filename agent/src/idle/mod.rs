//! The activity model behind idle shutdown: who used the workspace last, what keeps it busy now, and
//! the countdown that ends once nothing has happened for the idle timeout.
//!
//! Only real use counts: bytes from the user, commands that run without a terminal, builds and
//! lifecycle commands, `skiff up`, a pin, and (opt-in) a busy CPU. An open but silent shell or
//! forwarded connection does not, and keep-alives never call [`Activity::touch`].
//!
//! The last activity is saved in the state folder with the machine's boot id, so a restarted agent
//! keeps counting (a crash loop cannot keep a machine up) while a fresh boot starts a fresh countdown
//! (a started workspace never stops at once).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use skiff::api::IdleStatus;
use tokio::sync::{Notify, broadcast};

/// Names of activity sources, as `skiff status` shows them.
pub mod source {
    /// `skiff up` itself.
    pub const UP: &str = "up";
    /// The machine booted (a fresh countdown).
    pub const BOOT: &str = "boot";
    /// The agent was started by a client command.
    pub const AGENT_START: &str = "agent start";
    /// A command running without a terminal.
    pub const EXEC: &str = "exec";
    /// Bytes typed into a shell or piped to a command.
    pub const EXEC_INPUT: &str = "exec input";
    /// Bytes sent into a forwarded connection.
    pub const FORWARD: &str = "forward";
    /// An image build.
    pub const BUILD: &str = "build";
    /// A lifecycle command such as postCreateCommand.
    pub const LIFECYCLE: &str = "lifecycle command";
    /// An upload of the workspace's files.
    pub const UPLOAD: &str = "upload";
    /// A pin (`skiff keepalive`).
    pub const PIN: &str = "pin";
    /// The dev container's CPU use above the configured threshold.
    pub const CPU: &str = "cpu busy";
    /// Input in a Session Manager shell opened by other means than skiff.
    pub const SESSION_MANAGER: &str = "session manager shell";
    /// A client's `stop` or `delete` in progress (held, not counted as use).
    pub const CALL: &str = "call in progress";
}

/// How long a freshly started agent waits before an idle stop that was already due (or the timeout, if shorter):
/// the client that started it (for `delete`, `logs`, `status`…) connects within it, rather than finding the agent
/// gone. It adds no
/// activity, so a restarted agent still stops on the countdown it restored.
pub const STARTUP_GRACE: Duration = Duration::from_secs(2);

/// How long before stopping attached clients are warned: five minutes, or a fifth of a shorter timeout.
pub fn warning_lead(timeout: Duration) -> Duration {
    (timeout / 5).min(Duration::from_secs(5 * 60))
}

#[derive(Debug)]
struct State {
    last: SystemTime,
    last_source: String,
    busy: BTreeMap<&'static str, usize>,
    pinned_until: Option<SystemTime>,
    timeout: Option<Duration>,
    busy_cpu_percent: Option<f64>,
    /// The `last` the current warning was sent for, so each countdown warns once.
    warned_for: Option<SystemTime>,
    saved_at: Option<Instant>,
    /// Activity newer than what is saved (a save was skipped to keep writes to one a second).
    dirty: bool,
}

impl State {
    /// When the countdown started: the last activity, or the end of a pin if later.
    fn countdown_start(&self) -> SystemTime {
        match self.pinned_until {
            Some(pinned) if pinned > self.last => pinned,
            _ => self.last,
        }
    }
}

/// What is saved across agent restarts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Saved {
    last_activity_unix_ms: i64,
    source: String,
    boot_id: String,
    pinned_until_unix_ms: Option<i64>,
}

/// The workspace's activity.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<State>,
    changed: Notify,
    notices: broadcast::Sender<String>,
    /// Where the last activity is saved, with the boot id it belongs to.
    saved: Option<(PathBuf, String)>,
    /// When the agent started counting, for [`STARTUP_GRACE`].
    started: Instant,
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// The running kernel's boot id, which changes on every boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

impl Activity {
    /// Starts counting from now, as if `source` had just happened; nothing is saved.
    pub fn new(source: &'static str, timeout: Option<Duration>) -> Arc<Self> {
        Self::build(
            State {
                last: SystemTime::now(),
                last_source: source.to_owned(),
                busy: BTreeMap::new(),
                pinned_until: None,
                timeout,
                busy_cpu_percent: None,
                warned_for: None,
                saved_at: None,
                dirty: false,
            },
            None,
        )
    }

    /// Picks up the activity saved at `path` if it belongs to this boot (`boot_id`); otherwise starts a fresh
    /// countdown from now. Later activity is saved there.
    pub fn restore(path: PathBuf, boot_id: String, timeout: Option<Duration>) -> Arc<Self> {
        let saved: Option<Saved> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        let now = SystemTime::now();
        let (last, last_source, pinned_until) = match saved {
            Some(saved) if saved.boot_id == boot_id && !boot_id.is_empty() => {
                let last = from_unix_ms(saved.last_activity_unix_ms).min(now);
                tracing::info!(
                    last_activity = %saved.source,
                    idle_seconds = now.duration_since(last).unwrap_or_default().as_secs(),
                    "kept the last activity from before the agent restarted"
                );
                (
                    last,
                    saved.source,
                    saved.pinned_until_unix_ms.map(from_unix_ms),
                )
            }
            Some(_) => {
                tracing::info!(
                    "the machine booted since the last activity; the idle countdown starts afresh"
                );
                (now, source::BOOT.to_owned(), None)
            }
            None => (now, source::AGENT_START.to_owned(), None),
        };
        let activity = Self::build(
            State {
                last,
                last_source,
                busy: BTreeMap::new(),
                pinned_until,
                timeout,
                busy_cpu_percent: None,
                warned_for: None,
                saved_at: None,
                dirty: false,
            },
            Some((path, boot_id)),
        );
        activity.save(&mut activity.lock(), true);
        activity
    }

    fn build(state: State, saved: Option<(PathBuf, String)>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(state),
            changed: Notify::new(),
            notices: broadcast::channel(8).0,
            saved,
            started: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Saves the last activity, at most once a second unless `force`.
    fn save(&self, state: &mut State, force: bool) {
        let Some((path, boot_id)) = &self.saved else {
            return;
        };
        if !force
            && state
                .saved_at
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
        {
            return;
        }
        state.saved_at = Some(Instant::now());
        let saved = Saved {
            last_activity_unix_ms: unix_ms(state.last),
            source: state.last_source.clone(),
            boot_id: boot_id.clone(),
            pinned_until_unix_ms: state.pinned_until.map(unix_ms),
        };
        let text = serde_json::to_vec(&saved).expect("the activity record serialises");
        if let Err(error) = skiff::atomic::write(path, &text, 0o600) {
            tracing::warn!("saving the last activity to {}: {error}", path.display());
        }
    }

    /// Saves activity that a throttled save skipped; called about once a second.
    pub fn flush(&self) {
        let mut state = self.lock();
        if state.dirty {
            self.save(&mut state, true);
        }
    }

    /// Records that `source` just happened.
    pub fn touch(&self, source: &'static str) {
        self.touch_at(source, SystemTime::now());
    }

    /// Records that `source` happened at `when`; an older time than the last activity changes nothing.
    pub fn touch_at(&self, source: &str, when: SystemTime) {
        let mut state = self.lock();
        if when <= state.last {
            return;
        }
        state.last = when.min(SystemTime::now());
        if state.last_source != source {
            state.last_source = source.to_owned();
            self.save(&mut state, true);
        } else {
            self.save(&mut state, false);
        }
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
            is_use: true,
        }
    }

    /// Holds off an idle stop while the guard lives, without counting as use: neither taking nor dropping it
    /// restarts the countdown (a client's `delete` in progress is not a reason to keep the workspace up after).
    pub fn hold(self: &Arc<Self>, source: &'static str) -> BusyGuard {
        *self.lock().busy.entry(source).or_default() += 1;
        BusyGuard {
            activity: Arc::clone(self),
            source,
            is_use: false,
        }
    }

    /// Keeps the workspace up for `duration` from now, or ends the pin with `None`; returns the pin in force.
    pub fn pin(&self, duration: Option<Duration>) -> Option<SystemTime> {
        let mut state = self.lock();
        state.pinned_until = duration.map(|duration| SystemTime::now() + duration);
        state.last = SystemTime::now();
        state.last_source = source::PIN.to_owned();
        self.save(&mut state, true);
        let pinned = state.pinned_until;
        drop(state);
        tracing::info!(pinned_until_unix_ms = pinned.map(unix_ms), "pin changed");
        self.changed.notify_waiters();
        pinned
    }

    /// The idle timeout in force.
    pub fn timeout(&self) -> Option<Duration> {
        self.lock().timeout
    }

    /// Changes the idle timeout; the countdown keeps its start.
    pub fn set_timeout(&self, timeout: Option<Duration>) {
        self.lock().timeout = timeout;
        tracing::info!(
            timeout_seconds = timeout.map(|timeout| timeout.as_secs()),
            "idle timeout changed"
        );
        self.changed.notify_waiters();
    }

    /// The CPU threshold that counts as activity, if any.
    pub fn busy_cpu_percent(&self) -> Option<f64> {
        self.lock().busy_cpu_percent
    }

    /// Changes the CPU threshold (`None` turns it off).
    pub fn set_busy_cpu_percent(&self, percent: Option<f64>) {
        self.lock().busy_cpu_percent = percent.filter(|percent| *percent > 0.0);
    }

    /// Warnings for attached clients, such as "stops in 5m".
    pub fn notices(&self) -> broadcast::Receiver<String> {
        self.notices.subscribe()
    }

    /// The countdown as `skiff status` shows it.
    pub fn status(&self) -> IdleStatus {
        let state = self.lock();
        let now = SystemTime::now();
        let idle = now.duration_since(state.last).unwrap_or_default();
        let mut busy_sources: Vec<String> = state
            .busy
            .keys()
            .map(|source| (*source).to_owned())
            .collect();
        let pinned_until = state.pinned_until.filter(|pinned| *pinned > now);
        if pinned_until.is_some() {
            busy_sources.push(source::PIN.to_owned());
        }
        let stops_in_seconds = match state.timeout {
            Some(timeout) if busy_sources.is_empty() => {
                let counted = now
                    .duration_since(state.countdown_start())
                    .unwrap_or_default();
                Some(timeout.saturating_sub(counted).as_secs())
            }
            _ => None,
        };
        IdleStatus {
            timeout_seconds: state.timeout.map_or(0, |timeout| timeout.as_secs()),
            idle_seconds: idle.as_secs(),
            stops_in_seconds,
            last_activity_source: state.last_source.clone(),
            last_activity_unix_ms: unix_ms(state.last),
            busy_sources,
            pinned_until_unix_ms: pinned_until.map(unix_ms),
            busy_cpu_percent: state.busy_cpu_percent,
        }
    }

    /// Returns once the workspace has been idle for the timeout: nothing busy, no pin, no activity.
    /// Warns attached clients once per countdown, shortly before.
    pub async fn idle(&self) {
        loop {
            // Register interest before reading the state, so a change in between is not missed.
            let changed = self.changed.notified();
            let wait = {
                let mut state = self.lock();
                let now = SystemTime::now();
                match state.timeout {
                    None => None,
                    Some(_) if !state.busy.is_empty() => None,
                    Some(timeout) => {
                        let counted = now
                            .duration_since(state.countdown_start())
                            .unwrap_or_default();
                        let grace_left = STARTUP_GRACE
                            .min(timeout)
                            .saturating_sub(self.started.elapsed());
                        let warn_at = timeout - warning_lead(timeout);
                        if counted >= timeout && !grace_left.is_zero() {
                            Some(grace_left)
                        } else if counted >= timeout {
                            tracing::info!(
                                idle_seconds = now.duration_since(state.last).unwrap_or_default().as_secs(),
                                last_activity = %state.last_source,
                                timeout_seconds = timeout.as_secs(),
                                "idle for the timeout"
                            );
                            return;
                        } else if counted >= warn_at {
                            let start = state.countdown_start();
                            if state.warned_for != Some(start) {
                                state.warned_for = Some(start);
                                let left = timeout - counted;
                                let notice = format!(
                                    "skiff: this workspace is idle and stops in {}s; type or run something to keep it up",
                                    left.as_secs().max(1)
                                );
                                tracing::info!(
                                    stops_in_seconds = left.as_secs(),
                                    "warning attached clients"
                                );
                                let _ = self.notices.send(notice);
                            }
                            Some(timeout - counted)
                        } else {
                            Some(warn_at - counted)
                        }
                    }
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
    /// Whether its end counts as use (a busy period) or not (a hold).
    is_use: bool,
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
        if self.is_use {
            // The end of a busy period is when the idle countdown starts.
            self.activity.touch(self.source);
        } else {
            self.activity.changed.notify_waiters();
        }
    }
}

/// The latest input time of Session Manager shells on this machine: shells whose parent is an
/// `ssm-session-worker`, read from their terminal's access time as `w` reads idle times.
/// `proc_root` is `/proc` outside tests.
pub fn session_manager_input(
    proc_root: &std::path::Path,
    dev_root: &std::path::Path,
) -> Option<SystemTime> {
    let mut workers = std::collections::HashSet::new();
    let mut processes = Vec::new();
    for entry in std::fs::read_dir(proc_root).ok()?.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp session tty_nr …`; comm may hold spaces, so split after the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let command = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let (Some(parent), Some(tty)) = (
            fields.get(1).and_then(|field| field.parse::<u32>().ok()),
            fields.get(4).and_then(|field| field.parse::<u32>().ok()),
        ) else {
            continue;
        };
        if command == "ssm-session-worker" {
            workers.insert(pid);
        }
        processes.push((parent, tty));
    }
    processes
        .into_iter()
        .filter(|(parent, tty)| workers.contains(parent) && *tty != 0)
        .filter_map(|(_, tty)| {
            // Pseudo-terminals have major numbers 136 to 143; the minor number is the pts index.
            let major = (tty >> 8) & 0xfff;
            let minor = (tty & 0xff) | ((tty >> 12) & 0xfff00);
            if !(136..=143).contains(&major) {
                return None;
            }
            let index = (major - 136) * 256 + minor;
            std::fs::metadata(dev_root.join("pts").join(index.to_string()))
                .ok()?
                .accessed()
                .ok()
        })
        .max()
}

#[cfg(test)]
mod tests;
