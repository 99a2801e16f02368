//! `skiff stop NAME`: stops the dev container and its agent; files and state stay for the next `up`.

use std::time::Duration;

use crate::cli::{AgentOptions, StopArgs};

pub async fn run(args: StopArgs) -> anyhow::Result<i32> {
    if let Some(code) =
        crate::provider::aws::commands::stop(&args.name, args.owner.as_deref()).await?
    {
        return Ok(code);
    }
    let workspace = super::find_workspace(&args.name)?;
    let provider = super::provider_for(&workspace, &AgentOptions::default());
    let Some(mut client) = provider.connect_running(&workspace).await? else {
        eprintln!("workspace {} is already stopped", workspace.name());
        return Ok(0);
    };
    let was_running = client.stop(true).await?;
    if !provider
        .wait_for_exit(&workspace, Duration::from_secs(20))
        .await
    {
        anyhow::bail!(
            "the agent of workspace {} did not exit after stopping; see its log in {}",
            workspace.name(),
            workspace.folder.display()
        );
    }
    if was_running {
        eprintln!("stopped workspace {}", workspace.name());
    } else {
        eprintln!(
            "workspace {} was not running; its agent has exited",
            workspace.name()
        );
    }
    Ok(0)
}
