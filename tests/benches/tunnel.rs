//! Benchmarks of the Session Manager tunnel through the test gateway, each beside its baseline in the same run:
//!
//! - `skiff exec` latency (connect, TLS, an `Exec` of `true` to its exit) over a warm tunnel (the daemon's Unix
//!   socket, one smux stream of a session the gateway carries without a cap) against direct loopback TCP to the
//!   same agent: the tunnel's own overhead;
//! - the first exec on a cold tunnel (StartSession, WebSocket, handshake, TLS, the exec);
//! - throughput of one stream through the tunnel against direct loopback, to the same sink;
//! - with the gateway pacing each session as the real service does, a 50 MB upload over one session against a
//!   pool of four.
//!
//! Run (release binaries first, since it drives a real agent):
//! `cargo build --release --workspace --bins && cargo bench -p skiff-tests --bench tunnel -- --runs 50`

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use skiff::api::{ExecOutput, ExecSpec};
use skiff_client::agent_client::AgentClient;
use skiff_client::tunnel::ssm::{Target, Tunnel};
use skiff_client::tunnel::{BoxIo, Dial};
use skiff_tests::ssm_gateway::{Faults, Gateway, GatewayConfig};
use skiff_tests::warm_tunnel::WarmTunnel;
use skiff_tests::{Sandbox, require_docker};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const INSTANCE: &str = "i-0bench0000000001";

fn main() {
    let mut runs = 50usize;
    let mut upload = true;
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        match argument.as_str() {
            "--runs" => {
                runs = arguments
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(runs)
            }
            "--no-upload" => upload = false,
            _ => {}
        }
    }
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "bench-tunnel");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    let workspace = skiff_client::workspace::Store::at(sandbox.home())
        .get("bench-tunnel")
        .unwrap();
    let address: std::net::SocketAddr =
        std::fs::read_to_string(workspace.folder.join("agent/listen-address"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let pem = std::fs::read_to_string(workspace.folder.join("agent/agent.crt")).unwrap();
    let identity = workspace.identity().unwrap();
    let tls = {
        let certificate = skiff::tls::parse_certificate("agent", &pem).unwrap();
        skiff::tls::client_config(&identity, certificate).unwrap()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let gateway = Gateway::start(GatewayConfig::default()).await.unwrap();
        gateway.set_online(INSTANCE, true);
        let sdk = gateway.sdk_config().await;
        let target = Target {
            instance_id: INSTANCE.into(),
            port: address.port(),
        };

        // The first exec on a cold tunnel.
        let started = Instant::now();
        let tunnel = Tunnel::open(&sdk, &target, true).await.unwrap();
        let opened = started.elapsed();
        let mut client = AgentClient::new(
            skiff_client::tunnel::channel(mux_dial(&tunnel), tls.clone(), "bench")
                .await
                .unwrap(),
        );
        exec_true(&mut client).await;
        let cold = started.elapsed();
        println!(
            "cold tunnel: first exec {:.1} ms (of which the session: {:.1} ms)",
            millis(cold),
            millis(opened)
        );

        // A warm tunnel, served the way `skiff tunnel-daemon` serves it.
        let warm = WarmTunnel::start(&sdk, &target, tunnel.clone());
        let warm_dial = warm.dial(0);
        let direct_dial: Dial = Arc::new(move || {
            Box::pin(async move {
                let stream = tokio::net::TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                Ok(Box::new(stream) as BoxIo)
            })
        });
        // Each path in turn within every round, so a disturbance on this machine falls on all of them alike.
        // A new `skiff exec` process has no TLS session to resume, so the figure is with a full handshake each
        // time; the same with a resumed session (what a long-lived client reconnecting gets) is shown beside.
        // The session's bare stream (no daemon, no resumable connection) shows where the overhead is.
        let session_dial = mux_dial(&tunnel);
        let paths = [
            ("direct loopback", &direct_dial),
            ("warm tunnel", &warm_dial),
            ("one stream of the session alone", &session_dial),
        ];
        for resumed in [false, true] {
            let mut samples = vec![Vec::new(); paths.len()];
            for _ in 0..runs {
                for ((_, dial), samples) in paths.iter().zip(&mut samples) {
                    samples.push(one_exec(dial, &tls, resumed).await);
                }
            }
            let handshake = if resumed {
                "resumed TLS session"
            } else {
                "full TLS handshake, as a new process"
            };
            println!("exec ({runs} runs, connect + {handshake} + exec `true`):");
            let (direct_p50, direct_p95) = percentiles(&mut samples[0]);
            for ((name, _), samples) in paths.iter().zip(&mut samples) {
                let (p50, p95) = percentiles(samples);
                println!(
                    "  {name}: p50 {p50:.2} ms p95 {p95:.2} ms: ratio to direct p50 {:.2}, p95 {:.2}",
                    p50 / direct_p50,
                    p95 / direct_p95
                );
            }
        }

        // One stream's throughput, to the same sink.
        let size = 256usize << 20;
        let sink = Sink::start().await;
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(sink.address).await.unwrap();
        write_all(&mut stream, size).await;
        sink.wait(size).await;
        let direct_rate = mib(size) / started.elapsed().as_secs_f64();
        let sink = Sink::start().await;
        let sink_tunnel = Tunnel::open(
            &sdk,
            &Target {
                instance_id: INSTANCE.into(),
                port: sink.address.port(),
            },
            true,
        )
        .await
        .unwrap();
        let started = Instant::now();
        let mut stream = sink_tunnel.open_stream().unwrap();
        write_all(&mut stream, size).await;
        sink.wait(size).await;
        let tunnel_rate = mib(size) / started.elapsed().as_secs_f64();
        println!(
            "one stream, {} MiB: tunnel {:.0} MiB/s, direct loopback {:.0} MiB/s: {:.1}% of direct",
            size >> 20,
            tunnel_rate,
            direct_rate,
            100.0 * tunnel_rate / direct_rate
        );
        sink_tunnel.close().await;
        tunnel.close().await;

        if upload {
            upload_bench(&target, &tls).await;
        }
    });
    drop(sandbox);
}

/// A 50 MB upload through a gateway that paces every session, over one session and over four.
async fn upload_bench(target: &Target, tls: &rustls::ClientConfig) {
    let gateway = Gateway::start(GatewayConfig {
        faults: Faults::paced(),
        ..GatewayConfig::default()
    })
    .await
    .unwrap();
    gateway.set_online(INSTANCE, true);
    let sdk = gateway.sdk_config().await;
    let folder = tempfile::tempdir().unwrap();
    // Incompressible content, so the archive is as large as the files: 50 files of 1 MB.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for index in 0..50 {
        let data = skiff_tests::noise(&mut state, 1_000_000);
        std::fs::write(folder.path().join(format!("blob-{index:02}.bin")), data).unwrap();
    }
    let mut seconds = Vec::new();
    for sessions in [1usize, 4] {
        let mut tunnels = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..sessions {
            let tunnel = Tunnel::open(&sdk, target, true).await.unwrap();
            clients.push(AgentClient::new(
                skiff_client::tunnel::channel(mux_dial(&tunnel), tls.clone(), "bench")
                    .await
                    .unwrap(),
            ));
            tunnels.push(tunnel);
        }
        let started = Instant::now();
        let outcome = skiff_client::files::upload(&mut clients, folder.path(), &|_| {})
            .await
            .unwrap();
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "paced upload of {} MB ({} MB compressed) over {sessions} session(s): {elapsed:.1} s, {:.2} MB/s",
            outcome.bytes / 1_000_000,
            outcome.compressed / 1_000_000,
            outcome.compressed as f64 / 1e6 / elapsed
        );
        seconds.push(elapsed);
        for tunnel in tunnels {
            tunnel.close().await;
        }
    }
    println!(
        "paced upload: a pool of four is {:.2}x faster than one session",
        seconds[0] / seconds[1]
    );
}

fn mux_dial(tunnel: &Tunnel) -> Dial {
    let tunnel = tunnel.clone();
    Arc::new(move || {
        let tunnel = tunnel.clone();
        Box::pin(async move { Ok(Box::new(tunnel.open_stream()?) as BoxIo) })
    })
}

/// One command's worth: a new connection, TLS (a full handshake as a new `skiff exec` process makes, unless
/// `resumed`, when the session cached by an earlier connection with the same configuration is resumed), and
/// `true` to its exit.
async fn one_exec(dial: &Dial, tls: &rustls::ClientConfig, resumed: bool) -> f64 {
    let mut tls = tls.clone();
    if !resumed {
        tls.resumption = rustls::client::Resumption::default();
    }
    let started = Instant::now();
    let channel = skiff_client::tunnel::channel(Arc::clone(dial), tls, "bench")
        .await
        .unwrap();
    exec_true(&mut AgentClient::new(channel)).await;
    millis(started.elapsed())
}

async fn exec_true(client: &mut AgentClient) {
    let spec = ExecSpec {
        command: vec!["true".into()],
        tty: false,
        user: None,
        working_dir: None,
        env: Default::default(),
        window: None,
        stdin: false,
    };
    let mut output = client.exec(spec, futures::stream::empty()).await.unwrap();
    while let Some(event) = output.next().await {
        if let ExecOutput::Exit(code) = event.unwrap() {
            assert_eq!(code, 0);
        }
    }
}

async fn write_all(stream: &mut (impl tokio::io::AsyncWrite + Unpin), size: usize) {
    let block = vec![0x5a_u8; 256 * 1024];
    let mut left = size;
    while left > 0 {
        let count = left.min(block.len());
        stream.write_all(&block[..count]).await.unwrap();
        left -= count;
    }
    stream.flush().await.unwrap();
}

/// A TCP server on 127.0.0.1 that counts and discards what it receives.
struct Sink {
    address: std::net::SocketAddr,
    received: tokio::sync::watch::Receiver<usize>,
}

impl Sink {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (count, received) = tokio::sync::watch::channel(0usize);
        tokio::spawn(async move {
            while let Ok((mut connection, _)) = listener.accept().await {
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 256 * 1024];
                    while let Ok(read) = connection.read(&mut buffer).await {
                        if read == 0 {
                            break;
                        }
                        count.send_modify(|total| *total += read);
                    }
                });
            }
        });
        Self { address, received }
    }

    async fn wait(mut self, size: usize) {
        while *self.received.borrow_and_update() < size {
            self.received.changed().await.unwrap();
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |fraction: f64| samples[((samples.len() as f64 - 1.0) * fraction).round() as usize];
    (at(0.5), at(0.95))
}
