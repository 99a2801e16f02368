//! Resumable connections between the client and the agent, under TLS, for transports that can break or lose
//! bytes (a Session Manager tunnel): the two ends we own keep what they sent until the other acknowledges it,
//! and when a transport fails the client dials another and both carry on from where the other stopped.
//!
//! Why a layer of our own: the Session Manager data channel is AWS's protocol between our client and AWS's
//! agent on the instance, and a session can still be lost (it may not resume, and a new one starts a new smux
//! stream) or go silent, which the data channel alone cannot repair for the bytes in flight. No
//! library resumes a byte stream across transports with both ends' state (reconnecting wrappers such as
//! stubborn-io dial again but lose what was in flight), and only the client and `skiffd` see the whole stream.
//!
//! - A client opens each transport with a [`wire::Hello`]: a new connection (with a random id) or a resumed
//!   one (with what it has received). The agent answers with a [`wire::Welcome`] saying what it has received.
//! - Data, acknowledgements and each side's end then travel as checksummed frames ([`wire::Frame`]), so lost or
//!   damaged bytes break the transport instead of reaching TLS; the client dials again and resumes.
//! - The agent tells this from TLS by the first byte (a hello starts with `S`, a TLS record with 0x16), so
//!   clients that connect directly (the local provider, older clients) are served as before.
//!
//! `link` is the state machine both ends run; this file has the client's and the agent's ways in.

mod link;
pub mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio::sync::mpsc;

use link::{Detach, Link, Policy};
use wire::{ConnectionId, HELLO_LEN, Hello, WELCOME_LEN, Welcome, WireError};

/// A byte stream a resumable connection runs over.
pub trait TransportIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> TransportIo for T {}

/// A boxed [`TransportIo`].
pub type Transport = Box<dyn TransportIo>;

/// Opens a new transport to the agent's port, each time it is called.
pub type Dial = Arc<
    dyn Fn(Redial) -> Pin<Box<dyn Future<Output = io::Result<Transport>> + Send>> + Send + Sync,
>;

/// What a dial is for, so that what carries the transports can drop a carrier that went bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Redial {
    /// The connection's first transport.
    First,
    /// The last transport broke (closed, or failed); what carried it may be fine.
    Broken,
    /// The last transport lost or damaged bytes, stopped moving, or the last attempt to resume failed: what
    /// carried it is not to be used again.
    Suspect,
}

/// The buffer between a connection and the application's end of it.
const APP_BUFFER: usize = 256 * 1024;
/// How long a hello or welcome may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the welcome to a resumed transport may take before the client tries another carrier.
const RESUME_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client keeps dialling to resume a broken connection.
const RESUME_FOR: Duration = Duration::from_secs(90);
/// How long the agent keeps a connection whose transport broke, waiting for the client to resume it.
const DETACHED_FOR: Duration = Duration::from_secs(120);
/// How many connections the agent holds at once; more are refused.
const MAX_CONNECTIONS: usize = 1024;

/// The client's side: stuck transports are its to replace.
const CLIENT_POLICY: Policy = Policy {
    // The agent answers a ping at once, and acknowledges data every 128 KiB, so even through a session paced
    // at 1 MB/s a few seconds of silence is a stuck transport, caught well inside the 30 + 20 s in which
    // HTTP/2's keep-alive would give up on the connection above.
    ping: Some(Duration::from_secs(2)),
    stall: Some(Duration::from_secs(8)),
    linger: Duration::from_secs(60),
};
/// The agent's side: it waits for the client to bring a new transport.
const AGENT_POLICY: Policy = Policy {
    ping: None,
    stall: None,
    linger: Duration::from_secs(120),
};

/// Why a client's resumable connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The agent answered with something else: it is older than resumable connections.
    #[error("the agent does not support resumable connections: {0}")]
    Unsupported(String),
    /// The far end closed the connection at the hello without a byte: nothing listens on the agent's port
    /// yet (a tunnel's far end accepts and closes), or an agent older than resumable connections closed it.
    #[error("the agent's port closed the connection at once, without answering")]
    ClosedAtOnce,
    /// The transport failed.
    #[error("opening a resumable connection: {0}")]
    Io(#[from] io::Error),
}

/// A client's resumable connection, opened and not yet carrying anything.
pub struct Client {
    dial: Dial,
    id: ConnectionId,
    transport: Transport,
    welcome_pending: bool,
}

impl Client {
    /// Dials a transport and says hello. With `wait` it reads the agent's welcome first, which tells an agent
    /// that does not speak this protocol ([`OpenError::Unsupported`]) from one that does; without, the data
    /// goes out at once and the welcome is read with the first answer.
    pub async fn open(dial: Dial, wait: bool) -> Result<Self, OpenError> {
        let id: ConnectionId = rand::random();
        let mut transport = dial(Redial::First).await?;
        transport.write_all(&Hello::New { id }.encode()).await?;
        if wait {
            match read_welcome(&mut transport, HANDSHAKE_TIMEOUT).await {
                Ok(Welcome::Accepted { received: 0 }) => {}
                Ok(other) => {
                    return Err(OpenError::Io(io::Error::other(format!(
                        "the agent answered a new connection with {other:?}"
                    ))));
                }
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(OpenError::ClosedAtOnce);
                }
                Err(error) if error.kind() == io::ErrorKind::InvalidData => {
                    return Err(OpenError::Unsupported(error.to_string()));
                }
                Err(error) => return Err(OpenError::Io(error)),
            }
        }
        Ok(Self {
            dial,
            id,
            transport,
            welcome_pending: !wait,
        })
    }

    /// Carries `app` over the connection until both ends finish, dialling new transports when one breaks.
    /// An error says why the connection was lost; `app` is then dropped, which its user sees as an end
    /// without TLS's close, never as a clean one.
    pub async fn carry<A: AsyncRead + AsyncWrite + Send + 'static>(
        self,
        app: A,
    ) -> Result<(), String> {
        let Client {
            dial,
            id,
            mut transport,
            mut welcome_pending,
        } = self;
        let mut link = Link::new(app, CLIENT_POLICY);
        let mut peer_received = 0;
        loop {
            let (reason, redial) = match link
                .attach(transport, peer_received, welcome_pending, None)
                .await
            {
                Detach::Done => return Ok(()),
                Detach::Failed(reason) => return Err(reason),
                Detach::Replaced(..) => {
                    unreachable!("a client's link is never given a replacement")
                }
                Detach::Broken(reason) => (reason, Redial::Broken),
                Detach::Damaged(reason) => (reason, Redial::Suspect),
            };
            tracing::info!(%reason, "a resumable connection's transport broke; resuming");
            welcome_pending = false;
            (transport, peer_received) = match resume(&dial, id, &link, redial).await {
                Ok(Some(resumed)) => resumed,
                Ok(None) => return Ok(()),
                Err(error) => {
                    tracing::warn!(%reason, %error, "a resumable connection could not be resumed");
                    return Err(format!("{reason}; resuming: {error}"));
                }
            };
            tracing::info!(peer_received, "the connection resumed");
        }
    }
}

/// Dials until a transport takes the connection up again; `None` when the agent forgot a connection that
/// had already finished both ways.
async fn resume<A: AsyncRead + AsyncWrite + Send + 'static>(
    dial: &Dial,
    id: ConnectionId,
    link: &Link<A>,
    first: Redial,
) -> Result<Option<(Transport, u64)>, String> {
    let deadline = tokio::time::Instant::now() + RESUME_FOR;
    let mut delay = Duration::from_millis(100);
    let mut last_error = String::new();
    let mut redial = first;
    while tokio::time::Instant::now() < deadline {
        let attempt = async {
            let mut transport = dial(redial).await?;
            let hello = Hello::Resume {
                id,
                received: link.received(),
            };
            transport.write_all(&hello.encode()).await?;
            let welcome = read_welcome(&mut transport, RESUME_HANDSHAKE_TIMEOUT).await?;
            Ok::<_, io::Error>((transport, welcome))
        };
        match attempt.await {
            Ok((transport, Welcome::Accepted { received })) => {
                return Ok(Some((transport, received)));
            }
            Ok((_, Welcome::Unknown)) if link.complete() => return Ok(None),
            Ok((_, Welcome::Unknown)) => {
                return Err(
                    "the agent no longer holds the connection (it ended or restarted)".into(),
                );
            }
            Err(error) => {
                tracing::debug!(%error, "resuming a connection: this transport failed");
                last_error = error.to_string();
                redial = Redial::Suspect;
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    Err(format!("gave up after {RESUME_FOR:?}: {last_error}"))
}

/// Reads the agent's welcome. An end of file before any byte is `UnexpectedEof`; one after some bytes is
/// `InvalidData` (something answered, and not with a welcome).
async fn read_welcome(transport: &mut Transport, timeout: Duration) -> io::Result<Welcome> {
    let mut bytes = [0; WELCOME_LEN];
    let read = async {
        let mut filled = 0;
        while filled < WELCOME_LEN {
            match transport.read(&mut bytes[filled..]).await? {
                0 if filled == 0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                0 => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{filled} bytes and an end of file instead of a welcome"),
                    ));
                }
                count => filled += count,
            }
        }
        Ok(())
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no welcome from the agent"))??;
    Welcome::decode(&bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// The agent's side: the connections it holds, by id, so a client's new transport finds its connection.
#[derive(Default)]
pub struct Registry {
    connections: Mutex<HashMap<ConnectionId, mpsc::Sender<(Transport, u64)>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Registry")
            .field("connections", &self.lock().len())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<ConnectionId, mpsc::Sender<(Transport, u64)>>> {
        self.connections
            .lock()
            .expect("the registry is never left half-changed")
    }

    /// How many connections it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the hello `transport` starts with. A new connection gives the application's end of it (carried
    /// by a task of its own) and the hold on it while it is not yet established; a transport for a connection
    /// already held joins it and gives `None`.
    pub async fn accept(
        self: &Arc<Self>,
        mut transport: Transport,
    ) -> Result<Option<Accepted>, AcceptError> {
        let mut bytes = [0; HELLO_LEN];
        tokio::time::timeout(HANDSHAKE_TIMEOUT, transport.read_exact(&mut bytes))
            .await
            .map_err(|_| AcceptError::Io(io::Error::new(io::ErrorKind::TimedOut, "no hello")))??;
        match Hello::decode(&bytes)? {
            Hello::New { id } => {
                let (connections, receiver) = mpsc::channel(1);
                {
                    let mut held = self.lock();
                    if held.len() >= MAX_CONNECTIONS {
                        return Err(AcceptError::Full);
                    }
                    if held.contains_key(&id) {
                        return Err(AcceptError::Duplicate);
                    }
                    held.insert(id, connections);
                }
                let (app, ours) = tokio::io::duplex(APP_BUFFER);
                let registry = Arc::clone(self);
                let serving = tokio::spawn(async move {
                    if let Err(reason) = serve(ours, transport, receiver).await {
                        tracing::info!(%reason, "a resumable connection ended");
                    }
                    registry.lock().remove(&id);
                });
                Ok(Some(Accepted {
                    app,
                    pending: Pending {
                        id,
                        registry: Arc::clone(self),
                        serving: Some(serving.abort_handle()),
                    },
                }))
            }
            Hello::Resume { id, received } => {
                let connection = self.lock().get(&id).cloned();
                let mut transport = match connection {
                    Some(connection) => match connection.send((transport, received)).await {
                        Ok(()) => return Ok(None),
                        // The connection ended as this transport arrived.
                        Err(mpsc::error::SendError((transport, _))) => transport,
                    },
                    None => transport,
                };
                transport.write_all(&Welcome::Unknown.encode()).await?;
                let _ = transport.shutdown().await;
                Ok(None)
            }
        }
    }
}

/// A new connection the agent accepted.
#[derive(Debug)]
pub struct Accepted {
    /// The application's end: what TLS runs over.
    pub app: DuplexStream,
    /// The hold on the connection until the application says it is established.
    pub pending: Pending,
}

/// A connection whose peer is not known yet (its TLS handshake has not completed). Dropping it ends the
/// connection and frees its slot at once, so a peer that never authenticates cannot keep a slot by keeping its
/// transport open or by coming back; [`Pending::established`] keeps the connection for good.
#[derive(Debug)]
pub struct Pending {
    id: ConnectionId,
    registry: Arc<Registry>,
    serving: Option<tokio::task::AbortHandle>,
}

impl Pending {
    /// The peer authenticated: the connection lives until it ends or its transport stays away too long.
    pub fn established(mut self) {
        self.serving = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            self.registry.lock().remove(&self.id);
        }
    }
}

/// Why the agent refused a transport.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("reading a resumable connection's hello: {0}")]
    Io(#[from] io::Error),
    #[error("too many resumable connections are open ({MAX_CONNECTIONS})")]
    Full,
    #[error("a new resumable connection reused the id of one already open")]
    Duplicate,
}

/// Runs one of the agent's connections: each transport in turn, welcomed with what has been received.
async fn serve(
    app: DuplexStream,
    mut transport: Transport,
    mut transports: mpsc::Receiver<(Transport, u64)>,
) -> Result<(), String> {
    let mut link = Link::new(app, AGENT_POLICY);
    let mut peer_received = 0;
    loop {
        let welcome = Welcome::Accepted {
            received: link.received(),
        };
        let detach = match transport.write_all(&welcome.encode()).await {
            Ok(()) => {
                link.attach(transport, peer_received, false, Some(&mut transports))
                    .await
            }
            Err(error) => Detach::Broken(format!("writing the welcome: {error}")),
        };
        match detach {
            Detach::Done => return Ok(()),
            Detach::Failed(reason) => return Err(reason),
            Detach::Replaced(next, received) => (transport, peer_received) = (next, received),
            Detach::Broken(reason) | Detach::Damaged(reason) => {
                tracing::debug!(%reason, "a resumable connection's transport broke; waiting for the client");
                match tokio::time::timeout(DETACHED_FOR, transports.recv()).await {
                    Ok(Some(next)) => (transport, peer_received) = next,
                    _ => return Err(format!("{reason}, and the client did not come back")),
                }
            }
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
