//! The agent's side of the process server: connecting to it and running processes through it. Starting it
//! in a container (copy the binary in, one `docker exec` that hands it its token) is the engine's
//! (`engine::process`), which falls back to `docker exec` when it cannot run.
//!
//! The server listens on the container's loopback, so the agent connects from a short-lived thread that has
//! entered the container's network namespace (the file Docker names as the container's sandbox key); the
//! socket stays in that namespace after the thread ends. Only a thread made for it enters: a thread of tokio's
//! pools would keep the container's network for whatever ran on it next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use futures::stream::BoxStream;
use skiff::api::{ExecInput, ExecOutput};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::{
    EXIT, FAILED, RESIZE, SIGNAL, STDERR, STDIN, STDIN_EOF, STDOUT, Spec, read_frame, write_frame,
};

/// Where the server's binary is placed inside the container.
pub const CONTAINER_PATH: &str = "/.skiff/skiff-procd";

/// A running process server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcServer {
    /// Where it listens: a loopback address of the container's network namespace.
    pub address: SocketAddr,
    /// The container's network namespace (a file such as `/var/run/docker/netns/ID`) the agent enters to
    /// connect; `None` connects from the agent's own (a server started by the tests beside them).
    pub namespace: Option<PathBuf>,
    /// What each connection must present first.
    pub token: String,
}

/// Why the server could not be used; the agent then falls back to `docker exec`.
#[derive(Debug, thiserror::Error)]
pub enum ProcdError {
    /// The binary is not beside the agent.
    #[error("skiff-procd is not beside skiffd ({0})")]
    NoBinary(PathBuf),
    /// The container engine refused a step of starting it (its message).
    #[error("{0}")]
    Launch(String),
    /// The server did not start or answer.
    #[error("the process server {0}")]
    Start(String),
    /// The connection failed.
    #[error("talking to the process server: {0}")]
    Io(#[from] std::io::Error),
}

/// The name of the statically linked process server that `cargo xtask` places beside a development build of
/// the agent; it runs in every image (musl, libc-less), where the `skiff-procd` cargo links against glibc does not.
pub const STATIC_NAME: &str = "skiff-procd-static";

/// The `skiff-procd` binary beside the running agent (see [`choose_binary`]).
pub fn binary_beside_agent() -> Result<PathBuf, ProcdError> {
    let exe = std::env::current_exe().map_err(ProcdError::Io)?;
    choose_binary(
        &exe.with_file_name(STATIC_NAME),
        &exe.with_file_name("skiff-procd"),
    )
}

/// The process server to copy into containers: `static_build` when it exists and is at least as new as `plain`
/// (a `skiff-procd` rebuilt since, by a plain `cargo build`, wins over a stale static one), else `plain`.
/// An installed agent has only `plain` (`cargo xtask dist` makes it static).
pub fn choose_binary(static_build: &Path, plain: &Path) -> Result<PathBuf, ProcdError> {
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|metadata| metadata.modified().ok())
    };
    match (modified(static_build), modified(plain)) {
        (Some(static_time), Some(plain_time)) if static_time >= plain_time => {
            Ok(static_build.to_owned())
        }
        (Some(_), None) => Ok(static_build.to_owned()),
        (Some(_), Some(_)) => {
            tracing::debug!(
                "{} is older than {}; using the latter (`cargo xtask static-procd` rebuilds it)",
                static_build.display(),
                plain.display()
            );
            Ok(plain.to_owned())
        }
        (None, Some(_)) => Ok(plain.to_owned()),
        (None, None) => Err(ProcdError::NoBinary(plain.to_owned())),
    }
}

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Connects to `address` from inside the network namespace `namespace` (from the agent's own when `None`).
pub async fn connect_in(
    namespace: Option<&Path>,
    address: SocketAddr,
) -> Result<TcpStream, ProcdError> {
    let Some(namespace) = namespace else {
        return Ok(
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
                .await
                .map_err(|_| ProcdError::Start(format!("at {address} did not answer")))??,
        );
    };
    let namespace = namespace.to_owned();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("procd-connect".into())
        .spawn(move || {
            let _ = sender
                .send(enter(&namespace).and_then(|()| {
                    std::net::TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)
                }));
        })?;
    let stream = receiver
        .await
        .map_err(|_| ProcdError::Start("connecting: the connecting thread ended".into()))??;
    stream.set_nonblocking(true)?;
    Ok(TcpStream::from_std(stream)?)
}

/// Listens on the abstract Unix socket `name` of the network namespace `namespace` (abstract sockets belong to a
/// network namespace, so only processes in it reach this one), bound from a thread made to enter it.
pub fn bind_abstract_in(
    namespace: &Path,
    name: &[u8],
) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::linux::net::SocketAddrExt as _;
    let namespace = namespace.to_owned();
    let name = name.to_owned();
    let listener = std::thread::Builder::new()
        .name("procd-bind".into())
        .spawn(move || {
            enter(&namespace)?;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(&name)?;
            std::os::unix::net::UnixListener::bind_addr(&address)
        })?
        .join()
        .map_err(|_| std::io::Error::other("the binding thread panicked"))??;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

/// Whether `namespace` is the agent's own network namespace (a container on the machine's network).
pub fn is_own_namespace(namespace: &Path) -> Result<bool, String> {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata(namespace)
        .map_err(|error| format!("{}: {error}", namespace.display()))?
        .ino();
    let own = std::fs::metadata("/proc/self/ns/net")
        .map(|metadata| metadata.ino())
        .ok();
    Ok(own == Some(inode))
}

/// Moves the calling thread into the network namespace `namespace`; only for a thread made for it.
fn enter(namespace: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(namespace)?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|error| {
        std::io::Error::other(format!("entering {}: {error}", namespace.display()))
    })
}

/// Whether this agent can enter `namespace` (it needs root on the engine's machine).
pub async fn can_enter(namespace: &Path) -> Result<(), ProcdError> {
    let namespace = namespace.to_owned();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("procd-probe".into())
        .spawn(move || {
            let _ = sender.send(enter(&namespace));
        })?;
    receiver
        .await
        .map_err(|_| ProcdError::Start("probing: the probing thread ended".into()))?
        .map_err(|error| ProcdError::Start(format!("cannot be reached: {error}")))
}

impl ProcServer {
    /// Connects to the server and sends the token and `spec`; what follows is frames both ways.
    pub async fn dial(&self, spec: &Spec) -> Result<(OwnedReadHalf, OwnedWriteHalf), ProcdError> {
        let stream = connect_in(self.namespace.as_deref(), self.address).await?;
        stream.set_nodelay(true)?;
        let (reader, mut writer) = stream.into_split();
        let mut request = format!("{}\n", self.token).into_bytes();
        request.extend(serde_json::to_vec(spec).map_err(std::io::Error::other)?);
        request.push(b'\n');
        writer.write_all(&request).await?;
        Ok((reader, writer))
    }
}

/// A process started through the server.
pub struct Process {
    /// Its output, then its exit; an error ends it (the server failed, or could not start the command).
    pub events: BoxStream<'static, Result<ExecOutput, ProcdError>>,
    /// Its input, terminal size and signals; dropping every sender closes the connection, which hangs the
    /// process up.
    pub input: mpsc::Sender<ExecInput>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Process").finish_non_exhaustive()
    }
}

/// The next event of a process from its connection's frames; `None` once the last has been read.
pub(super) async fn next_event<R: AsyncRead + Unpin>(
    reader: Option<R>,
) -> Option<(Result<ExecOutput, ProcdError>, Option<R>)> {
    let mut reader = reader?;
    let event = match read_frame(&mut reader).await {
        Ok(Some((STDOUT, data))) => Ok(ExecOutput::Stdout(data)),
        Ok(Some((STDERR, data))) => Ok(ExecOutput::Stderr(data)),
        Ok(Some((EXIT, payload))) if payload.len() == 4 => {
            Ok(ExecOutput::Exit(i32::from_be_bytes([
                payload[0], payload[1], payload[2], payload[3],
            ])))
        }
        Ok(Some((FAILED, reason))) => Err(ProcdError::Start(
            String::from_utf8_lossy(&reason).into_owned(),
        )),
        Ok(Some((kind, _))) => Err(ProcdError::Start(format!(
            "sent an unknown frame {kind:#x}"
        ))),
        Ok(None) => Err(ProcdError::Start(
            "closed the connection before the process ended".into(),
        )),
        Err(error) => Err(ProcdError::Io(error)),
    };
    let more = matches!(event, Ok(ExecOutput::Stdout(_) | ExecOutput::Stderr(_)));
    Some((event, more.then_some(reader)))
}

impl ProcServer {
    /// Starts `spec`; fails fast when the server is gone (a stopped container), so the caller can fall back.
    /// Its events are read from the connection as they are asked for; its input goes through a writer task
    /// that ends when the last sender is dropped, so input never waits on output or the other way round.
    pub async fn spawn(&self, spec: &Spec) -> Result<Process, ProcdError> {
        let (reader, mut writer) = self.dial(spec).await?;
        let events = futures::stream::unfold(Some(reader), next_event).boxed();
        let (input, mut input_receiver) = mpsc::channel::<ExecInput>(16);
        tokio::spawn(async move {
            while let Some(message) = input_receiver.recv().await {
                let (kind, payload) = match message {
                    ExecInput::Stdin(data) => (STDIN, data),
                    ExecInput::StdinEof => (STDIN_EOF, Vec::new()),
                    ExecInput::Resize(window) => {
                        let mut payload = window.columns.to_be_bytes().to_vec();
                        payload.extend(window.rows.to_be_bytes());
                        (RESIZE, payload)
                    }
                    ExecInput::Signal(signal) => (SIGNAL, signal.to_be_bytes().to_vec()),
                };
                if write_frame(&mut writer, kind, &payload).await.is_err() {
                    break;
                }
            }
            // Dropping the writer closes the connection's write side; the server then hangs the process up.
            let _ = writer.shutdown().await;
        });
        Ok(Process { events, input })
    }
}
