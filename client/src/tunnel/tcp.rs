//! gRPC to an agent over TCP, inside mutual TLS with the agent's certificate pinned: the local provider's
//! agent on loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use skiff::tls::Identity;
use tokio::net::TcpStream;
use tonic::transport::Channel;

pub use super::ConnectError;
use super::{BoxIo, Dial};

/// Opens a gRPC channel to the agent at `address`, authenticating with `identity` and accepting only
/// `agent_certificate_pem`. The channel reconnects by itself if the connection drops.
pub async fn connect(
    address: SocketAddr,
    identity: &Identity,
    agent_certificate_pem: &str,
) -> Result<Channel, ConnectError> {
    let agent_certificate = skiff::tls::parse_certificate(
        "the workspace's pinned agent certificate",
        agent_certificate_pem,
    )?;
    let tls = skiff::tls::client_config(identity, agent_certificate)?;
    let dial: Dial = Arc::new(move || {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxIo)
        })
    });
    super::channel(dial, tls, &format!("at {address}")).await
}
