//! gRPC to an agent over TCP, inside mutual TLS with the agent's certificate pinned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use skiff::tls::Identity;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

/// A failure to reach an agent.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The TLS configuration could not be built from the workspace's keys.
    #[error(transparent)]
    Tls(#[from] skiff::tls::TlsError),
    /// The connection failed.
    #[error("could not reach the agent at {address}: {detail}")]
    Unreachable { address: SocketAddr, detail: String },
}

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
    let config = skiff::tls::client_config(identity, agent_certificate)?;
    let connector = TlsConnector::from(Arc::new(config));
    let endpoint = Endpoint::from_static("http://skiff-agent.invalid")
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let stream = TcpStream::connect(address).await?;
                stream.set_nodelay(true)?;
                let tls = connector
                    .connect(skiff::tls::agent_server_name(), stream)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|error| ConnectError::Unreachable {
            address,
            detail: error_chain(&error),
        })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
