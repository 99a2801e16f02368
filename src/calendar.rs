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

/// The start of the month after `now`'s, UTC, in seconds since the epoch.
pub fn next_month_start(now: i64) -> i64 {
    // The 32nd day after a month's first is always in the next month.
    month_start(month_start(now) + 32 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

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
