use super::*;

const HOUR: i64 = 3_600;
const MINUTE: i64 = 60;

fn at(text: &str) -> i64 {
    unix(humantime::parse_rfc3339(text).expect("an RFC 3339 time"))
}

fn entries(folder: &Path) -> Vec<(bool, String)> {
    read(&folder.join("ledger.jsonl"))
        .into_iter()
        .map(|entry| (entry.up, entry.reason))
        .collect()
}

#[test]
fn the_month_starts_on_the_first_at_midnight_utc() {
    for (now, first) in [
        ("2026-12-07T11:24:30Z", "2026-12-01T00:00:00Z"),
        ("2024-02-29T23:59:59Z", "2024-02-01T00:00:00Z"),
        ("2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z"),
        ("2000-12-31T12:00:00Z", "2000-12-01T00:00:00Z"),
        ("1970-01-01T00:00:01Z", "1970-01-01T00:00:00Z"),
        ("2100-03-15T08:00:00Z", "2100-03-01T00:00:00Z"),
    ] {
        assert_eq!(month_start(at(now)), at(first), "{now}");
    }
}

#[test]
fn a_machine_is_up_from_its_boot_and_an_agent_restart_continues_the_same_up() {
    let folder = tempfile::tempdir().unwrap();
    let boot = at("2026-12-07T09:00:00Z");
    let ledger = Ledger::open(folder.path(), "boot-a", Some(boot), true, boot + 90);
    drop(ledger);
    // The agent crashed and systemd started it again, same boot: nothing new on record.
    let ledger = Ledger::open(folder.path(), "boot-a", Some(boot), true, boot + HOUR);
    assert_eq!(
        entries(folder.path()),
        vec![(true, reason::BOOT.to_owned())]
    );
    let now = boot + 2 * HOUR + 30 * MINUTE;
    let usage = ledger.usage(month_start(now), now);
    assert_eq!(usage.running_seconds, 2 * HOUR + 30 * MINUTE);
    assert_eq!(usage.up_since, Some(boot));
    assert_eq!(usage.idle_off_seconds, 0);
}

#[test]
fn an_idle_stop_then_a_boot_counts_the_hours_it_kept_the_machine_off() {
    let folder = tempfile::tempdir().unwrap();
    let boot = at("2026-12-07T09:00:00Z");
    let ledger = Ledger::open(folder.path(), "boot-a", Some(boot), true, boot + 60);
    ledger.down(reason::IDLE, boot + 3 * HOUR);
    // A second down (the agent's exit after the poweroff began) adds nothing.
    ledger.down(reason::STOP, boot + 3 * HOUR + 5);
    drop(ledger);
    let next_boot = boot + 20 * HOUR;
    let ledger = Ledger::open(
        folder.path(),
        "boot-b",
        Some(next_boot),
        true,
        next_boot + 40,
    );
    let now = next_boot + HOUR;
    let usage = ledger.usage(month_start(now), now);
    assert_eq!(usage.running_seconds, 4 * HOUR, "three hours, then one");
    assert_eq!(usage.idle_off_seconds, 17 * HOUR);
    assert_eq!(usage.idle_stops, 1);
    assert_eq!(
        entries(folder.path()),
        vec![
            (true, reason::BOOT.to_owned()),
            (false, reason::IDLE.to_owned()),
            (true, reason::BOOT.to_owned()),
        ]
    );
}

#[test]
fn a_down_nobody_recorded_is_dated_at_the_last_heartbeat() {
    let folder = tempfile::tempdir().unwrap();
    let boot = at("2026-12-07T09:00:00Z");
    let ledger = Ledger::open(folder.path(), "boot-a", Some(boot), true, boot + 60);
    ledger.beat(boot + 47 * MINUTE);
    // The machine lost power: no down on record. It boots again two hours later.
    drop(ledger);
    let next_boot = boot + 2 * HOUR;
    let ledger = Ledger::open(
        folder.path(),
        "boot-b",
        Some(next_boot),
        true,
        next_boot + 30,
    );
    assert_eq!(
        entries(folder.path()),
        vec![
            (true, reason::BOOT.to_owned()),
            (false, reason::UNRECORDED.to_owned()),
            (true, reason::BOOT.to_owned()),
        ]
    );
    let now = next_boot + 10 * MINUTE;
    let usage = ledger.usage(month_start(now), now);
    assert_eq!(usage.running_seconds, 47 * MINUTE + 10 * MINUTE);
    assert_eq!(usage.idle_off_seconds, 0, "not an idle stop");
}

#[test]
fn a_manual_stop_then_an_agent_start_on_the_laptop() {
    let folder = tempfile::tempdir().unwrap();
    let start = at("2026-12-07T09:00:00Z");
    // The local provider: the laptop booted long ago; the workspace is up while its agent serves.
    let laptop_boot = Some(start - 30 * HOUR);
    let ledger = Ledger::open(folder.path(), "laptop", laptop_boot, false, start);
    ledger.down(reason::STOP, start + 25 * MINUTE);
    drop(ledger);
    let ledger = Ledger::open(folder.path(), "laptop", laptop_boot, false, start + HOUR);
    ledger.down(reason::IDLE, start + HOUR + 10 * MINUTE);
    let now = start + 3 * HOUR;
    let usage = ledger.usage(month_start(now), now);
    assert_eq!(usage.running_seconds, 35 * MINUTE);
    assert_eq!(usage.idle_off_seconds, HOUR + 50 * MINUTE);
    assert_eq!(usage.up_since, None, "down now");
    assert_eq!(
        entries(folder.path()),
        vec![
            (true, reason::AGENT_START.to_owned()),
            (false, reason::STOP.to_owned()),
            (true, reason::AGENT_START.to_owned()),
            (false, reason::IDLE.to_owned()),
        ]
    );
}

#[test]
fn only_this_months_part_of_an_up_or_an_idle_stop_counts() {
    let entries = [
        Entry {
            at: at("2026-11-30T22:00:00Z"),
            up: true,
            reason: reason::BOOT.into(),
            boot: "a".into(),
        },
        Entry {
            at: at("2026-12-01T01:00:00Z"),
            up: false,
            reason: reason::IDLE.into(),
            boot: "a".into(),
        },
        Entry {
            at: at("2026-12-01T05:30:00Z"),
            up: true,
            reason: reason::BOOT.into(),
            boot: "b".into(),
        },
    ];
    let now = at("2026-12-01T06:00:00Z");
    let usage = usage(&entries, month_start(now), now);
    assert_eq!(usage.running_seconds, HOUR + 30 * MINUTE);
    assert_eq!(usage.idle_off_seconds, 4 * HOUR + 30 * MINUTE);
    assert_eq!(usage.idle_stops, 1);
    assert_eq!(usage.since, Some(at("2026-11-30T22:00:00Z")));
    // November saw two hours of it.
    let november = super::usage(
        &entries,
        at("2026-11-01T00:00:00Z"),
        at("2026-12-01T00:00:00Z"),
    );
    assert_eq!(november.running_seconds, 2 * HOUR);
}

#[test]
fn a_line_that_cannot_be_read_is_skipped_and_the_rest_kept() {
    let folder = tempfile::tempdir().unwrap();
    let boot = at("2026-12-07T09:00:00Z");
    std::fs::write(
        folder.path().join("ledger.jsonl"),
        format!(
            "{{\"at\":{boot},\"up\":true,\"reason\":\"boot\",\"boot\":\"a\"}}\nnot json\n{{\"at\":{},\"up\":false,\"reason\":\"stop\",\"boot\":\"a\"}}\n",
            boot + HOUR
        ),
    )
    .unwrap();
    let ledger = Ledger::open(
        folder.path(),
        "b",
        Some(boot + 2 * HOUR),
        true,
        boot + 2 * HOUR,
    );
    let now = boot + 3 * HOUR;
    assert_eq!(
        ledger.usage(month_start(now), now).running_seconds,
        2 * HOUR
    );
}

#[test]
fn an_agent_stopped_and_started_again_on_a_machine_that_kept_running_counts_all_of_it() {
    let folder = tempfile::tempdir().unwrap();
    let start = at("2026-12-07T09:00:00Z");
    let ledger = Ledger::open(folder.path(), "a", Some(start), true, start);
    ledger.down(reason::STOP, start + HOUR);
    drop(ledger);
    // The same boot, the agent stopped on record and started again an hour later: the machine never went down
    // (it did not boot), so it ran, and cost, all along; and ups never overlap.
    let ledger = Ledger::open(folder.path(), "a", Some(start), true, start + 2 * HOUR);
    let now = start + 3 * HOUR;
    assert_eq!(
        ledger.usage(month_start(now), now).running_seconds,
        3 * HOUR
    );
    assert_eq!(
        entries(folder.path()),
        vec![
            (true, reason::BOOT.to_owned()),
            (false, reason::STOP.to_owned()),
            (true, reason::AGENT_START.to_owned()),
        ]
    );
}

#[test]
fn a_retired_ledger_writes_nothing_more() {
    let folder = tempfile::tempdir().unwrap();
    let start = at("2026-12-07T09:00:00Z");
    let ledger = Ledger::open(folder.path(), "a", Some(start), true, start);
    let before = std::fs::read_to_string(folder.path().join("ledger.jsonl")).unwrap();
    ledger.retire();
    ledger.down(reason::STOP, start + HOUR);
    ledger.beat(start + HOUR);
    assert_eq!(
        std::fs::read_to_string(folder.path().join("ledger.jsonl")).unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(folder.path().join("ledger.heartbeat")).unwrap(),
        start.to_string()
    );
}
