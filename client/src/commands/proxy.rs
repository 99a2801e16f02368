//! `skiff proxy NAME`: carries one SSH connection between standard input and output and the workspace's
//! agent (the `Ssh` call), byte for byte, until either side ends. ssh runs it as the ProxyCommand that
//! `skiff ssh-config` writes; the SSH server it reaches lives inside the agent, behind mutual TLS.

use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::agent_client::{AgentError, Code};
use crate::cli::ProxyArgs;

pub async fn run(args: ProxyArgs) -> anyhow::Result<i32> {
    let workspace = super::find_workspace(&args.name)?;
    let mut client = super::connect(&workspace, &args.agent, &args.start).await?;
    // The agent's host key may have changed since `skiff ssh-config` (a workspace made again under the same
    // name); the certificate the TLS connection pins is the truth, so ssh checks against it.
    super::ssh_config::write_known_hosts(&workspace)?;
    // An editor's git in the dev container gets its credentials from this machine while the connection lasts.
    let _credentials = super::git_credentials(&workspace, &client, &args.credentials);
    let (sender, receiver) = mpsc::channel::<Vec<u8>>(16);
    // Standard input's reader lives as long as the call (the set ends it when dropped).
    let mut input = tokio::task::JoinSet::new();
    input.spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if sender.send(buffer[..read].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
        // Dropping the sender ends the call's input: the SSH server sees the client's end.
    });
    let mut responses = client
        .ssh(ReceiverStream::new(receiver))
        .await
        .map_err(|error| explain(error, &args.name))?;
    let mut stdout = tokio::io::stdout();
    while let Some(data) = responses.next().await {
        let data = data.map_err(|error| explain(error, &args.name))?;
        stdout.write_all(&data).await?;
        stdout.flush().await?;
    }
    Ok(0)
}

/// An agent too old for `Ssh` says so in words a person can act on.
fn explain(error: AgentError, name: &str) -> anyhow::Error {
    if error.code() == Some(Code::Unimplemented) {
        return anyhow::anyhow!(
            "the agent of workspace {name} is older than this skiff and has no SSH server; restart it with `skiff stop {name}` and `skiff up`"
        );
    }
    error.into()
}
