//! How the client reaches an agent, and the only module that knows. Every transport ends the same way: gRPC
//! (HTTP/2) inside mutual TLS with the agent's certificate pinned, over a byte stream that a transport dials.
//!
//! - `connect`: that common end, TLS and pinning for every transport.
//! - `tcp`: a TCP connection; the local provider's agent on loopback.
//! - `ssm`: a stream of a Session Manager port-forwarding session to the instance's agent port, spoken
//!   natively by our own data channel client, which resumes the session when its WebSocket breaks.
//! - `plugin`: the fallback, AWS's `session-manager-plugin` forwarding a local ephemeral port.
//! - `warm`: the background `skiff` process that holds a workspace's sessions so every command shares them
//!   over a local socket, as SSH's ControlMaster does; AWS workspaces are always reached through it.

pub mod connect;
pub mod plugin;
pub mod ssm;
pub mod tcp;
pub mod warm;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};

pub use connect::{channel, connect};

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
    /// The certificate seen on first use could not be kept.
    #[error("pinning the agent's certificate in {}: {detail}", file.display())]
    Pin {
        file: std::path::PathBuf,
        detail: String,
    },
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
