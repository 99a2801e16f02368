//! When the workspace's machine ran: a ledger of ups and downs with their reasons, kept in the state folder across
//! agent restarts and reboots, from which `skiff status` reads this month's running hours (what compute costs) and
//! the hours idle stops kept the machine off.
//!
//! On a machine of its own (the AWS provider: idle action `poweroff`) an up is the machine's boot (from the kernel's
//! boot time) and a down is an idle poweroff or the agent stopped with the machine; an agent restarted within one
//! boot (a crash, a replacement) continues the same up. With the local provider the machine is the laptop, and an
//! up is the agent serving the workspace. A down nobody recorded (the machine lost power, the agent was killed with
//! it) is found at the next start, when the boot id changed, and dated at the agent's last heartbeat, written every
//! [`HEARTBEAT`]: the ledger is right to within that.
//!
//! The ledger is one JSON object per line, appended and synced; a line that cannot be read is skipped with a
//! warning, never fatal, since cost figures must not stop a workspace.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How often the agent notes that it still runs, bounding a down nobody recorded.
pub const HEARTBEAT: Duration = Duration::from_secs(60);

/// Why the machine went up or down, as `skiff status --json` shows it.
pub mod reason {
    /// The machine booted (a machine of its own).
    pub const BOOT: &str = "boot";
    /// The agent started serving (the local provider, or the agent restarted after a recorded stop).
    pub const AGENT_START: &str = "agent start";
    /// The idle timeout stopped it.
    pub const IDLE: &str = "idle stop";
    /// Stopped: `skiff stop`, the machine shut down, or the agent was told to exit.
    pub const STOP: &str = "stop";
    /// It went down without the agent recording it (power lost, killed); dated at the last heartbeat.
    pub const UNRECORDED: &str = "unrecorded (dated at the last heartbeat)";
}

/// One line of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// Whether the machine went up (true) or down.
    pub up: bool,
    pub reason: String,
    /// The boot id of the kernel the entry was written under.
    pub boot: String,
}

/// What the ledger says of one period (a calendar month, in practice).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Seconds the machine ran in the period.
    pub running_seconds: i64,
    /// Seconds the machine was off after an idle stop, up to its next start (or the period's end).
    pub idle_off_seconds: i64,
    /// Idle stops in the period.
    pub idle_stops: u32,
    /// When the current up began, if the machine runs.
    pub up_since: Option<i64>,
    /// The ledger's first entry: figures before it are unknown.
    pub since: Option<i64>,
}

/// The ledger of one state folder.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    heartbeat: PathBuf,
    boot: String,
    entries: Mutex<Vec<Entry>>,
    /// Set when the workspace is deleted: its state folder is about to go, so nothing more is written there.
    retired: std::sync::atomic::AtomicBool,
}

/// The seconds since the epoch of `time`.
pub fn unix(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
        })
}

/// When the running kernel booted (`btime` in `/proc/stat`).
pub fn boot_time() -> Option<i64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|seconds| seconds.trim().parse().ok())
}

pub use skiff::calendar::month_start;

impl Ledger {
    /// Opens the ledger in `state_dir` for the kernel `boot` (booted at `boot_time`) at `now`, closing a previous
    /// boot's up that nobody closed (at its last heartbeat) and opening this one's: from the boot on a machine
    /// of its own (`machine`), else from now. An agent restarted within an open up of this boot continues it.
    pub fn open(
        state_dir: &Path,
        boot: &str,
        boot_time: Option<i64>,
        machine: bool,
        now: i64,
    ) -> Self {
        let path = state_dir.join("ledger.jsonl");
        let heartbeat = state_dir.join("ledger.heartbeat");
        let entries = read(&path);
        let ledger = Self {
            path,
            heartbeat,
            boot: boot.to_owned(),
            entries: Mutex::new(entries),
            retired: std::sync::atomic::AtomicBool::new(false),
        };
        let last = ledger.lock().last().cloned();
        let mut floor = last.as_ref().map_or(i64::MIN, |entry| entry.at);
        match last {
            Some(entry) if entry.up && entry.boot == boot && !boot.is_empty() => {
                tracing::debug!(
                    since = entry.at,
                    "the ledger's up continues: the agent restarted"
                );
                ledger.beat(now);
                return ledger;
            }
            Some(entry) if entry.up => {
                // The previous boot (or an agent whose boot is unknown) ended without a down on record.
                let heard = std::fs::read_to_string(&ledger.heartbeat)
                    .ok()
                    .and_then(|text| text.trim().parse::<i64>().ok())
                    .filter(|heard| *heard >= entry.at && *heard <= now)
                    .unwrap_or(entry.at);
                ledger.record(Entry {
                    at: heard,
                    up: false,
                    reason: reason::UNRECORDED.to_owned(),
                    boot: entry.boot,
                });
                floor = heard;
            }
            _ => {}
        }
        let (at, why) = match boot_time {
            // A machine that did not boot since the last down (its agent alone was stopped) ran all along.
            Some(booted) if machine && booted <= now && booted < floor => {
                (floor, reason::AGENT_START)
            }
            Some(booted) if machine && booted <= now => (booted, reason::BOOT),
            _ => (now.max(floor), reason::AGENT_START),
        };
        ledger.record(Entry {
            at,
            up: true,
            reason: why.to_owned(),
            boot: boot.to_owned(),
        });
        ledger.beat(now);
        ledger
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Writes nothing more: the workspace was deleted and its state folder is about to be removed.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn append(&self, entry: Entry) -> std::io::Result<()> {
        // In memory first: the figures stay right for this run even when the disk refuses the line.
        self.lock().push(entry.clone());
        if self.retired() {
            return Ok(());
        }
        let mut line = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        file.sync_data()?;
        Ok(())
    }

    /// Appends `entry`; a ledger that cannot be written is said in the log and kept in memory, never fatal.
    fn record(&self, entry: Entry) {
        let (up, why) = (entry.up, entry.reason.clone());
        match self.append(entry) {
            Ok(()) => tracing::info!(
                reason = %why,
                "ledger: the machine {}",
                if up { "is up" } else { "goes down" }
            ),
            Err(error) => tracing::warn!("writing the ledger {}: {error}", self.path.display()),
        }
    }

    /// Notes that the agent still runs at `now` (see [`HEARTBEAT`]).
    pub fn beat(&self, now: i64) {
        if self.retired() {
            return;
        }
        if let Err(error) = skiff::atomic::write(&self.heartbeat, now.to_string().as_bytes(), 0o600)
        {
            tracing::warn!(
                "writing the ledger's heartbeat {}: {error}",
                self.heartbeat.display()
            );
        }
    }

    /// Records that the machine goes down at `now` for `why` (one of [`reason`]), unless it is down already.
    pub fn down(&self, why: &str, now: i64) {
        let open = self.lock().last().is_some_and(|entry| entry.up);
        if !open {
            return;
        }
        self.record(Entry {
            at: now,
            up: false,
            reason: why.to_owned(),
            boot: self.boot.clone(),
        });
    }

    /// The ledger's figures for `[from, now]`.
    pub fn usage(&self, from: i64, now: i64) -> Usage {
        usage(&self.lock(), from, now)
    }

    /// The figures of `now`'s calendar month (UTC), as `Status` carries them.
    pub fn this_month(&self, now: i64) -> skiff::api::Usage {
        let month_start = month_start(now);
        let usage = self.usage(month_start, now);
        skiff::api::Usage {
            month_start_unix: month_start,
            running_seconds: usage.running_seconds,
            idle_off_seconds: usage.idle_off_seconds,
            idle_stops: usage.idle_stops,
            up_since_unix: usage.up_since,
            ledger_since_unix: usage.since,
        }
    }
}

/// The entries of the ledger at `path`; lines that cannot be read are skipped (and said).
fn read(path: &Path) -> Vec<Entry> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .filter_map(|(number, line)| match serde_json::from_str(line) {
            Ok(entry) => Some(entry),
            Err(error) => {
                tracing::warn!(
                    "skipping line {} of the ledger {}: {error}",
                    number + 1,
                    path.display()
                );
                None
            }
        })
        .collect()
}

/// The overlap of `[start, end)` with `[from, now)`, in seconds.
fn overlap(start: i64, end: i64, from: i64, now: i64) -> i64 {
    (end.min(now) - start.max(from)).max(0)
}

/// The figures of `entries` for `[from, now]`: an up still open runs to `now`, an idle stop's off time to the
/// next up (or `now`).
pub fn usage(entries: &[Entry], from: i64, now: i64) -> Usage {
    let mut result = Usage {
        since: entries.first().map(|entry| entry.at),
        ..Usage::default()
    };
    let mut up_since: Option<i64> = None;
    let mut idle_since: Option<i64> = None;
    for entry in entries {
        if entry.up {
            if let Some(off) = idle_since.take() {
                result.idle_off_seconds += overlap(off, entry.at, from, now);
            }
            up_since.get_or_insert(entry.at);
        } else {
            if let Some(start) = up_since.take() {
                result.running_seconds += overlap(start, entry.at, from, now);
            }
            if entry.reason == reason::IDLE {
                if entry.at >= from && entry.at <= now {
                    result.idle_stops += 1;
                }
                idle_since = Some(entry.at);
            }
        }
    }
    if let Some(start) = up_since {
        result.running_seconds += overlap(start, now, from, now);
        result.up_since = Some(start);
    }
    if let Some(off) = idle_since {
        result.idle_off_seconds += overlap(off, now, from, now);
    }
    result
}

#[cfg(test)]
mod tests;
