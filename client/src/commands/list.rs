//! `skiff list`: every workspace with its provider, state and folder; `--json` for scripts. A stopped workspace says
//! for how long, and those stopped for longer than `--stale` (14 days unless told) are named after the table with
//! what their disks cost, since a stopped workspace still pays for its storage.

use crate::cli::ListArgs;
use crate::provider::ListRow;

pub async fn run(args: ListArgs) -> anyhow::Result<i32> {
    let stale = humantime::parse_duration(args.stale.trim()).map_err(|error| {
        anyhow::anyhow!(
            "--stale {:?}: {error}; write a duration such as 14d or 12h",
            args.stale
        )
    })?;
    let rows = crate::provider::list(args.all).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("no workspaces yet; create one with `skiff up PATH`");
        return Ok(0);
    }
    let now = skiff::calendar::now_unix();
    let width = rows
        .iter()
        .map(|row| row.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<8}  {:<14}  {:>10}  FOLDER",
        "NAME", "PROVIDER", "STATE", "THIS MONTH"
    );
    for row in &rows {
        println!(
            "{:<width$}  {:<8}  {:<14}  {:>10}  {}",
            row.name,
            row.provider,
            state(row, now),
            month_to_date(row).cell(),
            row.folder
        );
    }
    if let Some(total) = MonthTotal::of(&rows) {
        println!("{total}");
    }
    if args.all {
        print_owners(&rows);
    }
    let stale_rows: Vec<&ListRow> = rows
        .iter()
        .filter(|row| {
            row.stopped_since_unix
                .is_some_and(|since| now - since > stale.as_secs() as i64)
        })
        .collect();
    if !stale_rows.is_empty() {
        let names: Vec<String> = stale_rows
            .iter()
            .map(|row| describe_stale(row, now))
            .collect();
        eprintln!(
            "note: stopped for more than {}, still paying for their disks: {}; `skiff delete NAME` removes one",
            humantime::format_duration(stale),
            names.join(", ")
        );
    }
    Ok(0)
}

/// What a workspace cost this month so far, as far as this machine can tell without reaching AWS agents.
#[derive(Debug, Clone, Copy, PartialEq)]
enum MonthToDate {
    /// The whole figure (a local workspace costs nothing).
    Whole(f64),
    /// At least this much: runs this machine was not told of are missing.
    AtLeast(f64),
    /// No figure: no price cached in the last day (`skiff status NAME` reads them).
    Unknown,
}

impl MonthToDate {
    fn cell(self) -> String {
        match self {
            Self::Whole(usd) => format!("${usd:.2}"),
            Self::AtLeast(usd) => format!("≥${usd:.2}"),
            Self::Unknown => "?".to_owned(),
        }
    }
}

fn month_to_date(row: &ListRow) -> MonthToDate {
    let Some(aws) = &row.aws else {
        return MonthToDate::Whole(0.0);
    };
    match (aws.month_to_date_usd, aws.month_to_date_whole) {
        (Some(usd), Some(true)) => MonthToDate::Whole(usd),
        (Some(usd), _) => MonthToDate::AtLeast(usd),
        (None, _) => MonthToDate::Unknown,
    }
}

/// The line under the table: what every listed AWS workspace cost this month so far.
#[derive(Debug, PartialEq)]
struct MonthTotal {
    usd: f64,
    /// Some figures are floors.
    at_least: bool,
    /// Workspaces without a figure.
    unknown: usize,
}

impl MonthTotal {
    /// The total, when at least one AWS workspace has a figure.
    fn of(rows: &[ListRow]) -> Option<Self> {
        let mut total = Self {
            usd: 0.0,
            at_least: false,
            unknown: 0,
        };
        let mut priced = 0;
        for row in rows.iter().filter(|row| row.aws.is_some()) {
            match month_to_date(row) {
                MonthToDate::Whole(usd) => total.usd += usd,
                MonthToDate::AtLeast(usd) => {
                    total.usd += usd;
                    total.at_least = true;
                }
                MonthToDate::Unknown => {
                    total.unknown += 1;
                    continue;
                }
            }
            priced += 1;
        }
        (priced > 0).then_some(total)
    }
}

impl std::fmt::Display for MonthTotal {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "AWS this month so far: {}${:.2}",
            if self.at_least { "≥" } else { "≈ " },
            self.usd
        )?;
        if self.unknown > 0 {
            write!(
                formatter,
                ", plus {} workspace{} without a price (`skiff status NAME` reads them)",
                self.unknown,
                if self.unknown == 1 { "" } else { "s" }
            )?;
        }
        if self.at_least {
            write!(
                formatter,
                "; ≥ where runs this machine did not see are missing (`skiff status NAME` reads the agent's ledger)"
            )?;
        }
        Ok(())
    }
}

/// What one owner's AWS workspaces cost, for `list --all`.
#[derive(Debug, Default, PartialEq)]
struct OwnerTotal {
    workspaces: usize,
    running: usize,
    /// The running instances' hourly on-demand prices, summed; `priced` of `running` have one.
    hourly_usd: f64,
    priced: usize,
    /// The disks' monthly prices, summed; `disks_priced` of `workspaces` have one.
    storage_usd_month: f64,
    disks_priced: usize,
}

/// The AWS rows by owner, in order.
fn owner_totals(rows: &[ListRow]) -> std::collections::BTreeMap<&str, OwnerTotal> {
    let mut owners = std::collections::BTreeMap::<&str, OwnerTotal>::new();
    for aws in rows.iter().filter_map(|row| row.aws.as_ref()) {
        let total = owners.entry(aws.owner.as_str()).or_default();
        total.workspaces += 1;
        if aws.state == "running" {
            total.running += 1;
            if let Some(hourly) = aws.on_demand_hourly_usd {
                total.hourly_usd += hourly;
                total.priced += 1;
            }
        }
        if let Some(storage) = aws.storage_usd_month {
            total.storage_usd_month += storage;
            total.disks_priced += 1;
        }
    }
    owners
}

/// `list --all`'s table of owners: how many workspaces each has, how many run, and what they cost now.
fn print_owners(rows: &[ListRow]) {
    let owners = owner_totals(rows);
    if owners.is_empty() {
        return;
    }
    let width = owners
        .keys()
        .map(|owner| owner.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!();
    println!(
        "{:<width$}  {:>10}  {:>7}  {:>12}  {:>14}",
        "OWNER", "WORKSPACES", "RUNNING", "$/HOUR NOW", "DISKS $/MONTH"
    );
    let money = |sum: f64, priced: usize, of: usize| {
        if priced == of {
            format!("{sum:.4}")
        } else {
            format!("{sum:.4}+?")
        }
    };
    for (owner, total) in &owners {
        println!(
            "{owner:<width$}  {:>10}  {:>7}  {:>12}  {:>14}",
            total.workspaces,
            total.running,
            money(total.hourly_usd, total.priced, total.running),
            money(
                total.storage_usd_month,
                total.disks_priced,
                total.workspaces
            ),
        );
    }
    if owners
        .values()
        .any(|total| total.priced < total.running || total.disks_priced < total.workspaces)
    {
        eprintln!(
            "note: +? marks a sum missing prices this machine has not read from AWS in the last day (`skiff status NAME --owner OWNER` reads them)"
        );
    }
}

/// The state column: a stopped workspace says for how long.
fn state(row: &ListRow, now: i64) -> String {
    match row.stopped_since_unix {
        Some(since) => format!("{} {}", row.state, ago(now - since)),
        None => row.state.clone(),
    }
}

/// A stale workspace for the note: its name, how long it has been stopped, and its disk and what that costs.
pub(super) fn describe_stale(row: &ListRow, now: i64) -> String {
    let since = row.stopped_since_unix.unwrap_or(now);
    let disk = row.aws.as_ref().and_then(|aws| {
        let gib = aws.volume_gib?;
        Some(match aws.storage_usd_month {
            Some(usd) => format!(", {gib} GiB ≈ ${usd:.2}/month"),
            None => format!(", {gib} GiB"),
        })
    });
    format!(
        "{} ({} {}{})",
        row.name,
        row.provider,
        ago(now - since),
        disk.unwrap_or_default()
    )
}

/// A coarse age: days, else hours, else minutes, else seconds.
pub(super) fn ago(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws_row(owner: &str, state: &str, hourly: Option<f64>, storage: Option<f64>) -> ListRow {
        ListRow {
            name: format!("w-{owner}-{state}"),
            provider: "aws".into(),
            state: state.into(),
            folder: String::new(),
            container_id: None,
            stopped_since_unix: None,
            status: None,
            aws: Some(crate::provider::AwsRow {
                name: String::new(),
                state: state.into(),
                region: "eu-west-1".into(),
                instance_id: None,
                instance_type: Some("t3.large".into()),
                owner: owner.into(),
                folder: None,
                volume_gib: Some(40),
                storage_usd_month: storage,
                on_demand_hourly_usd: hourly,
                month_to_date_usd: None,
                month_to_date_whole: None,
            }),
        }
    }

    #[test]
    fn the_month_column_and_its_total_say_what_is_whole_and_what_is_a_floor() {
        let mut whole = aws_row("alice", "running", Some(0.1), Some(3.2));
        if let Some(aws) = whole.aws.as_mut() {
            aws.month_to_date_usd = Some(1.5);
            aws.month_to_date_whole = Some(true);
        }
        let mut floor = aws_row("alice", "stopped", Some(0.1), Some(3.2));
        if let Some(aws) = floor.aws.as_mut() {
            aws.month_to_date_usd = Some(0.25);
            aws.month_to_date_whole = Some(false);
        }
        let unknown = aws_row("bob", "running", None, None);
        let local = ListRow {
            aws: None,
            provider: "local".into(),
            ..aws_row("carol", "running", None, None)
        };
        assert_eq!(month_to_date(&whole).cell(), "$1.50");
        assert_eq!(month_to_date(&floor).cell(), "≥$0.25");
        assert_eq!(month_to_date(&unknown).cell(), "?");
        assert_eq!(month_to_date(&local).cell(), "$0.00");
        assert_eq!(
            MonthTotal::of(&[whole.clone(), local.clone()])
                .unwrap()
                .to_string(),
            "AWS this month so far: ≈ $1.50"
        );
        let mixed = MonthTotal::of(&[whole, floor, unknown.clone(), local.clone()]).unwrap();
        assert_eq!((mixed.usd, mixed.at_least, mixed.unknown), (1.75, true, 1));
        assert!(
            mixed
                .to_string()
                .starts_with("AWS this month so far: ≥$1.75, plus 1 workspace without a price")
        );
        assert_eq!(
            MonthTotal::of(&[unknown, local]),
            None,
            "no figure, no line"
        );
    }

    #[test]
    fn owners_are_summed_with_running_compute_and_every_disk() {
        let rows = [
            aws_row("alice", "running", Some(0.1), Some(3.2)),
            aws_row("alice", "stopped", Some(0.1), Some(3.2)),
            aws_row("bob", "running", None, Some(1.0)),
        ];
        let owners = owner_totals(&rows);
        let alice = &owners["alice"];
        assert_eq!((alice.workspaces, alice.running, alice.priced), (2, 1, 1));
        assert!(
            (alice.hourly_usd - 0.1).abs() < 1e-9,
            "only the running one"
        );
        assert!((alice.storage_usd_month - 6.4).abs() < 1e-9, "every disk");
        let bob = &owners["bob"];
        assert_eq!(
            (bob.running, bob.priced),
            (1, 0),
            "a missing price is counted as missing"
        );
    }
}
