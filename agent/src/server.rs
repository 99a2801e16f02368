//! The agent's network side: accepts TCP connections, completes mutual TLS with each, and serves the
//! gRPC service over the result until told to stop. The same `run` serves production and the tests.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use skiff::proto::v1::agent_server::AgentServer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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
            // Each handshake runs on its own, so a slow or hostile peer cannot hold up the others.
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        tracing::debug!(%peer, "client connected");
                        let _ = connections
                            .send(Ok(TlsConnection { inner: tls, peer }))
                            .await;
                    }
                    // A bare TCP connect is how a local client checks the agent is alive: not worth a warning.
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

/// One client connection after its TLS handshake.
#[derive(Debug)]
pub struct TlsConnection {
    inner: TlsStream<TcpStream>,
    peer: SocketAddr,
}

/// What the service learns about a connection's peer.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The peer's TCP address.
    pub address: SocketAddr,
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
