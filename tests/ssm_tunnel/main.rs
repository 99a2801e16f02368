//! The native Session Manager tunnel (`client::tunnel::ssm`) against the test gateway, with every fault the
//! gateway can inject: gRPC to a real agent (a local workspace's `skiffd`, which the gateway dials as the SSM
//! agent would dial the instance's port) carries a 100 MiB `exec cat` through a dropped WebSocket and a session
//! terminated mid-transfer (through the warm tunnel and its resumable connections), and lost, repeated and
//! reordered messages, intact and in order.
//!
//! A test binary of its own (`cargo test -p skiff-tests --test ssm_tunnel`), so it never runs beside the Dev
//! Container fixtures: in the one `it` binary the 100 MiB drop test failed in three CI runs out of three, each
//! time while `conformance::reference_fixtures` (31 fixtures' containers and images made and removed) ran beside
//! it, the agent reporting that the dev container's process server closed the command's connection before the
//! command ended (exit 126). Run by itself it failed once in 101 runs, while a whole CI run went on beside it.
//! Why that churn ends a process server's connection is not known yet.
//!
//! `recovery` times the data channel's own recovery (issue 15) against a plain TCP sink, without Docker.

mod recovery;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use skiff::api::{ExecInput, ExecOutput, ExecSpec};
use skiff_client::agent_client::AgentClient;
use skiff_client::tunnel::ssm::{Target, Tunnel};
use skiff_client::tunnel::{BoxIo, Dial};
use skiff_tests::ssm_gateway::{Faults, Gateway, GatewayConfig};
use skiff_tests::warm_tunnel::WarmTunnel;
use skiff_tests::{Sandbox, require_docker};

/// The instance id the gateway reports online for these tests.
const INSTANCE: &str = "i-0feedfacecafe0001";

/// A local workspace with a running container, and what it takes to reach its agent directly.
struct LocalAgent {
    sandbox: Sandbox,
    name: String,
    port: u16,
}

impl LocalAgent {
    fn start(name: &str) -> Self {
        require_docker();
        let sandbox = Sandbox::new();
        let project = sandbox.project("image", name);
        sandbox.ok(&["up", project.to_str().unwrap()]);
        let address = std::fs::read_to_string(
            sandbox
                .home()
                .join("workspaces")
                .join(name)
                .join("agent/listen-address"),
        )
        .expect("the local agent wrote its address");
        let port = address.trim().rsplit(':').next().unwrap().parse().unwrap();
        Self {
            sandbox,
            name: name.to_owned(),
            port,
        }
    }

    fn workspace(&self) -> skiff_client::workspace::Workspace {
        skiff_client::workspace::Store::at(self.sandbox.home())
            .get(&self.name)
            .unwrap()
    }

    fn tls(&self) -> rustls::ClientConfig {
        let workspace = self.workspace();
        let pem = std::fs::read_to_string(workspace.folder.join("agent/agent.crt")).unwrap();
        let certificate = skiff::tls::parse_certificate("agent", &pem).unwrap();
        skiff::tls::client_config(&workspace.identity().unwrap(), certificate).unwrap()
    }
}

/// A gateway with the test instance online, the SDK's configuration pointed at it, and a tunnel through it to
/// `agent`.
struct Rig {
    gateway: Arc<Gateway>,
    sdk: aws_config::SdkConfig,
    target: Target,
    tunnel: Tunnel,
}

impl Rig {
    async fn start(agent: &LocalAgent, config: GatewayConfig) -> Self {
        let gateway = Arc::new(Gateway::start(config).await.unwrap());
        gateway.set_online(INSTANCE, true);
        let sdk = gateway.sdk_config().await;
        let target = Target {
            instance_id: INSTANCE.into(),
            port: agent.port,
        };
        let tunnel = Tunnel::open(&sdk, &target, true).await.unwrap();
        Self {
            gateway,
            sdk,
            target,
            tunnel,
        }
    }

    /// The rig's session served as a warm tunnel, and a client through its interactive lane, as every command
    /// reaches an AWS workspace's agent.
    async fn warm_client(&self, agent: &LocalAgent) -> (WarmTunnel, AgentClient) {
        let warm = WarmTunnel::start(&self.sdk, &self.target, self.tunnel.clone());
        let client = client_over(warm.dial(0), agent).await;
        (warm, client)
    }
}

impl Drop for LocalAgent {
    /// A failed test shows the end of the agent's log, where its side of the tunnel says what it saw.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.workspace().folder.join("agent.log");
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- the end of {}:", log.display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// An agent client whose every connection is a stream of `tunnel` (no warm tunnel, no resumable connection:
/// the multiplexer's own guarantees).
async fn client_through(tunnel: &Tunnel, agent: &LocalAgent) -> AgentClient {
    let tunnel = tunnel.clone();
    let dial: Dial = Arc::new(move || {
        let tunnel = tunnel.clone();
        Box::pin(async move { Ok(Box::new(tunnel.open_stream()?) as BoxIo) })
    });
    client_over(dial, agent).await
}

/// An agent client whose connections come from `dial`.
async fn client_over(dial: Dial, agent: &LocalAgent) -> AgentClient {
    let channel = skiff_client::tunnel::channel(dial, agent.tls(), "through the test gateway")
        .await
        .unwrap();
    AgentClient::new(channel)
}

/// `cat` in the container, with its standard input open.
fn cat_spec() -> ExecSpec {
    ExecSpec {
        command: vec!["cat".into()],
        tty: false,
        user: None,
        working_dir: None,
        env: Default::default(),
        window: None,
        stdin: true,
    }
}

/// Sends `size` pseudo-random bytes through `cat` in the container; the SHA-256 of what was sent and of what
/// came back, and how many bytes came back. `midway` runs once a third of the input is sent.
async fn cat_through(
    client: &mut AgentClient,
    size: usize,
    midway: impl FnOnce() + Send + 'static,
) -> (String, String, usize) {
    let spec = cat_spec();
    let (input, input_rx) = tokio::sync::mpsc::channel::<ExecInput>(4);
    let sent = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut state = 0x1234_5678_9abc_def0_u64;
        let mut midway = Some(midway);
        let chunk = 256 * 1024;
        let mut offset = 0;
        while offset < size {
            let length = chunk.min(size - offset);
            let block = skiff_tests::noise(&mut state, length);
            hasher.update(&block);
            if input.send(ExecInput::Stdin(block)).await.is_err() {
                break;
            }
            offset += length;
            if offset >= size / 3
                && let Some(midway) = midway.take()
            {
                midway();
            }
        }
        let _ = input.send(ExecInput::StdinEof).await;
        format!("{:x}", hasher.finalize())
    });
    let mut output = client
        .exec(spec, tokio_stream::wrappers::ReceiverStream::new(input_rx))
        .await
        .expect("the exec starts");
    let mut hasher = Sha256::new();
    let mut received = 0;
    let mut code = None;
    let mut stderr = Vec::new();
    while let Some(event) = output.next().await {
        match event.expect("the exec's output arrives") {
            ExecOutput::Stdout(data) => {
                received += data.len();
                hasher.update(&data);
            }
            ExecOutput::Stderr(data) => stderr.extend_from_slice(&data),
            ExecOutput::Exit(exit) => code = Some(exit),
            _ => {}
        }
    }
    assert_eq!(
        code,
        Some(0),
        "a cleanly ended exec exits 0; its standard error: {}",
        String::from_utf8_lossy(&stderr)
    );
    (
        sent.await.unwrap(),
        format!("{:x}", hasher.finalize()),
        received,
    )
}

/// One test of this binary at a time: they time transfers, and two at once on two cores would time each other.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A test's runtime, holding [`ALONE`] until the test ends (the runtime is shut down first).
struct Serial {
    runtime: tokio::runtime::Runtime,
    _alone: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for Serial {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }
}

fn runtime() -> Serial {
    // A test that failed while holding it poisons it; the next still runs alone.
    let alone = ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Serial {
        runtime: build_runtime(),
        _alone: alone,
    }
}

fn build_runtime() -> tokio::runtime::Runtime {
    // `SKIFF_TEST_LOG=info` (an env filter) shows what the tunnel, the library and the gateway did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_TEST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A laptop that sleeps or changes networks between two transfers keeps its tunnel: the WebSocket is resumed
/// (ResumeSession, a new socket, the same session and sequence numbers) and the command running across the gap
/// goes on with every byte intact.
#[test]
fn a_websocket_dropped_between_transfers_is_resumed_and_the_exec_goes_on() {
    let agent = LocalAgent::start("tunnel-resume");
    runtime().block_on(async {
        let Rig {
            gateway, tunnel, ..
        } = Rig::start(&agent, GatewayConfig::default()).await;
        let mut client = client_through(&tunnel, &agent).await;
        let (input, input_rx) = tokio::sync::mpsc::channel::<ExecInput>(4);
        let mut output = client
            .exec(
                cat_spec(),
                tokio_stream::wrappers::ReceiverStream::new(input_rx),
            )
            .await
            .unwrap();
        let first: Vec<u8> = (0..1_000_000u32).map(|index| (index % 251) as u8).collect();
        let second: Vec<u8> = (0..1_000_000u32).map(|index| (index % 241) as u8).collect();
        input.send(ExecInput::Stdin(first.clone())).await.unwrap();
        let mut received = Vec::new();
        while received.len() < first.len() {
            match output.next().await.unwrap().unwrap() {
                ExecOutput::Stdout(data) => received.extend_from_slice(&data),
                other => panic!("unexpected {other:?}"),
            }
        }
        gateway.drop_websockets();
        let deadline = Instant::now() + Duration::from_secs(20);
        while gateway.stats().sessions_resumed == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            gateway.stats().sessions_resumed >= 1,
            "{:?}",
            gateway.stats()
        );
        input.send(ExecInput::Stdin(second.clone())).await.unwrap();
        input.send(ExecInput::StdinEof).await.unwrap();
        let mut code = None;
        while let Some(event) = output.next().await {
            match event.unwrap() {
                ExecOutput::Stdout(data) => received.extend_from_slice(&data),
                ExecOutput::Exit(exit) => code = Some(exit),
                _ => {}
            }
        }
        assert_eq!(code, Some(0));
        assert_eq!(received.len(), first.len() + second.len());
        assert!(received[..first.len()] == first[..] && received[first.len()..] == second[..]);
        let stats = gateway.stats();
        assert_eq!(
            stats.sessions_started, 1,
            "resumed, not replaced: {stats:?}"
        );
        tunnel.close().await;
    });
}

/// A WebSocket dropped while 100 MiB are in flight, through the warm tunnel as every command goes. The data
/// channel resumes the session and sends every unacknowledged message again; should a stream still break (or go
/// silent long enough for the resumable connection under TLS to give up on it), the daemon opens a new stream
/// (on a new session if that one ended), and both ends send again what the other has not got: every byte
/// arrives, in order, and the exec ends cleanly.
#[test]
fn a_websocket_dropped_in_the_middle_of_100_mib_resumes_and_every_byte_arrives_in_order() {
    let agent = LocalAgent::start("tunnel-drop");
    runtime().block_on(async {
        let rig = Rig::start(&agent, GatewayConfig::default()).await;
        let (_warm, mut client) = rig.warm_client(&agent).await;
        let Rig {
            gateway, tunnel, ..
        } = rig;
        let dropper = Arc::clone(&gateway);
        let (sent, received, length) =
            cat_through(&mut client, 100 << 20, move || dropper.drop_websockets()).await;
        assert_eq!(length, 100 << 20, "every byte came back");
        assert_eq!(sent, received, "the bytes came back unchanged and in order");
        let stats = gateway.stats();
        assert!(stats.websockets_dropped >= 1, "{stats:?}");
        assert!(stats.sessions_resumed >= 1, "{stats:?}");
        tunnel.close().await;
    });
}

/// A session ended on the service's side in the middle of a transfer (an administrator, the session's
/// time limit): the warm tunnel opens a new session, the connection resumes on it, and the exec goes on.
#[test]
fn a_session_terminated_mid_transfer_goes_on_over_a_new_session() {
    let agent = LocalAgent::start("tunnel-terminated");
    runtime().block_on(async {
        let rig = Rig::start(&agent, GatewayConfig::default()).await;
        let session = rig.tunnel.session_id().to_owned();
        let (_warm, mut client) = rig.warm_client(&agent).await;
        let ssm = aws_sdk_ssm::Client::new(&rig.sdk);
        let terminate = move || {
            tokio::spawn(async move {
                ssm.terminate_session()
                    .session_id(&session)
                    .send()
                    .await
                    .unwrap();
            });
        };
        let (sent, received, length) = cat_through(&mut client, 16 << 20, terminate).await;
        assert_eq!(length, 16 << 20, "every byte came back");
        assert_eq!(sent, received, "the bytes came back unchanged and in order");
        let stats = rig.gateway.stats();
        assert!(
            stats.sessions_started >= 2,
            "a new session carried the rest: {stats:?}"
        );
    });
}

#[test]
fn lost_repeated_and_reordered_messages_are_retransmitted_and_deduplicated() {
    let agent = LocalAgent::start("tunnel-faults");
    runtime().block_on(async {
        let Rig {
            gateway, tunnel, ..
        } = Rig::start(
            &agent,
            GatewayConfig {
                faults: Faults {
                    loss: 0.03,
                    repeat: 0.03,
                    reorder: 0.03,
                    ack_delay: Duration::from_millis(5),
                    seed: 42,
                    ..Faults::none()
                },
                ..GatewayConfig::default()
            },
        )
        .await;
        let mut client = client_through(&tunnel, &agent).await;
        let (sent, received, length) = cat_through(&mut client, 8 << 20, || {}).await;
        assert_eq!(length, 8 << 20);
        assert_eq!(sent, received);
        let stats = gateway.stats();
        assert!(stats.messages_lost > 0, "{stats:?}");
        assert!(stats.messages_repeated > 0, "{stats:?}");
        assert!(stats.messages_reordered > 0, "{stats:?}");
        assert!(
            stats.duplicates_received > 0 || stats.retransmissions_sent > 0,
            "{stats:?}"
        );
        tunnel.close().await;
        // The session ends on the gateway too: TerminateSession was called.
        let deadline = Instant::now() + Duration::from_secs(5);
        while gateway.stats().sessions_terminated == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(gateway.stats().sessions_terminated, 1);
    });
}

/// A session that ends for good (terminated on the service's side) fails the streams on it with an error that
/// says so, instead of a clean end of the data.
#[test]
fn a_stream_whose_session_is_gone_is_an_error_not_a_short_read() {
    let agent = LocalAgent::start("tunnel-gone");
    runtime().block_on(async {
        // The gateway is bound so it lives to the end: a field left to `..` is dropped at once.
        let Rig {
            gateway: _gateway,
            sdk,
            tunnel,
            ..
        } = Rig::start(&agent, GatewayConfig::default()).await;
        let mut client = client_through(&tunnel, &agent).await;
        let session = tunnel.session_id().to_owned();
        let spec = cat_spec();
        let (input, input_rx) = tokio::sync::mpsc::channel::<ExecInput>(4);
        let mut output = client
            .exec(spec, tokio_stream::wrappers::ReceiverStream::new(input_rx))
            .await
            .unwrap();
        input
            .send(ExecInput::Stdin(b"before\n".to_vec()))
            .await
            .unwrap();
        match output.next().await {
            Some(Ok(ExecOutput::Stdout(data))) => assert_eq!(data, b"before\n"),
            other => panic!("expected the echo, got {other:?}"),
        }
        // Someone ends the session on the service's side (an administrator, the idle timeout).
        aws_sdk_ssm::Client::new(&sdk)
            .terminate_session()
            .session_id(&session)
            .send()
            .await
            .unwrap();
        let mut ended_with_error = false;
        while let Some(event) = output.next().await {
            match event {
                Ok(ExecOutput::Exit(code)) => {
                    panic!("the exec must not look finished (exit {code})")
                }
                Ok(_) => {}
                Err(error) => {
                    ended_with_error = true;
                    eprintln!("the exec failed as it should: {error}");
                    break;
                }
            }
        }
        assert!(
            ended_with_error,
            "a dead session is an error, never a clean end"
        );
        assert!(tunnel.ended().is_some());
        drop(input);
    });
}
