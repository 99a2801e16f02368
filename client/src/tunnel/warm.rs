//! One warm tunnel per workspace, shared by every command, as SSH's ControlMaster shares a connection.
//!
//! Starting a Session Manager session costs seconds, so a background `skiff tunnel-daemon NAME` process holds
//! the workspace's sessions and serves a Unix socket in the workspace's folder (mode 0600 inside a 0700
//! folder: only this user). Each connection to the socket becomes one new stream to the agent's port; the
//! command then speaks TLS and gRPC over it exactly as it would over TCP. The daemon closes its sessions
//! and exits when no connection has been open for the idle time.
//!
//! The socket's protocol is one byte from the command, then bytes both ways:
//!
//! - `0`: a stream on the first session, for interactive traffic;
//! - `1..=POOL`: a stream on pool session `n`, for bulk transfers (opened on first use), so one transfer split
//!   over several lanes moves at several sessions' speed (Session Manager paces each at about 1 MB/s);
//! - `255`: close the sessions and exit (`skiff stop` and `delete` send it).
//!
//! The daemon answers one byte, `0` when the stream is open, or `1` followed by an error message and the end
//! of the connection, so the command can say why the tunnel failed.
//!
//! Each connection is a resumable one to the agent (`skiff::resume`): when its stream breaks, or loses bytes
//! with a WebSocket that dropped, the daemon opens another on the lane (a new session if the old one ended)
//! and the command's TLS session goes on without noticing. An agent older than that is reached with plain
//! streams.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use skiff::resume;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use super::BoxIo;

/// Bulk lanes, each its own Session Manager session.
pub const POOL: u8 = 4;
/// The lane byte that asks the daemon to exit.
pub const SHUTDOWN: u8 = 255;
/// How long the daemon stays up with no connection open, unless `SKIFF_TUNNEL_IDLE` says otherwise.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(10 * 60);

/// What carries streams to the agent's port: a native session, or the plugin's forwarded port.
pub trait Carrier: Send + Sync + 'static {
    /// A new stream to the agent's port.
    fn open_stream(&self) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send + '_>>;
    /// Why it can carry no more streams, if so.
    fn ended(&self) -> Option<String>;
    /// Ends it.
    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Opens the carrier of a lane: lane 0 the interactive session, `1..=POOL` the bulk ones.
pub type Opener = Arc<
    dyn Fn(u8) -> Pin<Box<dyn Future<Output = anyhow::Result<Box<dyn Carrier>>> + Send>>
        + Send
        + Sync,
>;

/// The socket of a workspace's warm tunnel.
pub fn socket_path(workspace_folder: &Path) -> PathBuf {
    workspace_folder.join("tunnel.sock")
}

/// The daemon's log, where a failure to open the tunnel is written.
pub fn log_path(workspace_folder: &Path) -> PathBuf {
    workspace_folder.join("tunnel.log")
}

/// The daemon's state: one slot per lane.
struct Lanes {
    opener: Opener,
    carriers: Vec<Mutex<Option<Slot>>>,
    /// Numbers each carrier opened, so a connection can say which one failed it.
    opened: AtomicU64,
    /// The agent answered a resumable connection: later ones need not wait for its welcome.
    resumable: AtomicBool,
    /// Carriers being closed after they were replaced; `close` waits for them.
    closing: std::sync::Mutex<JoinSet<()>>,
}

/// A lane's carrier and its number.
struct Slot {
    number: u64,
    carrier: Arc<dyn Carrier>,
}

impl Lanes {
    /// The carrier of `lane`, opened if the lane has none or its carrier ended. `discard` names a carrier
    /// that a connection found stuck: if the lane still holds it, it is closed and replaced.
    async fn carrier(
        &self,
        lane: u8,
        discard: Option<u64>,
    ) -> anyhow::Result<(u64, Arc<dyn Carrier>)> {
        let slot = self
            .carriers
            .get(usize::from(lane))
            .ok_or_else(|| anyhow::anyhow!("lane {lane} does not exist (0 to {POOL})"))?;
        let mut slot = slot.lock().await;
        if let Some(current) = slot.as_ref() {
            if discard == Some(current.number) {
                tracing::info!(
                    lane,
                    "the lane's session lost bytes or stopped moving; replacing it"
                );
                let stuck = Arc::clone(&current.carrier);
                // Its other streams fail with it, and their connections resume on the new one.
                let mut closing = self
                    .closing
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                while closing.try_join_next().is_some() {}
                closing.spawn(async move { stuck.close().await });
            } else if let Some(ended) = current.carrier.ended() {
                tracing::info!(lane, %ended, "the lane's session ended; opening a new one");
            } else {
                return Ok((current.number, Arc::clone(&current.carrier)));
            }
        }
        let carrier: Arc<dyn Carrier> = Arc::from((self.opener)(lane).await?);
        let number = self.opened.fetch_add(1, Ordering::Relaxed);
        *slot = Some(Slot {
            number,
            carrier: Arc::clone(&carrier),
        });
        Ok((number, carrier))
    }

    /// Opens streams on `lane` for one resumable connection: its transports. A transport found suspect makes
    /// the next dial replace the carrier it came from.
    fn dial(self: &Arc<Self>, lane: u8) -> resume::Dial {
        let lanes = Arc::clone(self);
        let used = Arc::new(AtomicU64::new(u64::MAX));
        Arc::new(move |redial| {
            let lanes = Arc::clone(&lanes);
            let used = Arc::clone(&used);
            Box::pin(async move {
                let discard =
                    (redial == resume::Redial::Suspect).then(|| used.load(Ordering::Relaxed));
                let (number, carrier) = lanes
                    .carrier(lane, discard)
                    .await
                    .map_err(|error| io::Error::other(format!("{error:#}")))?;
                used.store(number, Ordering::Relaxed);
                let stream: resume::Transport = Box::new(carrier.open_stream().await?);
                Ok(stream)
            })
        })
    }

    async fn close(&self) {
        for slot in &self.carriers {
            if let Some(slot) = slot.lock().await.take() {
                slot.carrier.close().await;
            }
        }
        let mut closing = std::mem::take(
            &mut *self
                .closing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        while closing.join_next().await.is_some() {}
    }
}

/// Runs the daemon on `listener` until it is idle for `idle` or asked to exit. The first session is opened
/// before this is called (by the caller, through `opener`'s lane 0) so that a failure reaches the command
/// that started the daemon; `first` is that session.
pub async fn serve(
    listener: UnixListener,
    opener: Opener,
    first: Box<dyn Carrier>,
    idle: Duration,
) {
    let lanes = Arc::new(Lanes {
        opener,
        carriers: (0..=POOL).map(|_| Mutex::new(None)).collect(),
        opened: AtomicU64::new(1),
        resumable: AtomicBool::new(false),
        closing: std::sync::Mutex::new(JoinSet::new()),
    });
    *lanes.carriers[0].lock().await = Some(Slot {
        number: 0,
        carrier: Arc::from(first),
    });
    let (activity, mut activity_rx) = tokio::sync::watch::channel(0usize);
    let activity = Arc::new(activity);
    let shutdown = Arc::new(tokio::sync::Notify::new());
    // Each command's connection, carried until it ends or the daemon does (the set ends those still open).
    let mut connections = JoinSet::new();
    loop {
        let idle_wait = async {
            loop {
                if *activity_rx.borrow_and_update() == 0 {
                    tokio::select! {
                        () = tokio::time::sleep(idle) => return,
                        changed = activity_rx.changed() => if changed.is_err() { return },
                    }
                } else if activity_rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = idle_wait => {
                tracing::info!(?idle, "no connection for the idle time; closing the tunnel");
                break;
            }
            () = shutdown.notified() => {
                tracing::info!("asked to exit; closing the tunnel");
                break;
            }
            accepted = listener.accept() => {
                let Ok((connection, _)) = accepted else { continue };
                let lanes = Arc::clone(&lanes);
                let activity = Arc::clone(&activity);
                let shutdown = Arc::clone(&shutdown);
                while connections.try_join_next().is_some() {}
                connections.spawn(async move {
                    activity.send_modify(|open| *open += 1);
                    if let Err(error) = relay(connection, &lanes, &shutdown).await {
                        tracing::debug!(%error, "a tunnel connection ended with an error");
                    }
                    activity.send_modify(|open| *open -= 1);
                });
            }
        }
    }
    lanes.close().await;
}

async fn relay(
    mut connection: UnixStream,
    lanes: &Arc<Lanes>,
    shutdown: &tokio::sync::Notify,
) -> io::Result<()> {
    let lane = connection.read_u8().await?;
    if lane == SHUTDOWN {
        connection.write_u8(0).await?;
        shutdown.notify_one();
        return Ok(());
    }
    // Until the agent has answered one, wait for its welcome: an older agent closes instead.
    let wait = !lanes.resumable.load(Ordering::Relaxed);
    let opened = match resume::Client::open(lanes.dial(lane), wait).await {
        Ok(client) => {
            lanes.resumable.store(true, Ordering::Relaxed);
            connection.write_u8(0).await?;
            return client.carry(connection).await.map_err(io::Error::other);
        }
        Err(error @ (resume::OpenError::Unsupported(_) | resume::OpenError::ClosedAtOnce)) => {
            if matches!(error, resume::OpenError::ClosedAtOnce) {
                // Most often the agent is not listening yet (starting, restarting); an old agent does the same.
                tracing::debug!(
                    "the agent's port closed the connection at the hello: not listening yet, or an agent older than resumable connections; trying a plain stream"
                );
            } else {
                tracing::info!(%error, "the agent is older than resumable connections; using a plain stream");
            }
            match lanes.carrier(lane, None).await {
                Ok((_, carrier)) => carrier.open_stream().await,
                Err(error) => Err(io::Error::other(format!("{error:#}"))),
            }
        }
        Err(resume::OpenError::Io(error)) => Err(error),
    };
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(error) => {
            let mut answer = vec![1];
            answer.extend_from_slice(error.to_string().as_bytes());
            connection.write_all(&answer).await?;
            return Ok(());
        }
    };
    connection.write_u8(0).await?;
    tokio::io::copy_bidirectional(&mut connection, &mut stream)
        .await
        .map(|_| ())
}

/// Connects to the warm tunnel at `socket` on `lane`; `Ok(None)` when no daemon serves it.
pub async fn connect(socket: &Path, lane: u8) -> io::Result<Option<UnixStream>> {
    let mut connection = match UnixStream::connect(socket).await {
        Ok(connection) => connection,
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    connection.write_u8(lane).await?;
    match connection.read_u8().await {
        Ok(0) => Ok(Some(connection)),
        Ok(_) => {
            let mut message = String::new();
            connection.read_to_string(&mut message).await?;
            Err(io::Error::other(format!(
                "the workspace's tunnel: {message}"
            )))
        }
        // The daemon was exiting as we connected.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

/// Asks the daemon at `socket` to close its sessions and exit; true if one was running.
pub async fn stop(socket: &Path) -> bool {
    matches!(connect(socket, SHUTDOWN).await, Ok(Some(_)))
}

/// Binds the daemon's socket, replacing a stale one (a socket file nobody accepts on).
pub fn bind(socket: &Path) -> io::Result<UnixListener> {
    if socket.exists() && std::os::unix::net::UnixStream::connect(socket).is_err() {
        std::fs::remove_file(socket)?;
    }
    let listener = UnixListener::bind(socket)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The idle time from `SKIFF_TUNNEL_IDLE` (a duration such as `30s` or `10m`), or the default.
pub fn idle_from_env() -> Duration {
    std::env::var("SKIFF_TUNNEL_IDLE")
        .ok()
        .and_then(|text| humantime::parse_duration(&text).ok())
        .unwrap_or(DEFAULT_IDLE)
}

#[cfg(test)]
mod tests;
