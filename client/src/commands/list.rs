//! `skiff list`: every workspace with its provider, state and folder; `--json` for scripts.

use crate::cli::{AgentOptions, ListArgs};

/// One row of the listing.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    provider: String,
    state: String,
    folder: String,
    container_id: Option<String>,
    /// Where an AWS workspace runs and whose it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    aws: Option<crate::provider::aws::commands::ListRow>,
}

pub async fn run(args: ListArgs) -> anyhow::Result<i32> {
    let store = crate::workspace::Store::open_default()?;
    let mut rows = Vec::new();
    for workspace in store.all()? {
        if workspace.record.provider == crate::workspace::ProviderKind::Aws {
            // AWS workspaces come from AWS itself, below.
            continue;
        }
        let provider = super::provider_for(&workspace, &AgentOptions::default());
        // Only a running agent is asked; listing never starts one.
        let status = match provider.connect_running(&workspace).await {
            Ok(Some(mut client)) => client.status().await.ok(),
            _ => None,
        };
        rows.push(Row {
            name: workspace.name().to_owned(),
            provider: workspace.record.provider.to_string(),
            state: status.as_ref().map_or_else(
                || "stopped".to_owned(),
                |status| status.container_state.to_string(),
            ),
            folder: workspace.record.local_folder.display().to_string(),
            container_id: status.and_then(|status| status.container_id),
            aws: None,
        });
    }
    for row in crate::provider::aws::commands::list(args.all).await? {
        rows.push(Row {
            folder: row.folder.clone().unwrap_or_else(|| {
                format!(
                    "({} {})",
                    row.region,
                    row.instance_id.as_deref().unwrap_or("-")
                )
            }),
            name: row.name.clone(),
            provider: "aws".into(),
            state: row.state.clone(),
            container_id: None,
            aws: Some(row),
        });
    }
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
