//! One `Forward` call: a TCP connection from the agent to a port as the dev container sees it, with the
//! bytes carried both ways and each direction's end passed on as a half-close.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use skiff::api::ForwardTarget;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineError};
use crate::idle::{self, Activity};

/// What the agent sends back on a forwarded connection.
#[derive(Debug)]
pub enum ForwardEvent {
    /// Connected to this address.
    Opened(SocketAddr),
    /// Bytes from the remote side.
    Data(Vec<u8>),
    /// The remote side closed for writing.
    Eof,
}

/// Input from the client on a forwarded connection.
#[derive(Debug)]
pub enum ForwardInput {
    /// Bytes for the remote side.
    Data(Vec<u8>),
    /// The client closed for writing.
    Eof,
}

/// A forward that could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The engine could not say where the container is.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The host name did not resolve inside the container.
    #[error("{host} does not resolve inside the dev container")]
    Unresolved { host: String },
    /// Nothing listens there.
    #[error("connecting to {address} ({what}): {source}")]
    Connect {
        address: SocketAddr,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The remote side reset the connection.
    #[error("the connection to {address} was reset: {source}")]
    Reset {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The container has no address the agent can reach.
    #[error("the dev container has no network address the agent can reach")]
    NoAddress,
}

/// Opens the connection and carries bytes until both directions have ended.
pub async fn run(
    engine: &Engine,
    activity: &Arc<Activity>,
    target: ForwardTarget,
    mut input: impl Stream<Item = ForwardInput> + Unpin + Send + 'static,
    output: mpsc::Sender<ForwardEvent>,
) -> Result<(), ForwardError> {
    let running = engine.running().await?;
    let address = match &target.host {
        None => running
            .container
            .ip_address
            .ok_or(ForwardError::NoAddress)?,
        Some(host) => resolve_in_container(engine, &running, host).await?,
    };
    let address = SocketAddr::new(address, target.port);
    let what = match &target.host {
        Some(host) => format!("{host}:{}", target.port),
        None => format!("port {} of the dev container", target.port),
    };
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| ForwardError::Connect {
            address,
            what,
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let _ = output.send(ForwardEvent::Opened(address)).await;
    let (mut reader, mut writer) = stream.into_split();

    let upload_activity = Arc::clone(activity);
    let upstream = tokio::spawn(async move {
        while let Some(message) = input.next().await {
            match message {
                ForwardInput::Data(data) => {
                    upload_activity.touch(idle::source::FORWARD);
                    if writer.write_all(&data).await.is_err() {
                        break;
                    }
                }
                ForwardInput::Eof => break,
            }
        }
        // The client's end (or its hang-up) is passed on as a half-close.
        let _ = writer.shutdown().await;
    });

    let mut buffer = vec![0u8; 64 * 1024];
    let mut reset = None;
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) => {
                let _ = output.send(ForwardEvent::Eof).await;
                break;
            }
            // A reset is not an end: the client must see it as one, not as a clean, short stream.
            Err(error) => {
                reset = Some(error);
                break;
            }
            Ok(read) => {
                if output
                    .send(ForwardEvent::Data(buffer[..read].to_vec()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    if let Some(source) = reset {
        upstream.abort();
        return Err(ForwardError::Reset { address, source });
    }
    let _ = upstream.await;
    Ok(())
}

/// Resolves a name as the dev container would (its `/etc/hosts`, Docker's DNS for compose services).
async fn resolve_in_container(
    engine: &Engine,
    running: &crate::engine::Target,
    host: &str,
) -> Result<std::net::IpAddr, ForwardError> {
    if let Ok(address) = host.parse() {
        return Ok(address);
    }
    if host == "localhost" {
        return running.container.ip_address.ok_or(ForwardError::NoAddress);
    }
    let (code, stdout) = engine
        .exec_collect(running, vec!["getent".into(), "hosts".into(), host.into()])
        .await?;
    let text = String::from_utf8_lossy(&stdout);
    text.split_whitespace()
        .next()
        .filter(|_| code == 0)
        .and_then(|address| address.parse().ok())
        .ok_or_else(|| ForwardError::Unresolved {
            host: host.to_owned(),
        })
}
