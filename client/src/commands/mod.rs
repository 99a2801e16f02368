//! One module per command; each takes its parsed arguments and returns the exit code.

mod delete;
mod exec;
mod list;
mod logs;
mod session;
mod ssh;
mod status;
mod stop;
mod up;

use crate::agent_client::AgentClient;
use crate::cli::{AgentOptions, Command};
use crate::provider::local::LocalProvider;
use crate::workspace::{ProviderKind, Store, Workspace};

/// Runs one command.
pub async fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Up(args) => up::run(args).await,
        Command::List(args) => list::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Exec(args) => exec::run(args).await,
        Command::Ssh(args) => ssh::run(args).await,
        Command::Stop(args) => stop::run(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Logs(args) => logs::run(args).await,
    }
}

/// The workspace called `name`, wherever it lives.
fn find_workspace(name: &str) -> anyhow::Result<Workspace> {
    Ok(Store::open_default()?.get(name)?)
}

/// The provider that holds `workspace`.
fn provider_for(workspace: &Workspace, options: &AgentOptions) -> LocalProvider {
    match workspace.record.provider {
        ProviderKind::Local => LocalProvider {
            agent_binary: options.agent_binary.clone(),
        },
    }
}

/// A client of the workspace's agent, starting the agent if it is not running.
async fn agent(workspace: &Workspace, options: &AgentOptions) -> anyhow::Result<AgentClient> {
    Ok(provider_for(workspace, options)
        .ensure_agent(workspace)
        .await?)
}

/// A short form of a container id, as Docker prints it.
fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}
