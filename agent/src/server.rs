//! The agent's network side: accepts TCP connections, completes mutual TLS with each, and serves the
//! gRPC service over the result until told to stop. The same `run` serves production and the tests.
//!
//! A connection that opens with a resumable connection's hello (a client through a Session Manager tunnel)
//! gets TLS inside that layer (`skiff::resume`): when its transport breaks, the client's next transport
//! joins it here and the TLS session goes on. Any other connection is TLS from its first byte.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use skiff::proto::v1::agent_server::AgentServer;
use skiff::resume::{Registry, Transport};
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

/// Serves `service` on `listener` with mutual TLS until `shutdown` is cancelled, then lets in-flight
/// calls finish.
pub async fn run(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    service: AgentService,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (connections, incoming) =
        tokio::sync::mpsc::channel::<Result<TlsConnection, std::io::Error>>(16);
    let acceptor = TlsAcceptor::from(tls);
    let resumable = Registry::new();
    let accept_shutdown = shutdown.clone();
    let accepting = tokio::spawn(async move {
        loop {
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
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let connections = connections.clone();
            let resumable = Arc::clone(&resumable);
            // Each handshake runs on its own, so a slow or hostile peer cannot hold up the others.
            tokio::spawn(async move {
                let Some(stream) = first_layer(stream, peer, &resumable).await else {
                    return;
                };
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        tracing::debug!(%peer, "client connected");
                        let _ = connections
                            .send(Ok(TlsConnection { inner: tls, peer }))
                            .await;
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(%peer, "a connection closed before its handshake");
                    }
                    Err(error) => tracing::warn!(%peer, "refused a connection: {error}"),
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

/// What TLS runs over: the TCP connection, or the application's end of a resumable connection. `None` when
/// there is nothing to run TLS over: a bare TCP connect (how a local client checks the agent is alive), a
/// transport that joined a connection already held, or a refused hello.
async fn first_layer(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    resumable: &Arc<Registry>,
) -> Option<Transport> {
    let mut first = [0; 1];
    match tokio::time::timeout(std::time::Duration::from_secs(30), stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == skiff::resume::wire::HELLO_MAGIC[0] => {
            match resumable.accept(Box::new(stream)).await {
                Ok(Some(connection)) => Some(Box::new(connection)),
                Ok(None) => None,
                Err(error) => {
                    tracing::warn!(%peer, "refused a resumable connection: {error}");
                    None
                }
            }
        }
        Ok(Ok(1)) => Some(Box::new(stream)),
        Ok(Ok(_)) => {
            tracing::debug!(%peer, "a connection closed before its handshake");
            None
        }
        Ok(Err(error)) => {
            tracing::debug!(%peer, "reading a connection's first byte: {error}");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "a connection sent nothing for 30 s");
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
