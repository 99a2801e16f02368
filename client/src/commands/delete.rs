//! `skiff delete NAME`: removes the dev container, the image built for it, and the workspace's keys and
//! state. Asks first on a terminal. The workspace's own folder (the source) is never touched; files that live with
//! the agent (a workspace cloned from a git URL) are checked for uncommitted and unpushed work first
//! (`files::check_before_delete`), and without `--yes` such work keeps the workspace.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use crate::cli::DeleteArgs;
use crate::files::DeleteDecision;

pub async fn run(args: DeleteArgs) -> anyhow::Result<i32> {
    if let Some(code) = crate::provider::aws::commands::delete(
        &args.name,
        args.yes,
        args.owner.as_deref(),
        args.agent.tunnel,
    )
    .await?
    {
        return Ok(code);
    }
    let workspace = super::find_workspace(&args.name)?;
    let mut provider = super::provider_for(&workspace, &args.agent);
    provider.start_is_activity = false;
    // A workspace cloned from a git URL keeps its files with its agent (the folder is the agent's), so they go with
    // it: check them for work that exists nowhere else first.
    let files_on_agent = workspace.record.local_folder.starts_with(&workspace.folder);
    let mut confirmed = false;
    if files_on_agent {
        let mut client = provider.ensure_agent(&workspace).await?;
        match crate::files::check_before_delete(&mut client, workspace.name(), args.yes).await? {
            DeleteDecision::Refused => return Ok(1),
            DeleteDecision::Confirmed => confirmed = true,
            DeleteDecision::NothingToLose => {}
        }
    }
    if !args.yes && !confirmed && std::io::stdin().is_terminal() {
        let kept = if files_on_agent {
            "its files go too".to_owned()
        } else {
            format!("{} stays", workspace.record.local_folder.display())
        };
        eprint!(
            "Delete workspace {} (its dev container, built image, keys and state; {kept})? [y/N] ",
            workspace.name()
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("kept workspace {}", workspace.name());
            return Ok(1);
        }
    }
    // The agent removes what it made; the record goes only once that succeeded, so nothing is orphaned.
    let mut client = provider.ensure_agent(&workspace).await?;
    let (containers, images) = client.delete(true).await?;
    if !provider
        .wait_for_exit(&workspace, Duration::from_secs(20))
        .await
    {
        anyhow::bail!(
            "the agent of workspace {} did not exit after deleting; the workspace record is kept",
            workspace.name()
        );
    }
    let name = workspace.name().to_owned();
    workspace.remove()?;
    eprintln!(
        "deleted workspace {name} ({} container{}, {} image{} removed)",
        containers.len(),
        if containers.len() == 1 { "" } else { "s" },
        images.len(),
        if images.len() == 1 { "" } else { "s" }
    );
    Ok(0)
}
