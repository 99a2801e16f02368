//! `skiff prune --stopped-for 30d`: deletes the workspaces stopped for longer than that (their disks still cost
//! storage), after showing them and asking once (or `--yes`). Each goes through `delete`'s own check: files holding
//! work that exists nowhere else (uncommitted changes, unpushed commits), or files that cannot be checked, keep a
//! workspace, which is then named; `skiff delete NAME --yes` deletes one anyway.

use std::io::IsTerminal as _;

use crate::cli::{AgentOptions, PruneArgs};
use crate::provider::{Confirmation, ListRow, Provider};

pub async fn run(args: PruneArgs) -> anyhow::Result<i32> {
    let stopped_for = humantime::parse_duration(args.stopped_for.trim()).map_err(|error| {
        anyhow::anyhow!(
            "--stopped-for {:?}: {error}; write a duration such as 30d or 12h",
            args.stopped_for
        )
    })?;
    let now = skiff::calendar::now_unix();
    let stale: Vec<ListRow> = crate::provider::list(false)
        .await?
        .into_iter()
        .filter(|row| {
            row.stopped_since_unix
                .is_some_and(|since| now - since > stopped_for.as_secs() as i64)
        })
        .collect();
    let age = humantime::format_duration(stopped_for);
    if stale.is_empty() {
        eprintln!("no workspace has been stopped for more than {age}");
        return Ok(0);
    }
    eprintln!("stopped for more than {age}:");
    for row in &stale {
        eprintln!("  {}", super::list::describe_stale(row, now));
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "pass --yes to delete these {} workspaces without a terminal; nothing was deleted",
                stale.len()
            );
        }
        if !crate::provider::confirm(&format!("Delete these {} workspaces?", stale.len()))? {
            eprintln!("nothing was deleted");
            return Ok(1);
        }
    }
    let mut kept = Vec::new();
    for row in &stale {
        let deleted = async {
            Provider::find(&row.name, None, &AgentOptions::default())
                .await?
                .without_activity()
                .delete(&row.name, Confirmation::Agreed)
                .await
        }
        .await;
        match deleted {
            Ok(0) => {}
            Ok(_) => kept.push(row.name.clone()),
            Err(error) => {
                eprintln!("skiff: workspace {}: {error:#}", row.name);
                kept.push(row.name.clone());
            }
        }
    }
    if kept.is_empty() {
        return Ok(0);
    }
    eprintln!(
        "kept: {} (see above; `skiff delete NAME --yes` deletes one anyway)",
        kept.join(", ")
    );
    Ok(1)
}
