//! The one way every transport reaches an agent: mutual TLS with the agent's certificate pinned, over byte
//! streams a transport dials, then gRPC (`agent_client::Channel`) inside.
//!
//! Pinning lives here and nowhere else in the client.
//! An agent on this machine writes its own certificate into its state (`agent/agent.crt` in the workspace's
//! folder), and the client requires exactly that one ([`Pin::Certificate`]).
//! An agent on another machine is pinned on first use ([`Pin::FirstUse`]): the first connection goes through a
//! transport that already authenticated the machine (a Session Manager session IAM let this caller open), and
//! the certificate the agent presented then is kept (`agent.crt` in the workspace's folder) and required on
//! every later connection.
//! Both files keep the places earlier versions wrote them, so existing workspaces keep working.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use skiff::tls::Identity;
use tokio_rustls::TlsConnector;

use super::{BoxIo, ConnectError, Dial};
use crate::agent_client::Channel;

/// The agent certificate a connection accepts.
#[derive(Debug, Clone, Copy)]
pub enum Pin<'a> {
    /// Exactly this certificate (PEM).
    Certificate(&'a str),
    /// The certificate kept in this file; while it holds none, whichever the agent presents, which is then
    /// written there for every later connection.
    FirstUse(&'a Path),
}

/// The file an agent's certificate pinned on first use is kept in: `agent.crt` in the workspace's folder.
pub fn first_use_file(workspace_folder: &Path) -> PathBuf {
    workspace_folder.join("agent.crt")
}

/// The certificate an agent on this machine wrote into its state: `agent/agent.crt` in the workspace's folder.
pub fn local_agent_file(workspace_folder: &Path) -> PathBuf {
    workspace_folder.join("agent").join("agent.crt")
}

/// The agent certificate this machine pinned for the workspace in `workspace_folder`, wherever it was pinned;
/// its key is also the agent's SSH host key.
pub fn pinned_certificate(workspace_folder: &Path) -> Option<String> {
    [
        first_use_file(workspace_folder),
        local_agent_file(workspace_folder),
    ]
    .iter()
    .find_map(|file| std::fs::read_to_string(file).ok())
}

/// Opens a gRPC channel to the agent over streams from `dial`, authenticating with `identity` and accepting
/// only the certificate `pin` names (pinning it, on first use, once the handshake saw it). `route` names the
/// way in errors. The channel dials again by itself if a stream drops.
pub async fn connect(
    dial: Dial,
    identity: &Identity,
    pin: Pin<'_>,
    route: &str,
) -> Result<Channel, ConnectError> {
    let pinned = match pin {
        Pin::Certificate(pem) => Some(pem.to_owned()),
        Pin::FirstUse(file) => std::fs::read_to_string(file).ok(),
    };
    let (tls, first_use) = match &pinned {
        Some(pem) => {
            let certificate =
                skiff::tls::parse_certificate("the workspace's pinned agent certificate", pem)?;
            (skiff::tls::client_config(identity, certificate)?, None)
        }
        None => {
            let (config, seen) = skiff::tls::client_config_first_use(identity)?;
            (config, Some(seen))
        }
    };
    let channel = channel(dial, tls, route).await?;
    if let (Pin::FirstUse(file), Some(seen)) = (pin, first_use)
        && let Some(certificate) = seen.certificate()
    {
        crate::workspace::write_file(
            file,
            skiff::tls::certificate_pem(&certificate).as_bytes(),
            0o644,
        )
        .map_err(|error| ConnectError::Pin {
            file: file.to_owned(),
            detail: error.to_string(),
        })?;
        tracing::info!(
            fingerprint = %skiff::tls::fingerprint(&certificate),
            "pinned the agent's certificate"
        );
    }
    Ok(channel)
}

/// Opens a gRPC channel to the agent over streams from `dial`, inside TLS configured by `tls` (pinned, or
/// first-use). `route` names the way in errors. The channel dials again by itself if a stream drops.
pub async fn channel(
    dial: Dial,
    tls: rustls::ClientConfig,
    route: &str,
) -> Result<Channel, ConnectError> {
    let connector = TlsConnector::from(Arc::new(tls));
    let secured: Dial = Arc::new(move || {
        let connector = connector.clone();
        let dial = Arc::clone(&dial);
        Box::pin(async move {
            let stream = dial().await?;
            let tls = connector
                .connect(skiff::tls::agent_server_name(), stream)
                .await?;
            Ok(Box::new(tls) as BoxIo)
        })
    });
    Channel::connect(secured, route).await
}

#[cfg(test)]
mod tests;
