//! How the client reaches an agent, and the only module that knows. Every transport ends the same way: gRPC
//! (HTTP/2) inside mutual TLS with the agent's certificate pinned, over a byte stream that a transport dials.
//!
//! - `tcp`: a TCP connection; the local provider's agent on loopback.
//! - `ssm`: a stream of a Session Manager port-forwarding session to the instance's agent port, spoken
//!   natively (the `aws-ssm-bridge` data channel, resumed by our own layer when its WebSocket drops).
//! - `plugin`: the fallback, AWS's `session-manager-plugin` forwarding a local ephemeral port.
//! - `warm`: the background `skiff` process that holds a workspace's sessions so every command shares them
//!   over a local socket, as SSH's ControlMaster does; AWS workspaces are always reached through it.

pub mod plugin;
pub mod ssm;
pub mod tcp;
pub mod warm;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// A byte stream to the agent's port, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed [`Io`].
pub type BoxIo = Box<dyn Io>;

/// Makes a new byte stream to the agent for each (re)connection of a gRPC channel.
pub type Dial =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = std::io::Result<BoxIo>> + Send>> + Send + Sync>;

/// A failure to reach an agent.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS configuration could not be built from the workspace's keys.
    #[error(transparent)]
    Tls(#[from] skiff::tls::TlsError),
    /// The connection failed.
    #[error("could not reach the agent {address}: {detail}")]
    Unreachable { address: String, detail: String },
}

/// Opens a gRPC channel to the agent over streams from `dial`, inside TLS configured by `tls` (pinned, or
/// first-use). `address` names the route in errors. The channel dials again by itself if a stream drops.
pub async fn channel(
    dial: Dial,
    tls: rustls::ClientConfig,
    address: &str,
) -> Result<Channel, ConnectError> {
    let connector = TlsConnector::from(Arc::new(tls));
    let endpoint = Endpoint::from_static("http://skiff-agent.invalid")
        .connect_timeout(Duration::from_secs(20))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let dial = Arc::clone(&dial);
            async move {
                let stream = dial().await?;
                let tls = connector
                    .connect(skiff::tls::agent_server_name(), stream)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|error| ConnectError::Unreachable {
            address: address.to_owned(),
            detail: error_chain(&error),
        })
}

/// An error and its causes on one line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Layers often repeat their cause's text; say each thing once.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
