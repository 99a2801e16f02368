//! The agent's side of the process server: starting the server in a container (copy the binary in,
//! one `docker exec` that hands it its token), and running processes through it.
//!
//! The server listens on the container's loopback, so the agent connects from a short-lived thread that has
//! entered the container's network namespace (the file Docker names as the container's sandbox key); the
//! socket stays in that namespace after the thread ends. Only a thread made for it enters: a thread of tokio's
//! pools would keep the container's network for whatever ran on it next.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use skiff::api::OutputStream;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::{
    EXIT, FAILED, RESIZE, SIGNAL, STDERR, STDIN, STDIN_EOF, STDOUT, Spec, read_frame, write_frame,
};
use crate::docker::{Docker, ExecConfig};

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
    /// Docker refused a step.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
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

/// Moves the calling thread into the network namespace `namespace`; only for a thread made for it.
fn enter(namespace: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(namespace)?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|error| {
        std::io::Error::other(format!("entering {}: {error}", namespace.display()))
    })
}

/// Whether this agent can enter `namespace` (it needs root on the engine's machine).
async fn can_enter(namespace: &Path) -> Result<(), ProcdError> {
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

/// Starts the server in the container as root, first copying it there unless `copied` says this agent's
/// binary already is (a container restarted keeps its files, so only its first start pays for the copy);
/// returns where it listens.
pub async fn start(
    docker: &Docker,
    container_id: &str,
    namespace: &Path,
    binary: &Path,
    copied: bool,
) -> Result<ProcServer, ProcdError> {
    can_enter(namespace).await?;
    if copied {
        match launch(docker, container_id, namespace).await {
            Ok(server) => return Ok(server),
            Err(error) => tracing::debug!(
                "the process server did not start from its copy; copying it again: {error}"
            ),
        }
    }
    let contents = tokio::fs::read(binary).await?;
    docker
        .put_file(container_id, CONTAINER_PATH, &contents, 0o755)
        .await?;
    launch(docker, container_id, namespace).await
}

/// Starts the server already in the container and reads the port it says it listens on.
async fn launch(
    docker: &Docker,
    container_id: &str,
    namespace: &Path,
) -> Result<ProcServer, ProcdError> {
    let mut session = docker
        .exec(
            container_id,
            ExecConfig {
                command: vec![
                    CONTAINER_PATH.to_owned(),
                    "--listen".to_owned(),
                    "127.0.0.1:0".to_owned(),
                ],
                user: Some("root".to_owned()),
                working_dir: Some("/".to_owned()),
                env: Vec::new(),
                tty: false,
                stdin: true,
            },
        )
        .await?;
    let token = super::new_token()?;
    session
        .input
        .write_all(format!("{token}\n").as_bytes())
        .await?;
    session.input.flush().await?;
    let mut said = Vec::new();
    let ready = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(item) = session.output.next().await {
            let (_, data) = item?;
            said.extend_from_slice(&data);
            // The binary in the container is the container's to replace; its answer is one short line.
            if said.len() > 1024 && !said.contains(&b'\n') {
                return Err(ProcdError::Start(
                    "said more than 1 KiB without a line end instead of ready".into(),
                ));
            }
            if let Some(line) = said
                .split(|byte| *byte == b'\n')
                .next()
                .filter(|_| said.contains(&b'\n'))
            {
                return Ok::<_, ProcdError>(String::from_utf8_lossy(line).into_owned());
            }
        }
        Err(ProcdError::Start(format!(
            "exited before it was ready: {}",
            String::from_utf8_lossy(&said).trim()
        )))
    })
    .await
    .map_err(|_| ProcdError::Start("did not say it was ready within 5 s".into()))??;
    let port: u16 = ready
        .strip_prefix("ready ")
        .and_then(|port| port.trim().parse().ok())
        .ok_or_else(|| ProcdError::Start(format!("said {ready:?} instead of ready")))?;
    // The server keeps running after this attachment closes; it never writes to its output again.
    drop(session);
    Ok(ProcServer {
        address: SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
        namespace: Some(namespace.to_owned()),
        token,
    })
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

/// What the agent sends to a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for standard input.
    Stdin(Vec<u8>),
    /// Standard input ended.
    StdinEof,
    /// The terminal changed size.
    Resize(u16, u16),
    /// A signal, by number.
    Signal(i32),
}

/// What a process sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Output.
    Output(OutputStream, Bytes),
    /// The process ended with this code.
    Exit(i32),
}

/// A process started through the server.
#[derive(Debug)]
pub struct Process {
    /// Its output, then its exit.
    pub events: mpsc::Receiver<Result<Event, ProcdError>>,
    /// Its input.
    pub input: mpsc::Sender<Input>,
}

impl ProcServer {
    /// Starts `spec`; fails fast when the server is gone (a stopped container), so the caller can fall back.
    pub async fn spawn(&self, spec: &Spec) -> Result<Process, ProcdError> {
        let (mut reader, mut writer) = self.dial(spec).await?;
        let (events, event_receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let event = match read_frame(&mut reader).await {
                    Ok(Some((STDOUT, data))) => {
                        Ok(Event::Output(OutputStream::Stdout, Bytes::from(data)))
                    }
                    Ok(Some((STDERR, data))) => {
                        Ok(Event::Output(OutputStream::Stderr, Bytes::from(data)))
                    }
                    Ok(Some((EXIT, payload))) if payload.len() == 4 => {
                        Ok(Event::Exit(i32::from_be_bytes([
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
                let last = !matches!(event, Ok(Event::Output(..)));
                if events.send(event).await.is_err() || last {
                    break;
                }
            }
        });
        let (input, mut input_receiver) = mpsc::channel::<Input>(16);
        tokio::spawn(async move {
            while let Some(message) = input_receiver.recv().await {
                let (kind, payload) = match message {
                    Input::Stdin(data) => (STDIN, data),
                    Input::StdinEof => (STDIN_EOF, Vec::new()),
                    Input::Resize(columns, rows) => {
                        let mut payload = columns.to_be_bytes().to_vec();
                        payload.extend(rows.to_be_bytes());
                        (RESIZE, payload)
                    }
                    Input::Signal(signal) => (SIGNAL, signal.to_be_bytes().to_vec()),
                };
                if write_frame(&mut writer, kind, &payload).await.is_err() {
                    break;
                }
            }
            // Dropping the writer closes the connection's write side; the server then hangs the process up.
            let _ = writer.shutdown().await;
        });
        Ok(Process {
            events: event_receiver,
            input,
        })
    }
}

/// The process server of the workspace's container, started on first use and kept while the container
/// runs. A container that restarted (another start time) gets a new server.
#[derive(Debug, Default)]
pub struct ProcServers {
    /// The container and start time the server belongs to, and the server (`None`: it cannot run there).
    slot: tokio::sync::Mutex<Option<(String, Option<ProcServer>)>>,
    /// The container this agent last copied its server into (the binary does not change while it runs).
    copied_into: std::sync::Mutex<Option<String>>,
}

impl ProcServers {
    /// The server for `container`, starting it if needed; `None` means use `docker exec`.
    pub async fn get(
        &self,
        docker: &Docker,
        container: &crate::docker::ContainerInfo,
    ) -> Option<ProcServer> {
        let key = format!("{}@{}", container.id, container.started_at);
        let mut slot = self.slot.lock().await;
        if let Some((started_for, server)) = slot.as_ref()
            && *started_for == key
        {
            return server.clone();
        }
        let server = match (binary_beside_agent(), &container.network_namespace) {
            (Ok(binary), Some(namespace)) => {
                let copied = self
                    .copied_into
                    .lock()
                    .expect("never left half-changed")
                    .as_deref()
                    == Some(container.id.as_str());
                match start(docker, &container.id, namespace, &binary, copied).await {
                    Ok(server) => {
                        *self.copied_into.lock().expect("never left half-changed") =
                            Some(container.id.clone());
                        tracing::info!(address = %server.address, "process server started in the dev container");
                        Some(server)
                    }
                    Err(error) => {
                        tracing::info!("commands use docker exec: {error}");
                        None
                    }
                }
            }
            (Err(error), _) => {
                tracing::info!("commands use docker exec: {error}");
                None
            }
            (_, None) => {
                tracing::info!(
                    "commands use docker exec: the engine names no network namespace for the dev container"
                );
                None
            }
        };
        *slot = Some((key, server.clone()));
        server
    }

    /// Forgets the server (it stopped answering); the next command starts another.
    pub async fn forget(&self) {
        *self.slot.lock().await = None;
    }
}
