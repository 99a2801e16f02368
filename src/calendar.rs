//! Calendar months in UTC, as AWS bills by them: where a month starts and how long it is, from seconds since the
//! epoch, with no date library (the agent's ledger and the client's cost figures both need only this).

/// The start of `now`'s calendar month, UTC, in seconds since the epoch.
pub fn month_start(now: i64) -> i64 {
    // Days since the epoch to a civil date (Howard Hinnant's `civil_from_days`), then back from the first.
    let days = now.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day_of_month = day_of_year - (153 * month_index + 2) / 5 + 1;
    (days - (day_of_month - 1)) * 86_400
}

/// Days since the epoch of a civil date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The first `YYYY-MM-DD HH:MM:SS` (UTC) in `text`, in seconds since the epoch: how EC2 dates a state transition
/// (`User initiated (2026-12-01 10:00:00 GMT)`).
pub fn find_utc_timestamp(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(18)).find_map(|start| {
        let candidate = text.get(start..start + 19)?;
        let shape = candidate
            .bytes()
            .enumerate()
            .all(|(index, byte)| match index {
                4 | 7 => byte == b'-',
                10 => byte == b' ',
                13 | 16 => byte == b':',
                _ => byte.is_ascii_digit(),
            });
        if !shape {
            return None;
        }
        let number = |range: std::ops::Range<usize>| candidate[range].parse::<i64>().ok();
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        let valid = (1..=12).contains(&month)
            && (1..=31).contains(&day)
            && hour < 24
            && minute < 60
            && second < 61;
        valid.then(|| {
            days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second
        })
    })
}

/// Now, in seconds since the epoch (0 for a clock before it).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| i64::try_from(since.as_secs()).unwrap_or(0))
}

/// The start of the month after `now`'s, UTC, in seconds since the epoch.
pub fn next_month_start(now: i64) -> i64 {
    // The 32nd day after a month's first is always in the next month.
    month_start(month_start(now) + 32 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ec2_transition_reason_gives_its_time() {
        assert_eq!(
            find_utc_timestamp("User initiated (2026-12-07 16:00:00 GMT)"),
            Some(1_796_659_200)
        );
        assert_eq!(find_utc_timestamp("User initiated"), None);
        assert_eq!(find_utc_timestamp("(2026-13-07 16:00:00 GMT)"), None);
    }

    #[test]
    fn months_have_their_lengths() {
        // 2026-12-07T16:00:00Z: December has 31 days; 2028-02-10: a leap February has 29.
        let december = 1_796_659_200;
        assert_eq!(month_start(december), 1_796_083_200);
        assert_eq!(
            next_month_start(december) - month_start(december),
            31 * 86_400
        );
        let leap_february = 1_833_753_600;
        assert_eq!(
            next_month_start(leap_february) - month_start(leap_february),
            29 * 86_400
        );
    }
}
