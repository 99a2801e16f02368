//! `skiff-procd`: the process server the agent places inside a dev container. It reads its token from
//! standard input, listens on the container's loopback, says `ready PORT` on standard output, and then serves
//! until the container stops.

use std::io::{BufRead, Read};

use clap::Parser;

/// The process server inside a dev container; started by skiffd, not by people.
#[derive(Debug, Parser)]
#[command(name = "skiff-procd", version)]
struct Args {
    /// Where to listen, inside the container: a loopback address (others are refused, so no other container
    /// on the network reaches the server).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// Serve SFTP on standard input and output instead, as the user it runs as (the agent's SSH server
    /// starts it for the `sftp` subsystem); no token, no listening.
    #[arg(long)]
    sftp: bool,
}

fn main() -> std::process::ExitCode {
    // `skiff-procd git-credential ACTION`: git's credential helper in the dev container (git runs it, with the
    // action as its last argument), which asks the agent.
    // `skiff-procd ssh-agent NAME` and `gpg-agent NAME`: the relays of agent forwarding, run as the session's user.
    let mut arguments = std::env::args().skip(1);
    match arguments.next().as_deref() {
        Some("git-credential") => {
            return skiff_agent::credentials::helper(
                arguments.last().as_deref().unwrap_or_default(),
            );
        }
        Some("ssh-agent") => {
            return skiff_agent::ssh_agent::relay(
                arguments.next().as_deref().unwrap_or_default(),
                skiff_agent::ssh_agent::Kind::Ssh,
            );
        }
        Some("gpg-agent") => {
            return skiff_agent::ssh_agent::relay(
                arguments.next().as_deref().unwrap_or_default(),
                skiff_agent::ssh_agent::Kind::Gpg,
            );
        }
        _ => {}
    }
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
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "skiff-procd: --listen {} is not a loopback address; the process server listens only where the agent alone reaches it",
            args.listen
        );
        return std::process::ExitCode::FAILURE;
    }
    let mut token = String::new();
    let read = std::io::stdin()
        .lock()
        .take(skiff_agent::procd::MAX_TOKEN_LINE as u64)
        .read_line(&mut token);
    let token = token.trim_end();
    if read.is_err()
        || token.len() != skiff_agent::procd::TOKEN_LENGTH
        || !token.bytes().all(|byte| byte.is_ascii_hexdigit())
    {
        eprintln!(
            "skiff-procd: expected a token of {} hex digits on standard input",
            skiff_agent::procd::TOKEN_LENGTH
        );
        return std::process::ExitCode::FAILURE;
    }
    let token = token.to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        println!("ready {}", listener.local_addr()?.port());
        skiff_agent::procd::server::serve(listener, token, skiff_agent::procd::TOKEN_TIMEOUT).await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("skiff-procd: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
