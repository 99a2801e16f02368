//! `skiff sync NAME`: sends what changed in the workspace's folder on this machine since its last upload or sync,
//! and removes there what was deleted here (`files::sync` says how work made on the instance is kept).
//! A local workspace's dev container mounts the folder itself, so there is nothing to send.

use std::path::Path;

use anyhow::Context as _;

use crate::agent_client::AgentClient;
use crate::cli::SyncArgs;
use crate::files::{self, SyncOptions, Transfer, human_bytes};
use crate::progress::Progress;
use crate::provider::Provider;

pub async fn run(args: SyncArgs) -> anyhow::Result<i32> {
    let workspace = super::find_workspace(&args.name)?;
    let provider = Provider::of(&workspace, &args.agent);
    if !provider.is_remote() {
        eprintln!(
            "workspace {} runs on this machine and its dev container mounts {}; sync is not needed",
            workspace.name(),
            workspace.record.local_folder.display()
        );
        return Ok(0);
    }
    if workspace.record.local_folder.starts_with(&workspace.folder) {
        anyhow::bail!(
            "workspace {} was cloned from a git repository on its instance and has no folder on this machine to send; change it there (`skiff ssh {}`) and move work with git",
            workspace.name(),
            workspace.name()
        );
    }
    // A stopped workspace is started first; then the provider's bulk clients (on AWS the warm tunnel's bulk lanes,
    // one Session Manager session each) carry a sync faster.
    provider
        .connect(
            &workspace,
            crate::provider::OnStopped::of(&workspace, args.start.no_start),
        )
        .await?;
    let mut clients = provider.bulk_agents(&workspace).await?;
    sync_with(
        &mut clients,
        &workspace.record.local_folder,
        args.force,
        workspace.name(),
    )
    .await
}

/// Syncs `folder` to the workspace `name` over `clients` and prints what changed.
pub(crate) async fn sync_with(
    clients: &mut [AgentClient],
    folder: &Path,
    force: bool,
    name: &str,
) -> anyhow::Result<i32> {
    let progress = Progress::new();
    progress.step(&format!(
        "comparing {} with workspace {name}",
        folder.display()
    ));
    let show = |transfer: &Transfer| {
        progress.step(&format!(
            "sending to workspace {name}: {} packed, {} sent",
            human_bytes(transfer.bytes),
            human_bytes(transfer.sent)
        ));
    };
    let outcome = files::sync(clients, folder, &SyncOptions { force }, &show)
        .await
        .with_context(|| format!("syncing {} to workspace {name}", folder.display()))?;
    progress.finish();
    if !outcome.conflicts.is_empty() {
        let shown: Vec<&str> = outcome
            .conflicts
            .iter()
            .take(10)
            .map(String::as_str)
            .collect();
        eprintln!(
            "kept {} path{} changed on both sides as the workspace has {}: {}{}; `skiff sync {name} --force` sends this machine's",
            outcome.conflicts.len(),
            if outcome.conflicts.len() == 1 {
                ""
            } else {
                "s"
            },
            if outcome.conflicts.len() == 1 {
                "it"
            } else {
                "them"
            },
            shown.join(", "),
            if outcome.conflicts.len() > shown.len() {
                ", …"
            } else {
                ""
            }
        );
    }
    println!("{}", outcome.summary());
    Ok(0)
}
