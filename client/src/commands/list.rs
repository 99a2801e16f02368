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
        "{:<width$}  {:<8}  {:<14}  FOLDER",
        "NAME", "PROVIDER", "STATE"
    );
    for row in &rows {
        println!(
            "{:<width$}  {:<8}  {:<14}  {}",
            row.name,
            row.provider,
            state(row, now),
            row.folder
        );
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
