//! skiff, the client: finds or creates a workspace, starts its agent through a provider, and drives the
//! agent over gRPC. `run` is what the `skiff` binary calls; it returns the process's exit code.

pub mod agent_client;
pub mod cli;
pub mod commands;
pub mod files;
pub mod progress;
pub mod provider;
pub mod terminal;
pub mod tunnel;
pub mod workspace;

/// Runs one command line; the result is the exit code (an exec passes its command's code through).
pub async fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    commands::run(cli.command).await
}
