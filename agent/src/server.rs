//! The agent's network side: accepts TCP connections, completes mutual TLS with each, and serves the
//! gRPC service over the result until told to stop. The same `run` serves production and the tests.
//!
//! A connection that opens with a resumable connection's hello (a client through a Session Manager tunnel)
//! gets TLS inside that layer (`skiff::resume`): when its transport breaks, the client's next transport
//! joins it here and the TLS session goes on. Any other connection is TLS from its first byte.
//!
//! Before its TLS handshake completes a connection is nobody's, so what it can hold is bounded: at most
//! [`Limits::max_handshakes`] handshakes run at once (more connections are closed as they arrive), each must
//! complete within [`Limits::handshake_timeout`] of the connection's accept, and a resumable connection opened
//! by a peer that never completes one is forgotten with it (its slot freed at once, see `resume::Pending`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use skiff::proto::v1::agent_server::AgentServer;
use skiff::resume::{Accepted, Pending, Registry, Transport};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use crate::service::AgentService;

/// The largest gRPC message either side sends; chunks of bytes stay well below it.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Limits on connections that have not authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// How long a connection may take from its accept to a completed TLS handshake.
    pub handshake_timeout: Duration,
    /// How many connections may be in their handshake at once.
    pub max_handshakes: usize,
}

/// The handshake timeout when the configuration gives none.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How many handshakes may run at once when the configuration does not say.
pub const DEFAULT_MAX_HANDSHAKES: usize = 64;

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
        }
    }
}

/// Serves `service` on `listener` with mutual TLS until `shutdown` is cancelled, then lets in-flight
/// calls finish.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: AgentService,
    limits: Limits,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (connections, incoming) =
        tokio::sync::mpsc::channel::<Result<TlsConnection, std::io::Error>>(16);
    let acceptor = TlsAcceptor::from(tls);
    let resumable = Registry::new();
    let handshakes = Arc::new(tokio::sync::Semaphore::new(limits.max_handshakes));
    let accept_shutdown = shutdown.clone();
    let accepting = tokio::spawn(async move {
        // The handshakes in progress, owned by this task: they end with it.
        let mut handshaking = tokio::task::JoinSet::new();
        loop {
            while handshaking.try_join_next().is_some() {}
            let (stream, peer) = tokio::select! {
                () = accept_shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!("accepting a connection: {error}");
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                tracing::warn!(
                    %peer,
                    "refused a connection: {} others are in their handshake",
                    limits.max_handshakes
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let connections = connections.clone();
            let resumable = Arc::clone(&resumable);
            // Each handshake runs on its own, so a slow or hostile peer cannot hold up the others.
            handshaking.spawn(async move {
                let handshake = async {
                    let (stream, pending) = first_layer(stream, peer, &resumable).await?;
                    match acceptor.accept(stream).await {
                        Ok(tls) => Some((tls, pending)),
                        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                            tracing::debug!(%peer, "a connection closed before its handshake");
                            None
                        }
                        Err(error) => {
                            tracing::warn!(%peer, "refused a connection: {error}");
                            None
                        }
                    }
                };
                // Dropping the handshake at the timeout drops the connection, and a resumable one's hold.
                let established = tokio::time::timeout(limits.handshake_timeout, handshake).await;
                drop(permit);
                match established {
                    Ok(Some((tls, pending))) => {
                        if let Some(pending) = pending {
                            pending.established();
                        }
                        tracing::debug!(%peer, "client connected");
                        let _ = connections
                            .send(Ok(TlsConnection { inner: tls, peer }))
                            .await;
                    }
                    Ok(None) => {}
                    Err(_) => tracing::info!(
                        %peer,
                        "closed a connection that did not complete its handshake within {:?}",
                        limits.handshake_timeout
                    ),
                }
            });
        }
    });
    let result = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .add_service(
            AgentServer::new(service)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(ReceiverStream::new(incoming), shutdown.cancelled())
        .await;
    accepting.abort();
    result
}

/// What TLS runs over: the TCP connection, or the application's end of a resumable connection with the
/// hold on it until it is established. `None` when there is nothing to run TLS over: a bare TCP connect (how
/// a local client checks the agent is alive), a transport that joined a connection already held, or a
/// refused hello. The caller bounds how long this takes.
async fn first_layer(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    resumable: &Arc<Registry>,
) -> Option<(Transport, Option<Pending>)> {
    let mut first = [0; 1];
    match stream.peek(&mut first).await {
        Ok(1) if first[0] == skiff::resume::wire::HELLO_MAGIC[0] => {
            match resumable.accept(Box::new(stream)).await {
                Ok(Some(Accepted { app, pending })) => Some((Box::new(app), Some(pending))),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%peer, "refused a resumable connection: {error}");
                    None
                }
            }
        }
        Ok(1) => Some((Box::new(stream), None)),
        Ok(_) => {
            tracing::debug!(%peer, "a connection closed before its handshake");
            None
        }
        Err(error) => {
            tracing::debug!(%peer, "reading a connection's first byte: {error}");
            None
        }
    }
}

/// One client connection after its TLS handshake.
pub struct TlsConnection {
    inner: TlsStream<Transport>,
    peer: SocketAddr,
}

/// What the service learns about a connection's peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's TCP address.
    pub address: SocketAddr,
}

impl std::fmt::Debug for TlsConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsConnection")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        PeerInfo { address: self.peer }
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(context, buffer)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(context, buffer)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(context)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(context, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
