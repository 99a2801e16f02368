//! How `status` tells what the agent's ledger says of this month: the hours the machine ran (what compute costs)
//! and the hours idle stops kept it off, to the minute.

use skiff::api::Usage;

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
