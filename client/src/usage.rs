//! How `status` tells what the agent's ledger says of this month: the hours the machine ran (what compute costs)
//! and the hours idle stops kept it off, to the minute. And how `list` tells the month's hours of an AWS workspace
//! without reaching its agent: from the ledger's last reading this machine kept ([`Reading`], written when `status`
//! asks the agent) and the run EC2 reports (its last start, and its stop), as a whole figure or as "at least".

use std::path::Path;

use skiff::api::Usage;

/// What an agent last said of its month, kept in the workspace's folder so `list` can price the month without
/// reaching the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    pub usage: Usage,
    /// When it was read (seconds since the epoch).
    pub read_at_unix: i64,
}

/// The file of the last [`Reading`] in a workspace's folder.
const READING_FILE: &str = "usage.json";

impl Reading {
    /// Keeps `usage`, read at `now`, in the workspace's `folder`. Best effort: it only feeds `list`'s estimate.
    pub fn keep(folder: &Path, usage: &Usage, now: i64) {
        let reading = Self {
            usage: *usage,
            read_at_unix: now,
        };
        if let Ok(text) = serde_json::to_vec(&reading)
            && let Err(error) = skiff::atomic::write(&folder.join(READING_FILE), &text, 0o600)
        {
            tracing::debug!(%error, "keeping the agent's usage reading");
        }
    }

    /// The last reading kept in `folder`, if any.
    pub fn last(folder: &Path) -> Option<Self> {
        let text = std::fs::read(folder.join(READING_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// An AWS workspace's machine as EC2 tells it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    pub running: bool,
    /// Its last start (EC2's `LaunchTime`).
    pub started_unix: Option<i64>,
    /// When it stopped, if it is stopped.
    pub stopped_unix: Option<i64>,
    /// When it was made (its root volume's attachment).
    pub created_unix: Option<i64>,
}

/// Seconds a machine ran this month: the whole figure, or at least `seconds` when runs no one told this machine
/// about may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunTime {
    pub seconds: i64,
    pub whole: bool,
}

/// How far apart a launch and its first start may be and still be one (EC2 attaches the root volume at launch).
const SAME_MOMENT_SECONDS: i64 = 300;

/// What `machine` ran this month at `now`, from the last `reading` of its ledger (ignored when it is another
/// month's) and its last run as EC2 tells it.
pub fn running_this_month(reading: Option<&Reading>, machine: &Machine, now: i64) -> RunTime {
    let month_start = skiff::calendar::month_start(now);
    // The last run: from the last start to now, or to the stop.
    let last_run = match (machine.started_unix, machine.running) {
        (Some(start), true) => Some((start, now)),
        (Some(start), false) => machine
            .stopped_unix
            .filter(|stop| *stop >= start)
            .map(|stop| (start, stop)),
        (None, _) => None,
    };
    let this_month = |(start, end): (i64, i64)| (end - start.max(month_start)).max(0);
    let reading = reading.filter(|reading| {
        reading.usage.month_start_unix == month_start && reading.read_at_unix <= now
    });
    match (reading, last_run) {
        // The run the reading saw (the agent answered, so the machine was up): the ledger counted it up to the
        // reading, EC2 tells the rest.
        (Some(reading), Some((start, end))) if start <= reading.read_at_unix => RunTime {
            seconds: reading.usage.running_seconds + (end - reading.read_at_unix).max(0),
            whole: true,
        },
        // A later run: its time is known, the end of the one the reading saw and any between are not.
        (Some(reading), Some(run)) => RunTime {
            seconds: reading.usage.running_seconds + this_month(run),
            whole: false,
        },
        (Some(reading), None) => RunTime {
            seconds: reading.usage.running_seconds,
            whole: false,
        },
        // No reading: the last run is the whole month only when it is the machine's first, made this month.
        (None, Some(run)) => RunTime {
            seconds: this_month(run),
            whole: machine.created_unix.is_some_and(|created| {
                created >= month_start && (run.0 - created).abs() <= SAME_MOMENT_SECONDS
            }),
        },
        (None, None) => RunTime {
            seconds: 0,
            whole: false,
        },
    }
}

/// `seconds` as hours and minutes, rounded down to the minute: `0h 00m`, `12h 05m`, `230h 40m`.
pub fn hours_minutes(seconds: i64) -> String {
    let minutes = seconds.max(0) / 60;
    format!("{}h {:02}m", minutes / 60, minutes % 60)
}

/// The `this month` line of `status`.
pub fn describe(usage: &Usage) -> String {
    let mut line = format!("{} running", hours_minutes(usage.running_seconds));
    if usage.idle_stops > 0 || usage.idle_off_seconds > 0 {
        line.push_str(&format!(
            "; {} idle stop{} kept it off {}",
            usage.idle_stops,
            if usage.idle_stops == 1 { "" } else { "s" },
            hours_minutes(usage.idle_off_seconds)
        ));
    }
    if let Some(since) = usage.ledger_since_unix
        && since > usage.month_start_unix
    {
        line.push_str(&format!(" (recorded since {})", rfc3339_minute(since)));
    }
    line
}

/// `unix` as `2026-12-07 09:30 UTC`.
fn rfc3339_minute(unix: i64) -> String {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    let text = humantime::format_rfc3339_seconds(time).to_string();
    // 2026-12-07T09:30:00Z
    format!("{} {} UTC", &text[..10], &text[11..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(running: i64, idle_off: i64, idle_stops: u32, since: Option<i64>) -> Usage {
        Usage {
            month_start_unix: 1_796_083_200, // 2026-12-01T00:00:00Z
            running_seconds: running,
            idle_off_seconds: idle_off,
            idle_stops,
            up_since_unix: None,
            ledger_since_unix: since,
        }
    }

    /// 2026-12-10T12:00:00Z.
    const NOW: i64 = 1_796_083_200 + 9 * 86_400 + 12 * 3_600;

    fn reading(running: i64, read_at: i64) -> Reading {
        Reading {
            usage: usage(running, 0, 0, None),
            read_at_unix: read_at,
        }
    }

    #[test]
    fn a_month_s_hours_come_from_the_last_reading_and_ec2_s_last_run() {
        let hour = 3_600;
        let running = |started: i64| Machine {
            running: true,
            started_unix: Some(started),
            stopped_unix: None,
            created_unix: Some(NOW - 20 * 86_400),
        };
        // Read an hour ago with 10 h on the ledger, still the same run: 11 h, whole.
        let read = reading(10 * hour, NOW - hour);
        assert_eq!(
            running_this_month(Some(&read), &running(NOW - 3 * hour), NOW),
            RunTime {
                seconds: 11 * hour,
                whole: true
            }
        );
        // Stopped since, half an hour after the reading: 10.5 h, whole.
        let stopped = Machine {
            running: false,
            stopped_unix: Some(NOW - hour / 2),
            ..running(NOW - 3 * hour)
        };
        assert_eq!(
            running_this_month(Some(&read), &stopped, NOW),
            RunTime {
                seconds: 10 * hour + hour / 2,
                whole: true
            }
        );
        // Started again after the reading: the new run counts, what came between is unknown.
        assert_eq!(
            running_this_month(Some(&read), &running(NOW - hour / 4), NOW),
            RunTime {
                seconds: 10 * hour + hour / 4,
                whole: false
            }
        );
        // Last month's reading is no help; the run is clipped to this month and is at least that.
        let old = Reading {
            usage: Usage {
                month_start_unix: 1_793_491_200, // 2026-11-01
                ..read.usage
            },
            read_at_unix: NOW - 12 * 86_400,
        };
        assert_eq!(
            running_this_month(Some(&old), &running(NOW - 11 * 86_400), NOW),
            RunTime {
                seconds: 9 * 86_400 + 12 * hour,
                whole: false
            }
        );
        // Made this month and never stopped: its one run is the month.
        let fresh = Machine {
            created_unix: Some(NOW - 2 * hour - 5),
            ..running(NOW - 2 * hour)
        };
        assert_eq!(
            running_this_month(None, &fresh, NOW),
            RunTime {
                seconds: 2 * hour,
                whole: true
            }
        );
        // Nothing known.
        assert_eq!(
            running_this_month(None, &Machine::default(), NOW),
            RunTime {
                seconds: 0,
                whole: false
            }
        );
    }

    #[test]
    fn a_reading_is_kept_in_the_workspace_s_folder() {
        let folder = tempfile::tempdir().unwrap();
        assert_eq!(Reading::last(folder.path()), None);
        let read = reading(3_600, NOW);
        Reading::keep(folder.path(), &read.usage, NOW);
        assert_eq!(Reading::last(folder.path()), Some(read));
    }

    #[test]
    fn hours_and_minutes_round_down_to_the_minute() {
        assert_eq!(hours_minutes(0), "0h 00m");
        assert_eq!(hours_minutes(59), "0h 00m");
        assert_eq!(hours_minutes(3_600 * 12 + 5 * 60 + 59), "12h 05m");
        assert_eq!(hours_minutes(3_600 * 230 + 40 * 60), "230h 40m");
        assert_eq!(hours_minutes(-5), "0h 00m");
    }

    #[test]
    fn the_line_names_idle_stops_and_when_the_ledger_began() {
        assert_eq!(
            describe(&usage(7_200, 0, 0, Some(1_796_000_000))),
            "2h 00m running"
        );
        assert_eq!(
            describe(&usage(9_000, 61_200, 1, Some(1_796_000_000))),
            "2h 30m running; 1 idle stop kept it off 17h 00m"
        );
        assert_eq!(
            describe(&usage(
                60,
                120,
                2,
                Some(1_796_083_200 + 6 * 86_400 + 9 * 3_600 + 30 * 60)
            )),
            "0h 01m running; 2 idle stops kept it off 0h 02m (recorded since 2026-12-07 09:30 UTC)"
        );
    }
}
