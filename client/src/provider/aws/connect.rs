//! Reaching an AWS workspace's agent: through the workspace's warm tunnel (`tunnel::warm`), which this module
//! starts as a background `skiff tunnel-daemon NAME` when none runs, and which holds Session Manager sessions
//! to the agent's port on the instance (`tunnel::ssm`, or `tunnel::plugin` with `--tunnel plugin`).
//!
//! The agent's certificate is pinned on first use (`tunnel::connect`, `Pin::FirstUse`): the first connection
//! is made through a Session Manager session to the instance that IAM let this caller reach, and the
//! certificate the agent presented then is kept in the workspace's folder (`agent.crt`) and required on every
//! later connection.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::UnixStream;

use super::{AGENT_PORT, Aws};
use crate::agent_client::AgentClient;
use crate::cli::TunnelChoice;
use crate::tunnel::connect::{self, Pin};
use crate::tunnel::ssm::Target;
use crate::tunnel::warm::{self, Carrier, Opener};
use crate::tunnel::{BoxIo, Dial, plugin};
use crate::workspace::{Store, Workspace};

/// How long a command waits for a tunnel daemon it started to open its first session.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(120);

/// The instance and region of an AWS workspace, or an error that says the workspace has none yet.
fn placement(workspace: &Workspace) -> anyhow::Result<(String, Option<String>, String)> {
    let placement = workspace.record.aws.as_ref().with_context(|| {
        format!(
            "workspace {} has no AWS placement in its record",
            workspace.name()
        )
    })?;
    let instance_id = placement.instance_id.clone().with_context(|| {
        format!(
            "workspace {} has no instance yet; run `skiff up` in {}",
            workspace.name(),
            workspace.record.local_folder.display()
        )
    })?;
    Ok((
        placement.region.clone(),
        placement.profile.clone(),
        instance_id,
    ))
}

/// A stream to the agent on `lane` of the workspace's warm tunnel, starting the daemon if none runs.
pub async fn stream(
    workspace: &Workspace,
    lane: u8,
    tunnel: TunnelChoice,
) -> anyhow::Result<UnixStream> {
    let socket = warm::socket_path(&workspace.folder);
    if let Some(stream) = warm::connect(&socket, lane).await? {
        return Ok(stream);
    }
    let log = warm::log_path(&workspace.folder);
    let log_file = std::fs::File::create(&log)
        .with_context(|| format!("creating the tunnel's log {}", log.display()))?;
    let program = std::env::current_exe().context("finding the skiff binary")?;
    let mut command = tokio::process::Command::new(&program);
    command
        .args([
            "tunnel-daemon",
            workspace.name(),
            "--tunnel",
            tunnel.as_str(),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        // Its own process group: a Ctrl-C meant for this command does not end the shared tunnel.
        .process_group(0)
        .kill_on_drop(false);
    if std::env::var_os("SKIFF_LOG").is_none() {
        command.env("SKIFF_LOG", "info");
    }
    let mut daemon = command
        .spawn()
        .with_context(|| format!("starting {} tunnel-daemon", program.display()))?;
    let deadline = Instant::now() + DAEMON_START_TIMEOUT;
    loop {
        tokio::select! {
            status = daemon.wait() => {
                let status = status?;
                // A daemon started by another command at the same time won the socket: use that one.
                if let Some(stream) = warm::connect(&socket, lane).await? {
                    return Ok(stream);
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let reason = text
                    .lines()
                    .rev()
                    .find(|line| line.starts_with("skiff: "))
                    .map(|line| line.trim_start_matches("skiff: ").to_owned())
                    .unwrap_or_else(|| format!("it exited ({status}); its log is {}", log.display()));
                anyhow::bail!("could not open the Session Manager tunnel to workspace {}: {reason}", workspace.name());
            }
            connected = warm::connect(&socket, lane) => {
                if let Some(stream) = connected? {
                    return Ok(stream);
                }
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the tunnel to workspace {} did not open within {} s; see {}",
                workspace.name(),
                DAEMON_START_TIMEOUT.as_secs(),
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of an AWS workspace's agent through its warm tunnel on `lane` (0 for commands, `1..=POOL` for
/// bulk transfers), pinning the agent's certificate on the first connection.
pub async fn agent_on_lane(
    workspace: &Workspace,
    lane: u8,
    tunnel: TunnelChoice,
) -> anyhow::Result<AgentClient> {
    let identity = workspace.identity()?;
    let dial_workspace = workspace.clone();
    let dial: Dial = Arc::new(move || {
        let workspace = dial_workspace.clone();
        Box::pin(async move {
            stream(&workspace, lane, tunnel)
                .await
                .map(|stream| Box::new(stream) as BoxIo)
                .map_err(|error| std::io::Error::other(format!("{error:#}")))
        })
    });
    let channel = connect::connect(
        dial,
        &identity,
        Pin::FirstUse(&connect::first_use_file(&workspace.folder)),
        &format!("of workspace {} through Session Manager", workspace.name()),
    )
    .await?;
    Ok(AgentClient::new(channel))
}

/// Clients of an AWS workspace's agent for bulk transfers: one on each of the warm tunnel's bulk lanes
/// (`1..=POOL`), each lane a Session Manager session of its own.
pub async fn bulk_agents(
    workspace: &Workspace,
    tunnel: TunnelChoice,
) -> anyhow::Result<Vec<AgentClient>> {
    let mut clients = Vec::new();
    for lane in 1..=warm::POOL {
        clients.push(agent_on_lane(workspace, lane, tunnel).await?);
    }
    Ok(clients)
}

/// A client of an AWS workspace's agent, for commands.
pub async fn agent(workspace: &Workspace, tunnel: TunnelChoice) -> anyhow::Result<AgentClient> {
    agent_on_lane(workspace, 0, tunnel).await
}

/// Waits until the agent answers through the tunnel (it starts after user-data installed it), up to `timeout`.
pub async fn wait_for_agent(
    workspace: &Workspace,
    tunnel: TunnelChoice,
    timeout: Duration,
) -> anyhow::Result<AgentClient> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = async {
            let mut client = agent(workspace, tunnel).await?;
            client.version().await?;
            anyhow::Ok(client)
        };
        match attempt.await {
            Ok(client) => return Ok(client),
            Err(error) if Instant::now() + delay < deadline => {
                tracing::debug!(error = %format!("{error:#}"), "the agent does not answer yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(3));
            }
            Err(error) => {
                return Err(error.context(format!(
                    "the agent of workspace {} did not answer within {} s; `skiff logs {} --boot` shows the instance's boot",
                    workspace.name(),
                    timeout.as_secs(),
                    workspace.name()
                )));
            }
        }
    }
}

/// Sends `binary` to user-data's one-shot receiver on the instance, through a Session Manager session of its
/// own to the receiver's port: one connection carrying the file, ended by the stream's end.
///
/// The instance is online in Session Manager before user-data has its receiver listening, and a stream to a
/// port nothing listens on is ended by the agent at once (smux FIN after a failed dial). So a stream that ends
/// within `DIAL_GRACE` of opening means "not listening yet", and the push is tried again until `timeout`. Once
/// the file is sent, the agent's FIN in answer to ours says it has written every byte to the receiver.
pub async fn push_agent(
    aws: &Aws,
    instance_id: &str,
    binary: &Path,
    tunnel: TunnelChoice,
    timeout: Duration,
) -> anyhow::Result<()> {
    const DIAL_GRACE: Duration = Duration::from_secs(2);
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let target = Target {
        instance_id: instance_id.to_owned(),
        port: super::RECEIVER_PORT,
    };
    let carrier = open_carrier(aws, &target, tunnel).await?;
    let deadline = Instant::now() + timeout;
    let result = async {
        loop {
            let mut stream = carrier.open_stream().await?;
            let mut probe = [0u8; 1];
            match tokio::time::timeout(DIAL_GRACE, stream.read(&mut probe)).await {
                // Ended (or failed) at once: nothing listens yet.
                Ok(Ok(0) | Err(_)) => {
                    if Instant::now() > deadline {
                        anyhow::bail!(
                            "nothing listened on 127.0.0.1:{} of {instance_id} within {} s; `skiff logs NAME --boot` shows where user-data is",
                            super::RECEIVER_PORT,
                            timeout.as_secs()
                        );
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Ok(Ok(_)) => anyhow::bail!("the receiver on the instance sent data; it only receives"),
                // Still open after the grace: the receiver accepted the connection.
                Err(_) => {}
            }
            let mut file = tokio::fs::File::open(binary)
                .await
                .with_context(|| format!("reading {}", binary.display()))?;
            tokio::io::copy(&mut file, &mut stream).await?;
            stream.shutdown().await?;
            let mut rest = Vec::new();
            tokio::time::timeout(Duration::from_secs(120), stream.read_to_end(&mut rest))
                .await
                .context("the instance did not confirm the end of the push within 2 minutes")??;
            return anyhow::Ok(());
        }
    }
    .await;
    carrier.close().await;
    result.with_context(|| {
        format!(
            "pushing {} to 127.0.0.1:{} on {instance_id}",
            binary.display(),
            super::RECEIVER_PORT
        )
    })
}

/// Opens one carrier to `target` of the kind asked for.
async fn open_carrier(
    aws: &Aws,
    target: &Target,
    tunnel: TunnelChoice,
) -> anyhow::Result<Box<dyn Carrier>> {
    Ok(match tunnel {
        TunnelChoice::Ssm => Box::new(
            crate::tunnel::ssm::Tunnel::open(
                &aws.sdk,
                target,
                crate::tunnel::ssm::any_endpoint_allowed(),
            )
            .await?,
        ),
        TunnelChoice::Plugin => {
            let endpoint = std::env::var("AWS_ENDPOINT_URL_SSM")
                .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                .unwrap_or_else(|_| format!("https://ssm.{}.amazonaws.com", aws.region));
            let spec = plugin::PluginSpec {
                region: aws.region.clone(),
                profile: None,
                endpoint,
            };
            Box::new(plugin::PluginTunnel::open(&aws.ssm, &spec, target).await?)
        }
    })
}

/// `skiff tunnel-daemon NAME`: holds the workspace's sessions and serves its socket until idle.
pub async fn run_daemon(name: &str, tunnel: TunnelChoice) -> anyhow::Result<i32> {
    let workspace = Store::open_default()?.get(name)?;
    let (region, profile, instance_id) = placement(&workspace)?;
    let socket = warm::socket_path(&workspace.folder);
    // Claim the socket first, so two commands starting daemons at once end up with one.
    let listener = match warm::bind(&socket) {
        Ok(listener) => listener,
        Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => return Ok(0),
        Err(error) => {
            return Err(error).with_context(|| format!("listening on {}", socket.display()));
        }
    };
    let result = async {
        let aws = Arc::new(Aws::connect(&region, profile.as_deref()).await?);
        let target = Target {
            instance_id,
            port: AGENT_PORT,
        };
        let opener: Opener = {
            let aws = Arc::clone(&aws);
            let target = target.clone();
            Arc::new(move |lane| {
                let aws = Arc::clone(&aws);
                let target = target.clone();
                Box::pin(async move {
                    tracing::info!(lane, "opening a Session Manager session");
                    open_carrier(&aws, &target, tunnel).await
                })
            })
        };
        let first = opener(0).await?;
        eprintln!(
            "skiff tunnel: open to port {} of {} ({})",
            target.port,
            target.instance_id,
            tunnel.as_str()
        );
        warm::serve(listener, opener, first, warm::idle_from_env()).await;
        anyhow::Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&socket);
    result.map(|()| 0)
}

/// Stops the workspace's tunnel daemon if one runs (before the instance stops or goes away).
pub async fn stop_daemon(workspace: &Workspace) -> bool {
    warm::stop(&warm::socket_path(&workspace.folder)).await
}

/// Waits until Session Manager reports `instance_id` online (its SSM agent registered), up to `timeout`.
pub async fn wait_online(aws: &Aws, instance_id: &str, timeout: Duration) -> anyhow::Result<()> {
    let filter = aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
        .key("InstanceIds")
        .values(instance_id)
        .build()
        .context("building the DescribeInstanceInformation filter")?;
    let deadline = Instant::now() + timeout;
    loop {
        let answer = aws
            .ssm
            .describe_instance_information()
            .filters(filter.clone())
            .send()
            .await
            .map_err(|error| {
                super::sdk_error(
                    "asking Session Manager whether the instance is online",
                    "ssm",
                    &error,
                )
            })?;
        let online = answer
            .instance_information_list()
            .iter()
            .any(|information| {
                information.instance_id() == Some(instance_id)
                    && information.ping_status() == Some(&aws_sdk_ssm::types::PingStatus::Online)
            });
        if online {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "instance {instance_id} did not connect to Session Manager within {} s: its SSM agent needs a route to the ssm, ssmmessages and ec2messages endpoints (a public IP or NAT, or VPC endpoints) and the skiff-instance role; `skiff logs NAME --boot` shows its boot",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
