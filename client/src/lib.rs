//! skiff, the client: finds or creates a workspace, starts its agent through a provider, and drives the
//! agent over gRPC. `run` is what the `skiff` binary calls; it returns the process's exit code.

pub mod agent_client;
pub mod cli;
pub mod commands;
pub mod dotfiles;
pub mod files;
pub mod git_credentials;
pub mod git_identity;
pub mod progress;
pub mod provider;
pub mod registry_logins;
pub mod ssh_agent;
pub mod terminal;
pub mod tunnel;
pub mod ui;
pub mod usage;
pub mod workspace;

/// Runs one command line; the result is the exit code (an exec passes its command's code through).
pub async fn run(cli: cli::Cli) -> anyhow::Result<i32> {
    use cli::{Command, ProviderCommand};
    match cli.command {
        Command::Up(args) => commands::up::run(args).await,
        Command::List(args) => commands::list::run(args).await,
        Command::Status(args) => commands::status::run(args).await,
        Command::Exec(args) => commands::exec::run(args).await,
        Command::Ssh(args) => commands::ssh::run(args).await,
        Command::Stop(args) => commands::stop::run(args).await,
        Command::Delete(args) => commands::delete::run(args).await,
        Command::Prune(args) => commands::prune::run(args).await,
        Command::Sync(args) => commands::sync::run(args).await,
        Command::Logs(args) => commands::logs::run(args).await,
        Command::Forward(args) => commands::forward::run(args).await,
        Command::Keepalive(args) => commands::keepalive::run(args).await,
        Command::Config(args) => commands::config::run(args).await,
        Command::SshConfig(args) => commands::ssh_config::run(args).await,
        Command::Proxy(args) => commands::proxy::run(args).await,
        Command::Code(args) => commands::code::run(args).await,
        Command::Ui(args) => ui::run(args).await,
        // The AWS provider's own commands live with their job in `provider::aws`.
        Command::Provider(args) => match &args.provider {
            ProviderCommand::Aws(aws) => provider::aws::config::command(aws).await,
        },
        Command::AwsPolicy(args) => provider::aws::policy::command(&args),
        Command::AwsSetup(args) => provider::aws::setup::command(&args).await,
        Command::Enroll(args) => provider::aws::enroll::command(&args).await,
        Command::TunnelDaemon(args) => {
            provider::aws::connect::run_daemon(&args.name, args.agent.tunnel).await
        }
    }
}
