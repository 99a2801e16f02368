//! The SSM test gateway as a program, for benchmarks and manual runs: it serves AWS's side of Session Manager
//! port forwarding on 127.0.0.1 until interrupted, prints `AWS_ENDPOINT_URL_SSM=...` once it listens, and
//! prints its counters when it stops. Everything it does is `skiff_tests::ssm_gateway`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use skiff_tests::ssm_gateway::{DEFAULT_AGENT_VERSION, Faults, Gateway, GatewayConfig};

/// Serve AWS's side of Session Manager port forwarding on 127.0.0.1, with optional faults.
#[derive(Debug, Parser)]
#[command(name = "skiff-test-gateway")]
struct Arguments {
    /// Port to listen on (127.0.0.1 always); 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A moto server other AmazonSSM calls are passed to, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    moto: Option<String>,
    /// An instance id DescribeInstanceInformation reports Online (repeatable).
    #[arg(long = "online")]
    online: Vec<String>,
    /// A route: TARGET:PORT=ADDRESS, where sessions to TARGET's PORT dial ADDRESS (default 127.0.0.1:PORT).
    #[arg(long = "route")]
    routes: Vec<String>,
    /// The SSM agent version to report.
    #[arg(long, default_value = DEFAULT_AGENT_VERSION)]
    agent_version: String,
    /// Probability that a stream-data message is lost, each direction.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that an acknowledgement is lost, each direction.
    #[arg(long, default_value_t = 0.0)]
    ack_loss: f64,
    /// Probability that a message is repeated, each direction.
    #[arg(long, default_value_t = 0.0)]
    repeat: f64,
    /// Probability that a message is swapped with the next, each direction.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Milliseconds each ack is held back.
    #[arg(long, default_value_t = 0)]
    ack_delay_ms: u64,
    /// Drop each WebSocket after this many stream-data bytes.
    #[arg(long)]
    drop_after_bytes: Option<u64>,
    /// Lose every Nth stream-data message of each direction.
    #[arg(long)]
    drop_every: Option<u64>,
    /// Pace like the real service (1 KiB reads with 1 ms sleeps; ~1000 input messages a second).
    #[arg(long)]
    pace: bool,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Send channel_closed with the 112-byte header the service has been seen to use.
    #[arg(long)]
    short_channel_closed: bool,
    /// Send start_publication first on every WebSocket.
    #[arg(long)]
    start_publication: bool,
}

fn parse_route(route: &str) -> anyhow::Result<((String, u16), SocketAddr)> {
    let (target_port, address) = route
        .split_once('=')
        .with_context(|| format!("route {route:?} is not TARGET:PORT=ADDRESS"))?;
    let (target, port) = target_port
        .rsplit_once(':')
        .with_context(|| format!("route {route:?} is not TARGET:PORT=ADDRESS"))?;
    let port = port
        .parse()
        .with_context(|| format!("route {route:?} has no port number"))?;
    let address = address
        .parse()
        .with_context(|| format!("route {route:?} has no socket address"))?;
    Ok(((target.to_owned(), port), address))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let arguments = Arguments::parse();
    let routes = arguments
        .routes
        .iter()
        .map(|route| parse_route(route))
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let gateway = Gateway::start(GatewayConfig {
        moto_endpoint: arguments.moto,
        faults: Faults {
            loss: arguments.loss,
            ack_loss: arguments.ack_loss,
            repeat: arguments.repeat,
            reorder: arguments.reorder,
            ack_delay: Duration::from_millis(arguments.ack_delay_ms),
            drop_after_bytes: arguments.drop_after_bytes,
            drop_every: arguments.drop_every,
            pace: arguments.pace,
            seed: arguments.seed,
        },
        routes,
        agent_version: arguments.agent_version,
        online: arguments.online,
        port: arguments.port,
        short_channel_closed: arguments.short_channel_closed,
        start_publication: arguments.start_publication,
    })
    .await?;
    println!("AWS_ENDPOINT_URL_SSM={}", gateway.endpoint());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("{:?}", gateway.stats());
    gateway.shutdown().await;
    Ok(())
}
