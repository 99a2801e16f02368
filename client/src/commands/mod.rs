//! One module per command of every provider; each takes its parsed arguments and returns the exit code, and
//! `lib::run` dispatches. A command gets what it needs of a workspace from its `provider::Provider` and never
//! learns which provider that is (the AWS provider's own commands live in `provider::aws`).

pub(crate) mod code;
pub(crate) mod config;
pub(crate) mod delete;
pub(crate) mod exec;
pub(crate) mod forward;
pub(crate) mod keepalive;
pub(crate) mod list;
pub(crate) mod logs;
pub(crate) mod ports;
pub(crate) mod proxy;
pub(crate) mod prune;
pub(crate) mod session;
pub(crate) mod ssh;
pub(crate) mod ssh_config;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod sync;
pub(crate) mod trust;
pub(crate) mod up;

use crate::agent_client::AgentClient;
use crate::cli::{AgentOptions, CredentialOptions, StartOptions};
use crate::provider::{OnStopped, Provider};
use crate::workspace::{Store, Workspace};

/// The workspace called `name`, from this machine's records.
fn find_workspace(name: &str) -> anyhow::Result<Workspace> {
    Ok(Store::open_default()?.get(name)?)
}

/// A client of the workspace's agent, starting the agent (or the way to it) if needed.
async fn agent(workspace: &Workspace, options: &AgentOptions) -> anyhow::Result<AgentClient> {
    Provider::of(workspace, options).agent(workspace).await
}

/// A client of the workspace's agent for a command that uses its dev container: a stopped workspace is started
/// first, unless `--no-start` or its saved setting (`auto-start=off`) says to fail instead.
async fn connect(
    workspace: &Workspace,
    options: &AgentOptions,
    start: &StartOptions,
) -> anyhow::Result<AgentClient> {
    Provider::of(workspace, options)
        .connect(workspace, OnStopped::of(workspace, start.no_start))
        .await
}

/// Answers git's credential requests from the dev container with this machine's git while the returned set lives
/// (the session's length), unless `--no-git-credentials` or the workspace's setting says not to.
fn git_credentials(
    workspace: &Workspace,
    client: &AgentClient,
    options: &CredentialOptions,
) -> tokio::task::JoinSet<()> {
    let mut set = tokio::task::JoinSet::new();
    if workspace.record.git_credentials && !options.no_git_credentials {
        set.spawn(crate::git_credentials::serve(client.clone()));
    }
    set
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
