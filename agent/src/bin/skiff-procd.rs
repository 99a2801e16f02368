//! `skiff-procd`: the process server the agent places inside a dev container. It reads its token from
//! standard input, listens, says `ready PORT` on standard output, and then serves until the container stops.

use std::io::BufRead;

use clap::Parser;

/// The process server inside a dev container; started by skiffd, not by people.
#[derive(Debug, Parser)]
#[command(name = "skiff-procd", version)]
struct Args {
    /// Where to listen, inside the container.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: std::net::SocketAddr,
    /// Serve SFTP on standard input and output instead, as the user it runs as (the agent's SSH server
    /// starts it for the `sftp` subsystem); no token, no listening.
    #[arg(long)]
    sftp: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.sftp {
        return match skiff_agent::procd::sftp::serve_stdio() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("skiff-procd: serving sftp: {error}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let mut token = String::new();
    if std::io::stdin().lock().read_line(&mut token).is_err() || token.trim().len() < 32 {
        eprintln!("skiff-procd: expected a token of at least 32 characters on standard input");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("ready {}", listener.local_addr()?.port());
        skiff_agent::procd::server::serve(listener, token.trim().to_owned()).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff-procd: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
