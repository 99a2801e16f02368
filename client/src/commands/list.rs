//! `skiff list`: every workspace with its provider, state and folder; `--json` for scripts.

use crate::cli::ListArgs;

pub async fn run(args: ListArgs) -> anyhow::Result<i32> {
    let rows = crate::provider::list(args.all).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("no workspaces yet; create one with `skiff up PATH`");
        return Ok(0);
    }
    let width = rows
        .iter()
        .map(|row| row.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!(
        "{:<width$}  {:<8}  {:<10}  FOLDER",
        "NAME", "PROVIDER", "STATE"
    );
    for row in rows {
        println!(
            "{:<width$}  {:<8}  {:<10}  {}",
            row.name, row.provider, row.state, row.folder
        );
    }
    Ok(0)
}
