//! One module per command; each takes its parsed arguments and returns the exit code.

mod aws_policy;
mod aws_setup;
mod code;
mod config;
mod delete;
mod enroll;
mod exec;
mod forward;
mod keepalive;
mod list;
mod logs;
mod ports;
mod provider;
mod proxy;
mod session;
mod ssh;
mod ssh_config;
pub(crate) mod status;
mod stop;
mod sync;
mod trust;
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
        Command::Sync(args) => sync::run(args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Forward(args) => forward::run(args).await,
        Command::Keepalive(args) => keepalive::run(args).await,
        Command::Config(args) => config::run(args).await,
        Command::Provider(args) => provider::run(args).await,
        Command::AwsPolicy(args) => aws_policy::run(&args),
        Command::AwsSetup(args) => aws_setup::run(&args).await,
        Command::Enroll(args) => enroll::run(args).await,
        Command::SshConfig(args) => ssh_config::run(args).await,
        Command::Proxy(args) => proxy::run(args).await,
        Command::Code(args) => code::run(args).await,
        Command::TunnelDaemon(args) => {
            crate::provider::aws::connect::run_daemon(&args.name, args.agent.tunnel).await
        }
    }
}

/// The workspace called `name`, wherever it lives.
fn find_workspace(name: &str) -> anyhow::Result<Workspace> {
    Ok(Store::open_default()?.get(name)?)
}

/// The provider that holds `workspace`.
fn provider_for(workspace: &Workspace, options: &AgentOptions) -> LocalProvider {
    match workspace.record.provider {
        // An AWS workspace's agent is reached through its Session Manager tunnel (`agent` goes there first).
        ProviderKind::Local | ProviderKind::Aws => LocalProvider {
            agent_binary: options.agent_binary.clone(),
            start_is_activity: true,
        },
    }
}

/// A client of the workspace's agent, starting the agent if it is not running.
async fn agent(workspace: &Workspace, options: &AgentOptions) -> anyhow::Result<AgentClient> {
    if workspace.record.provider == ProviderKind::Aws {
        return crate::provider::aws::connect::agent(workspace, options.tunnel).await;
    }
    Ok(provider_for(workspace, options)
        .ensure_agent(workspace)
        .await?)
}

/// A short form of a container id, as Docker prints it.
fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Parses a percentage as people write it: `20%`, `20`, `off`.
fn parse_percent(text: &str) -> anyhow::Result<f64> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("off") {
        return Ok(0.0);
    }
    let number = trimmed.trim_end_matches('%').trim();
    number
        .parse::<f64>()
        .ok()
        .filter(|percent| percent.is_finite() && *percent >= 0.0)
        .ok_or_else(|| {
            anyhow::anyhow!("{text:?} is not a percentage; write one such as 20% or off")
        })
}

/// Checks an idle timeout as people write it: `30m`, `2h`, `off`, `0`.
fn check_idle_timeout(text: &str) -> anyhow::Result<()> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("off") || trimmed == "0" {
        return Ok(());
    }
    humantime::parse_duration(trimmed)
        .map(|_| ())
        .map_err(|error| {
            anyhow::anyhow!(
                "idle timeout {text:?}: {error}; write a duration such as 30m or 2h, or off"
            )
        })
}
