//! One `Forward` call: a TCP connection made inside the dev container's network to a port as the container
//! sees it, with the bytes carried both ways and each direction's end passed on as a half-close.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use skiff::api::{ForwardEvent, ForwardInput, ForwardTarget};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::engine::{Engine, EngineError};
use crate::idle::{self, Activity};
use crate::procd::connect;
use crate::procd::{EXIT, FAILED, STDIN, STDIN_EOF, STDOUT, read_frame, write_frame};

/// A forward that could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The engine could not say where the container is.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The connection was refused inside the container (a refused address, a name that does not resolve,
    /// nothing listening): the process server's sentence.
    #[error("{0}")]
    Refused(String),
    /// Nothing listens there.
    #[error("connecting to {address} ({what}): {source}")]
    Connect {
        address: SocketAddr,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The remote side reset the connection.
    #[error("the connection to {address} was reset: {reason}")]
    Reset { address: SocketAddr, reason: String },
    /// The container has no address the agent can reach.
    #[error("the dev container has no network address the agent can reach")]
    NoAddress,
    /// Another host needs the process server, which could not run in this container.
    #[error(
        "forwarding to {host} needs skiff's process server in the dev container, which could not start there"
    )]
    NoProcessServer { host: String },
}

/// Opens the connection and carries bytes until both directions have ended.
///
/// The connection is made inside the dev container's network by its process server, so names resolve as
/// the container resolves them and loopback is the container's (see [`crate::procd::connect`]). Where the
/// process server cannot run, only the container itself is reachable: its address, from the agent.
pub async fn run(
    engine: &Engine,
    activity: &Arc<Activity>,
    target: ForwardTarget,
    input: impl Stream<Item = ForwardInput> + Unpin + Send + 'static,
    output: mpsc::Sender<ForwardEvent>,
) -> Result<(), ForwardError> {
    let running = engine.running().await?;
    let host = target.host.as_deref().filter(|host| !is_loopback(host));
    // A literal address is refused here already, before anything starts in the container.
    if let Some(address) = host.and_then(literal_address)
        && let Some(reason) = connect::refusal(address)
    {
        return Err(ForwardError::Refused(format!(
            "{}:{} is refused: {address} is {reason}, and skiff does not forward there",
            target.host.as_deref().unwrap_or_default(),
            target.port
        )));
    }
    // A server that stopped answering (its container restarted under it) is started again once.
    for _ in 0..2 {
        let Some(server) = engine.process_server(&running).await else {
            break;
        };
        match connect::open(&server, host, target.port).await {
            Ok(Ok(connection)) => return carry_inside(activity, connection, input, output).await,
            Ok(Err(reason)) => return Err(ForwardError::Refused(reason)),
            Err(error) => {
                tracing::info!("forward: the process server did not answer: {error}");
                engine.forget_process_server().await;
            }
        }
    }
    if let Some(host) = host {
        return Err(ForwardError::NoProcessServer {
            host: host.to_owned(),
        });
    }
    let address = running
        .container
        .ip_address
        .ok_or(ForwardError::NoAddress)?;
    let address = SocketAddr::new(address, target.port);
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| ForwardError::Connect {
            address,
            what: format!("port {} of the dev container", target.port),
            source,
        })?;
    carry_outside(activity, stream, input, output).await
}

/// An address written as one (`[` `]` allowed around IPv6).
fn literal_address(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether `host` names the container itself: `localhost`, a loopback or unspecified address, in any of
/// its spellings (`::ffff:127.0.0.1` too).
pub fn is_loopback(host: &str) -> bool {
    host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || literal_address(host).is_some_and(|address| {
            let address = address.to_canonical();
            address.is_loopback() || address.is_unspecified()
        })
}

/// Carries a connection the process server made, as frames, until both directions have ended.
async fn carry_inside(
    activity: &Arc<Activity>,
    connection: connect::Connection,
    mut input: impl Stream<Item = ForwardInput> + Unpin + Send + 'static,
    output: mpsc::Sender<ForwardEvent>,
) -> Result<(), ForwardError> {
    let connect::Connection {
        address,
        mut reader,
        mut writer,
    } = connection;
    let _ = output.send(ForwardEvent::Opened(address.to_string())).await;
    // The two directions run side by side in this task; the upstream one never ends the carrying.
    let upstream = async move {
        let sending = async {
            while let Some(message) = input.next().await {
                match message {
                    ForwardInput::Data(data) => {
                        activity.touch(idle::source::FORWARD);
                        if write_frame(&mut writer, STDIN, &data).await.is_err() {
                            return;
                        }
                    }
                    ForwardInput::Eof => break,
                }
            }
            // The client's end (or its hang-up) is passed on as a half-close.
            let _ = write_frame(&mut writer, STDIN_EOF, &[]).await;
        };
        sending.await;
        // The writer stays open until the answer has been read: dropping it would end the connection.
        std::future::pending::<()>().await;
    };
    let downstream = async move {
        let result = loop {
            match read_frame(&mut reader).await {
                Ok(Some((STDOUT, data))) => {
                    if output.send(ForwardEvent::Data(data)).await.is_err() {
                        // Nobody reads any more: dropping both halves ends the connection.
                        return Ok(());
                    }
                }
                Ok(Some((EXIT, _))) => {
                    let _ = output.send(ForwardEvent::Eof).await;
                    break Ok(());
                }
                // A reset is not an end: the client must see it as one, not as a clean, short stream.
                Ok(Some((FAILED, reason))) => {
                    break Err(ForwardError::Reset {
                        address,
                        reason: String::from_utf8_lossy(&reason).into_owned(),
                    });
                }
                Ok(Some((kind, _))) => {
                    break Err(ForwardError::Reset {
                        address,
                        reason: format!("the process server sent frame {kind:#x}"),
                    });
                }
                Ok(None) => {
                    break Err(ForwardError::Reset {
                        address,
                        reason: "the process server closed the connection".to_owned(),
                    });
                }
                Err(error) => {
                    break Err(ForwardError::Reset {
                        address,
                        reason: error.to_string(),
                    });
                }
            }
        };
        result?;
        // The remote side has ended; the client may still be sending. The process server ends the connection
        // once the client's end has reached it, which `reader` sees as the end of the stream.
        let _ = read_frame(&mut reader).await;
        Ok(())
    };
    tokio::select! {
        result = downstream => result,
        () = upstream => unreachable!("the upstream direction waits for the downstream one"),
    }
}

/// Carries a connection the agent made itself (to the container's address) until both directions have ended.
async fn carry_outside(
    activity: &Arc<Activity>,
    stream: TcpStream,
    mut input: impl Stream<Item = ForwardInput> + Unpin + Send + 'static,
    output: mpsc::Sender<ForwardEvent>,
) -> Result<(), ForwardError> {
    let _ = stream.set_nodelay(true);
    let address = stream.peer_addr().map_err(|source| ForwardError::Reset {
        address: SocketAddr::from(([0, 0, 0, 0], 0)),
        reason: source.to_string(),
    })?;
    let _ = output.send(ForwardEvent::Opened(address.to_string())).await;
    let (mut reader, mut writer) = stream.into_split();

    // The two directions run side by side in this task.
    let upstream = async move {
        while let Some(message) = input.next().await {
            match message {
                ForwardInput::Data(data) => {
                    activity.touch(idle::source::FORWARD);
                    if writer.write_all(&data).await.is_err() {
                        break;
                    }
                }
                ForwardInput::Eof => break,
            }
        }
        // The client's end (or its hang-up) is passed on as a half-close.
        let _ = writer.shutdown().await;
    };
    let downstream = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) => {
                    let _ = output.send(ForwardEvent::Eof).await;
                    return None;
                }
                // A reset is not an end: the client must see it as one, not as a clean, short stream.
                Err(error) => return Some(error),
                Ok(read) => {
                    if output
                        .send(ForwardEvent::Data(buffer[..read].to_vec()))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
            }
        }
    };
    tokio::pin!(upstream, downstream);
    let mut sent = false;
    let reset = loop {
        tokio::select! {
            reset = &mut downstream => break reset,
            () = &mut upstream, if !sent => sent = true,
        }
    };
    if let Some(source) = reset {
        return Err(ForwardError::Reset {
            address,
            reason: source.to_string(),
        });
    }
    if !sent {
        upstream.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
