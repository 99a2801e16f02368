//! Agent forwarding from this machine (`skiff ssh -A`, `skiff exec -A`, and `--gpg`): the `SshAgent` call makes a
//! socket in the dev container (for the session's `SSH_AUTH_SOCK`, or where gpg looks for its agent), and each
//! connection a program there makes to it is carried here and joined to this machine's own agent (`SSH_AUTH_SOCK`,
//! or gpg-agent's extra socket). Only the agent protocol's requests and answers
//! travel; keys stay in the laptop's agent, which may ask its person before it signs.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use futures::StreamExt as _;
use skiff::api::SshAgentMessage;
use skiff::ssh::forwarding::Carrier;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent_client::{AgentClient, Code};

/// How long the agent may take to make the socket (it may copy `skiff-procd` into the container first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Forwarding for one session: where the dev container's programs find the agent, and the task that carries their
/// connections, which ends when this is dropped.
#[derive(Debug)]
pub struct Forwarded {
    /// The socket inside the dev container, for the session's `SSH_AUTH_SOCK`.
    pub socket: String,
    _carrying: tokio::task::JoinSet<()>,
}

/// Which of this machine's agents a session forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// The SSH agent (`SSH_AUTH_SOCK`): `-A`.
    Ssh,
    /// The gpg-agent, through its extra socket (the one gpg-agent restricts for remote use): `--gpg`.
    Gpg,
}

/// This machine's socket of `agent`, or an error that says how to start one.
pub async fn local_socket(agent: Agent) -> anyhow::Result<PathBuf> {
    match agent {
        Agent::Ssh => local_agent(),
        Agent::Gpg => local_gpg_agent().await,
    }
}

/// This machine's gpg-agent extra socket (`gpgconf --list-dirs agent-extra-socket`), with the agent started.
async fn local_gpg_agent() -> anyhow::Result<PathBuf> {
    let listed = tokio::process::Command::new("gpgconf")
        .args(["--list-dirs", "agent-extra-socket"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "--gpg forwards this machine's gpg-agent, but gpgconf is not on PATH: install GnuPG, or leave out --gpg"
            )
        })?;
    let path = String::from_utf8_lossy(&listed.stdout).trim().to_owned();
    if !listed.status.success() || path.is_empty() {
        anyhow::bail!("--gpg: gpgconf names no agent extra socket on this machine");
    }
    // The agent starts on demand; a forwarded connection must find it running.
    let _ = tokio::process::Command::new("gpg-connect-agent")
        .arg("/bye")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    Ok(PathBuf::from(path))
}

/// The armored public keys of this machine's secret gpg keys, for gpg in the container to know what it signs with.
async fn public_keys() -> Option<String> {
    let listed = tokio::process::Command::new("gpg")
        .args(["--batch", "--with-colons", "--list-secret-keys"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    let fingerprints: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix("fpr:"))
        .filter_map(|rest| rest.split(':').nth(8))
        .filter(|fingerprint| {
            fingerprint.chars().all(|c| c.is_ascii_hexdigit()) && !fingerprint.is_empty()
        })
        .map(str::to_owned)
        .collect();
    if fingerprints.is_empty() {
        return None;
    }
    let exported = tokio::process::Command::new("gpg")
        .args(["--batch", "--armor", "--export", "--"])
        .args(&fingerprints)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    exported
        .status
        .success()
        .then(|| String::from_utf8_lossy(&exported.stdout).into_owned())
        .filter(|keys| !keys.trim().is_empty())
}

/// Imports the armored public keys (`$1`, data, never part of the script) into the user's keyring in the container.
const IMPORT_KEYS: &str = "command -v gpg >/dev/null 2>&1 || { echo 'gpg is not installed in the dev container' >&2; exit 3; }
printf '%s\n' \"$1\" | gpg --batch --quiet --import";

/// This machine's agent socket, from `SSH_AUTH_SOCK`, or an error that says how to start one.
pub fn local_agent() -> anyhow::Result<PathBuf> {
    match std::env::var_os("SSH_AUTH_SOCK") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => anyhow::bail!(
            "-A forwards this machine's SSH agent, but SSH_AUTH_SOCK is not set: start one (`eval \"$(ssh-agent)\"`) and add a key (`ssh-add`), or leave out -A"
        ),
    }
}

/// The agents `options` asks to forward.
fn asked(options: crate::cli::KeyForwarding) -> impl Iterator<Item = Agent> {
    [
        options.forward_agent.then_some(Agent::Ssh),
        options.gpg.then_some(Agent::Gpg),
    ]
    .into_iter()
    .flatten()
}

/// Fails, saying how to start one, unless this machine has every agent `options` asks to forward: checked before a
/// session connects, so a missing agent costs nothing.
pub async fn check(options: crate::cli::KeyForwarding) -> anyhow::Result<()> {
    for agent in asked(options) {
        local_socket(agent).await?;
    }
    Ok(())
}

/// Starts every forwarding `options` asks for, for commands run as `user`, and sets `SSH_AUTH_SOCK` in `env` for the
/// SSH agent's; the forwardings last while the returned value lives.
pub async fn forward_all(
    client: &AgentClient,
    user: Option<&str>,
    options: crate::cli::KeyForwarding,
    env: &mut std::collections::BTreeMap<String, String>,
) -> anyhow::Result<Vec<Forwarded>> {
    let mut forwarded = Vec::new();
    for agent in asked(options) {
        let one = forward(client, user.map(str::to_owned), agent).await?;
        if agent == Agent::Ssh {
            env.insert("SSH_AUTH_SOCK".to_owned(), one.socket.clone());
        }
        forwarded.push(one);
    }
    Ok(forwarded)
}

/// Starts forwarding this machine's `agent` for commands run as `user` (none: the workspace's remote user). For
/// gpg, the public keys of this machine's secret keys are imported into the user's keyring in the container first.
pub async fn forward(
    client: &AgentClient,
    user: Option<String>,
    agent: Agent,
) -> anyhow::Result<Forwarded> {
    let local = local_socket(agent).await?;
    if agent == Agent::Gpg
        && let Some(keys) = public_keys().await
    {
        let finished = client
            .clone()
            .output_as(
                user.clone(),
                vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    IMPORT_KEYS.into(),
                    "skiff-gpg-import".into(),
                    keys,
                ],
            )
            .await
            .context("importing your public gpg keys into the dev container")?;
        if finished.code != Some(0) {
            anyhow::bail!(
                "importing your public gpg keys into the dev container failed: {}",
                String::from_utf8_lossy(&finished.stderr).trim()
            );
        }
    }
    let (outbound, messages) = mpsc::channel::<SshAgentMessage>(16);
    outbound
        .send(SshAgentMessage::Start {
            user,
            gpg: agent == Agent::Gpg,
        })
        .await
        .context("opening agent forwarding")?;
    let mut inbound = match client
        .clone()
        .ssh_agent(ReceiverStream::new(messages))
        .await
    {
        Ok(inbound) => inbound,
        Err(error) if error.code() == Some(Code::Unimplemented) => anyhow::bail!(
            "the workspace's agent is older than SSH agent forwarding; run `skiff up` to upgrade it, or leave out -A"
        ),
        Err(error) => return Err(error).context("forwarding the SSH agent"),
    };
    let first = tokio::time::timeout(READY_TIMEOUT, inbound.next())
        .await
        .context("forwarding the SSH agent: the workspace did not answer in time")?;
    let socket = match first {
        // An agent that knows only SSH forwarding answers a gpg request with an SSH socket.
        Some(Ok(SshAgentMessage::Ready { socket }))
            if agent == Agent::Gpg && !socket.ends_with("/S.gpg-agent") =>
        {
            anyhow::bail!(
                "the workspace's agent is older than gpg-agent forwarding; run `skiff up` to upgrade it, or leave out --gpg"
            )
        }
        Some(Ok(SshAgentMessage::Ready { socket })) => socket,
        Some(Ok(other)) => anyhow::bail!("forwarding the SSH agent: the agent answered {other:?}"),
        Some(Err(error)) => return Err(error).context("forwarding the SSH agent"),
        None => anyhow::bail!("forwarding the SSH agent: the agent ended the call"),
    };
    let mut carrying = tokio::task::JoinSet::new();
    carrying.spawn(async move {
        let mut carrier = Carrier::new(outbound.clone());
        while let Some(Ok(message)) = inbound.next().await {
            match carrier.deliver(message).await {
                Some(SshAgentMessage::Open { connection }) => {
                    match UnixStream::connect(&local).await {
                        Ok(stream) => carrier.carry(connection, stream),
                        Err(error) => {
                            tracing::warn!(
                                "reaching this machine's SSH agent at {}: {error}",
                                local.display()
                            );
                            if outbound
                                .send(SshAgentMessage::Close { connection })
                                .await
                                .is_err()
                            {
                                break;
                            }
                        }
                    }
                }
                Some(other) => tracing::debug!("ssh agent forwarding: ignored {other:?}"),
                None => {}
            }
        }
    });
    Ok(Forwarded {
        socket,
        _carrying: carrying,
    })
}
