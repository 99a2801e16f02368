//! `skiff code NAME`: opens VS Code on the workspace's folder inside its dev container, through VS Code's
//! Remote-SSH and the `NAME.skiff` entry that `skiff ssh-config` keeps (written or refreshed first).

use anyhow::Context as _;

use crate::cli::CodeArgs;
use crate::workspace::Store;

pub async fn run(args: CodeArgs) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let workspace = store.get(&args.name)?;
    // The editor connects through `skiff proxy`, which would start a stopped workspace too; starting it here shows
    // the start where the user looks, and lets the entry ask the agent.
    super::connect(&workspace, &args.agent, &args.start).await?;
    let made = super::ssh_config::entry(&workspace, &args.agent).await?;
    let folder = made.workspace_folder.clone().with_context(|| {
        format!(
            "workspace {} has no dev container yet; run `skiff up {}` first",
            args.name,
            workspace.record.local_folder.display()
        )
    })?;
    // VS Code's Remote-SSH reads the default ssh configuration, so the entry goes there.
    let config = super::ssh_config::default_config()?;
    super::ssh_config::write(&config, std::slice::from_ref(&made.entry), &store)?;
    let host = super::ssh_config::host(&args.name);
    let status = match std::process::Command::new("code")
        .arg("--remote")
        .arg(format!("ssh-remote+{host}"))
        .arg(&folder)
        .status()
    {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "VS Code's `code` command is not on PATH; install VS Code and, in it, run \"Shell Command: Install 'code' command in PATH\", or open {host} from its Remote-SSH view ({} has the entry)",
            config.display()
        ),
        Err(error) => return Err(error).context("running `code`"),
    };
    Ok(status.code().unwrap_or(1))
}
