//! A TCP connection to an agent: the local provider's agent on loopback, or any agent a test serves on an
//! address.

use std::net::SocketAddr;
use std::sync::Arc;

use skiff::tls::Identity;
use tokio::net::TcpStream;

pub use super::ConnectError;
use super::connect::Pin;
use super::{BoxIo, Dial};
use crate::agent_client::Channel;

/// The dial of a TCP connection to `address`, without Nagle's delay.
pub fn dial(address: SocketAddr) -> Dial {
    Arc::new(move || {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    })
}

/// Opens a gRPC channel to the agent at `address`, authenticating with `identity` and accepting only
/// `agent_certificate_pem`. The channel reconnects by itself if the connection drops.
pub async fn connect(
    address: SocketAddr,
    identity: &Identity,
    agent_certificate_pem: &str,
) -> Result<Channel, ConnectError> {
    super::connect(
        dial(address),
        identity,
        Pin::Certificate(agent_certificate_pem),
        &format!("at {address}"),
    )
    .await
}
