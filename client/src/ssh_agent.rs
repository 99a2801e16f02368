//! SSH agent forwarding from this machine (`skiff ssh -A`, `skiff exec -A`): the `SshAgent` call makes a socket in
//! the dev container for the session's `SSH_AUTH_SOCK`, and each connection a program there makes to it is carried
//! here and joined to this machine's own agent (`SSH_AUTH_SOCK`). Only the agent protocol's requests and answers
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

/// This machine's agent socket, from `SSH_AUTH_SOCK`, or an error that says how to start one.
pub fn local_agent() -> anyhow::Result<PathBuf> {
    match std::env::var_os("SSH_AUTH_SOCK") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => anyhow::bail!(
            "-A forwards this machine's SSH agent, but SSH_AUTH_SOCK is not set: start one (`eval \"$(ssh-agent)\"`) and add a key (`ssh-add`), or leave out -A"
        ),
    }
}

/// Starts forwarding this machine's agent for commands run as `user` (none: the workspace's remote user).
pub async fn forward(client: &AgentClient, user: Option<String>) -> anyhow::Result<Forwarded> {
    let local = local_agent()?;
    let (outbound, messages) = mpsc::channel::<SshAgentMessage>(16);
    outbound
        .send(SshAgentMessage::Start { user })
        .await
        .context("opening ssh agent forwarding")?;
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
