//! `skiff`: parses the command line, sets up logging, runs the command and exits with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = skiff_client::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let code = match runtime.block_on(skiff_client::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("skiff: {error:#}");
            1
        }
    };
    // Background tasks (stdin readers) must not hold the process open after the command is done.
    runtime.shutdown_background();
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
