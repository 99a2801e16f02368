//! `skiffd`: reads its configuration, sets up logging, and runs the agent until it is told to stop.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// The skiff agent: builds and runs one workspace's dev container and serves the skiff client.
#[derive(Debug, Parser)]
#[command(name = "skiffd", version)]
struct Args {
    /// The agent's configuration file.
    #[arg(long, default_value = "/etc/skiffd/skiffd.toml", env = "SKIFFD_CONFIG")]
    config: PathBuf,
    /// Count this start as activity: a client started the agent because someone is using the workspace.
    /// Without it a restart keeps the idle countdown where it was.
    #[arg(long)]
    start_is_activity: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFFD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Two workers whatever the machine, as the client and the process server have: the agent serves one
    // workspace, and each worker brings its own stack and allocator arena, resident while the agent idles.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("skiffd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = skiff_agent::config::AgentConfig::load(&args.config)?;
    let agent = skiff_agent::Agent::bind(config).await?;
    if args.start_is_activity {
        agent.record_activity(skiff_agent::idle::source::AGENT_START);
    }
    let shutdown = CancellationToken::new();
    let signals = shutdown.clone();
    tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down on a signal");
        signals.cancel();
    });
    match agent.serve(shutdown).await? {
        skiff_agent::Exit::Stopped => Ok(()),
        skiff_agent::Exit::Replaced(path) => {
            // The same process becomes the new agent, so a supervisor (systemd, user-data's fallback) sees it go on.
            use std::os::unix::process::CommandExt as _;
            let error = std::process::Command::new(&path)
                .args(std::env::args_os().skip(1))
                .exec();
            Err(error).with_context(|| format!("restarting into {}", path.display()))
        }
    }
}
