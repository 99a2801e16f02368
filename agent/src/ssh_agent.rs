//! SSH agent forwarding into the dev container (`skiff ssh -A`, `skiff exec -A`, and `ForwardAgent yes` through
//! `skiff proxy`): programs there find `SSH_AUTH_SOCK`, and each connection to it reaches the connected client's SSH
//! agent on the laptop, so `git push` over SSH and SSH commit signing work with keys that never leave the laptop.
//! The same carries the laptop's gpg-agent (`--gpg`, [`Kind::Gpg`]): its socket is put where gpg in the container
//! looks for its agent, so GPG commit signing works the same way.
//!
//! How: the agent binds an abstract Unix socket with an unguessable name in the dev container's network namespace,
//! and starts `skiff-procd ssh-agent NAME` in the container as the session's user. That relay makes a private folder
//! (mode 0700, the user's) holding `agent.sock`, says where it is, and passes every connection to that socket on to
//! the abstract one, where the agent hands it to the session's front end (an SSH `auth-agent@openssh.com` channel, or
//! the `SshAgent` call). When the session ends the relay's standard input closes, and it removes its folder and ends.
//!
//! Who may use it: the folder keeps other users of the container away from `agent.sock`; the abstract socket, which
//! every process in the container's network namespace could reach, accepts only connections whose peer is the
//! session's user (or root, who could read the user's socket anyway). A container on the machine's own network gets
//! no forwarding, since every process of the machine could then connect. Forwarding lasts only as long as the session.

use std::sync::Arc;
use std::time::Duration;

use skiff::api::{ExecInput, ExecOutput, ExecSpec};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::Engine;
use crate::idle::Activity;
use crate::procd::client::CONTAINER_PATH;
use crate::tasks::Tasks;

/// What every forwarding socket's abstract name begins with; the rest is 64 hex digits.
pub const NAME_PREFIX: &str = "skiff-ssh-agent-";

/// The socket's file name inside the relay's folder.
pub const SOCKET_FILE: &str = "agent.sock";

/// The file name of gpg-agent's standard socket, where gpg in the container looks for its agent.
pub const GPG_SOCKET_FILE: &str = "S.gpg-agent";

/// Which of the client's agents is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Its SSH agent, at a fresh socket the session's `SSH_AUTH_SOCK` names.
    Ssh,
    /// Its gpg-agent (the laptop's restricted extra socket), at the socket gpg uses in the container (`gpgconf
    /// --list-dirs agent-socket`), in place of an agent of the container's own.
    Gpg,
}

impl Kind {
    /// The relay's `skiff-procd` subcommand.
    pub fn subcommand(self) -> &'static str {
        match self {
            Self::Ssh => "ssh-agent",
            Self::Gpg => "gpg-agent",
        }
    }

    fn socket_file(self) -> &'static str {
        match self {
            Self::Ssh => SOCKET_FILE,
            Self::Gpg => GPG_SOCKET_FILE,
        }
    }
}

/// How long the relay may take to say where its socket is.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Forwarding for one session: the socket's path in the container and the connections made to it. Dropping it ends
/// the forwarding: the relay's input closes (it removes its socket and ends) and the abstract socket closes.
#[derive(Debug)]
pub struct Forwarding {
    /// `SSH_AUTH_SOCK` for the session's programs.
    pub socket: String,
    connections: mpsc::Receiver<UnixStream>,
    accepting: AbortHandle,
    /// The relay's standard input: closing it ends the relay.
    relay_input: mpsc::Sender<ExecInput>,
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.accepting.abort();
        // A process whose input stream merely ends keeps its input open (as `docker exec` does when its client
        // dies), so the end is said: the relay then removes its socket and folder, and ends.
        let _ = self.relay_input.try_send(ExecInput::StdinEof);
    }
}

impl Forwarding {
    /// Starts forwarding for programs run as `user` (none: the remote user) in the running dev container.
    pub async fn start(
        engine: &Arc<Engine>,
        activity: &Arc<Activity>,
        tasks: &Tasks,
        user: Option<String>,
        kind: Kind,
    ) -> Result<Self, String> {
        let target = engine.running().await.map_err(|error| error.to_string())?;
        let namespace = target.container.network_namespace.clone().ok_or_else(|| {
            "the engine names no network namespace for the dev container".to_owned()
        })?;
        if crate::procd::client::is_own_namespace(&namespace)? {
            return Err("the dev container shares the machine's network namespace (--network host), so every process of the machine could use the forwarded agent; it is not forwarded there".to_owned());
        }
        let token = crate::procd::new_token()
            .map_err(|error| format!("reading the random source: {error}"))?;
        let name = format!("{NAME_PREFIX}{token}");
        let listener = crate::procd::client::bind_abstract_in(&namespace, name.as_bytes())
            .map_err(|error| format!("listening in the dev container: {error}"))?;
        engine.place_process_server_binary(&target).await?;

        let (relay_input, input) = mpsc::channel::<ExecInput>(1);
        let (outputs, mut output) = mpsc::channel::<ExecOutput>(16);
        let spec = ExecSpec {
            command: vec![
                CONTAINER_PATH.to_owned(),
                kind.subcommand().to_owned(),
                name,
            ],
            tty: false,
            user,
            working_dir: Some("/".to_owned()),
            env: Default::default(),
            window: None,
            stdin: true,
        };
        {
            let engine = Arc::clone(engine);
            let activity = Arc::clone(activity);
            // The relay is plumbing: it never keeps the workspace from its idle stop.
            tasks.spawn(async move {
                let input = ReceiverStream::new(input);
                if let Err(error) = crate::exec::run(
                    &engine,
                    &activity,
                    crate::exec::Busy::OnInput,
                    spec,
                    input,
                    outputs,
                )
                .await
                {
                    tracing::info!("ssh agent relay: {error}");
                }
            });
        }
        let started = tokio::time::timeout(READY_TIMEOUT, ready(&mut output, kind))
            .await
            .map_err(|_| "the relay in the dev container did not start in time".to_owned())
            .and_then(|ready| ready);
        let (uid, socket) = match started {
            Ok(started) => started,
            Err(error) => {
                // A relay that is still there is told to go.
                let _ = relay_input.try_send(ExecInput::StdinEof);
                return Err(error);
            }
        };
        // The rest of the relay's output is only read, so it never blocks; what it says goes to the log.
        tasks.spawn(async move {
            while let Some(message) = output.recv().await {
                if let ExecOutput::Stderr(data) = message {
                    tracing::info!(
                        "ssh agent relay: {}",
                        String::from_utf8_lossy(&data).trim_end()
                    );
                }
            }
        });

        let (connected, connections) = mpsc::channel(8);
        let accepting = tasks
            .spawn(async move {
                while let Ok((connection, _)) = listener.accept().await {
                    if !allowed(&connection, uid) {
                        continue;
                    }
                    if connected.send(connection).await.is_err() {
                        break;
                    }
                }
            })
            .abort_handle();
        Ok(Self {
            socket,
            connections,
            accepting,
            relay_input,
        })
    }

    /// The next connection a program made to the socket.
    pub async fn next(&mut self) -> Option<UnixStream> {
        self.connections.recv().await
    }
}

/// Carries `forwarding`'s connections over an `SshAgent` call: each is announced with `Open` and its bytes go out on
/// `outbound`; the client's `Data` and `Close` come in on `inbound`. Ends when the client's stream ends.
pub async fn carry(
    mut forwarding: Forwarding,
    mut inbound: impl futures::Stream<Item = skiff::api::SshAgentMessage> + Unpin,
    outbound: mpsc::Sender<skiff::api::SshAgentMessage>,
) {
    use futures::StreamExt as _;
    use skiff::api::SshAgentMessage;
    let mut carrier = skiff::ssh::forwarding::Carrier::new(outbound.clone());
    let mut next = 1u64;
    loop {
        tokio::select! {
            connection = forwarding.next() => {
                let Some(connection) = connection else { break };
                let open = SshAgentMessage::Open { connection: next };
                if outbound.send(open).await.is_err() {
                    break;
                }
                carrier.carry(next, connection);
                next += 1;
            }
            message = inbound.next() => {
                let Some(message) = message else { break };
                if let Some(other) = carrier.deliver(message).await {
                    tracing::debug!("ssh agent forwarding: ignored {other:?} from the client");
                }
            }
        }
    }
}

/// Whether a connection to the abstract socket comes from the session's user (`uid`) or root.
fn allowed(connection: &UnixStream, uid: u32) -> bool {
    match connection.peer_cred() {
        Ok(peer) if peer.uid() == uid || peer.uid() == 0 => true,
        Ok(peer) => {
            tracing::warn!(
                peer_uid = peer.uid(),
                session_uid = uid,
                "ssh agent forwarding: refused a connection from another user in the dev container"
            );
            false
        }
        Err(error) => {
            tracing::warn!(
                "ssh agent forwarding: refused a connection whose peer is unknown: {error}"
            );
            false
        }
    }
}

/// Reads the relay's `ready UID PATH` line; a relay that ends first says why on its standard error.
async fn ready(
    output: &mut mpsc::Receiver<ExecOutput>,
    kind: Kind,
) -> Result<(u32, String), String> {
    let mut line = Vec::new();
    let mut errors = Vec::new();
    while let Some(message) = output.recv().await {
        match message {
            ExecOutput::Stdout(data) => {
                line.extend_from_slice(&data);
                if let Some(end) = line.iter().position(|&byte| byte == b'\n') {
                    return parse_ready(&String::from_utf8_lossy(&line[..end]), kind);
                }
                if line.len() > 4096 {
                    break;
                }
            }
            ExecOutput::Stderr(data) => errors.extend_from_slice(&data),
            ExecOutput::Exit(code) => {
                return Err(format!(
                    "the relay in the dev container exited with {code}: {}",
                    String::from_utf8_lossy(&errors).trim()
                ));
            }
            ExecOutput::Notice(_) => {}
        }
    }
    Err("the relay in the dev container said nothing".to_owned())
}

/// The user id and socket path of a relay's `ready` line.
fn parse_ready(line: &str, kind: Kind) -> Result<(u32, String), String> {
    let parsed = line.strip_prefix("ready ").and_then(|rest| {
        let (uid, path) = rest.split_once(' ')?;
        let uid = uid.parse::<u32>().ok()?;
        let clean = path.starts_with('/')
            && path.ends_with(&format!("/{}", kind.socket_file()))
            && !path.contains(['\n', '\r', '\0', '=']);
        clean.then(|| (uid, path.to_owned()))
    });
    parsed.ok_or_else(|| format!("the relay in the dev container answered {line:?}"))
}

/// `skiff-procd ssh-agent NAME`, run in the dev container as the session's user: makes a private folder with
/// [`SOCKET_FILE`] in it, says `ready UID PATH` on standard output, and passes each connection to it on to the
/// abstract socket NAME, until standard input ends; then removes the folder.
pub fn relay(name: &str, kind: Kind) -> std::process::ExitCode {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

    let subcommand = kind.subcommand();
    let valid = name.strip_prefix(NAME_PREFIX).is_some_and(|token| {
        token.len() == crate::procd::TOKEN_LENGTH && token.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if !valid {
        eprintln!("skiff-procd {subcommand}: {name:?} is not a forwarding socket's name");
        return std::process::ExitCode::FAILURE;
    }
    let place = match kind {
        Kind::Ssh => ssh_socket_place(),
        Kind::Gpg => gpg_socket_place(),
    };
    let (path, folder) = match place {
        Ok(place) => place,
        Err(error) => {
            eprintln!("skiff-procd {subcommand}: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "skiff-procd {subcommand}: listening on {}: {error}",
                path.display()
            );
            if let Some(folder) = &folder {
                let _ = std::fs::remove_dir(folder);
            }
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("ready {} {}", nix::unistd::getuid(), path.display());
    let name = name.to_owned();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            let Ok(program) = connection else { continue };
            let Ok(address) = SocketAddr::from_abstract_name(name.as_bytes()) else {
                continue;
            };
            let Ok(agent) = UnixStream::connect_addr(&address) else {
                continue;
            };
            splice(program, agent);
        }
    });
    // The agent closes standard input when the session ends.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    let _ = std::fs::remove_file(&path);
    if let Some(folder) = &folder {
        let _ = std::fs::remove_dir(folder);
    }
    std::process::ExitCode::SUCCESS
}

/// A fresh private folder (mode 0700, the user's) and the SSH socket's path in it.
fn ssh_socket_place() -> Result<(std::path::PathBuf, Option<std::path::PathBuf>), String> {
    let base = std::env::temp_dir().join("skiff-agent.XXXXXX");
    let folder = nix::unistd::mkdtemp(&base)
        .map_err(|error| format!("making a folder in {}: {error}", base.display()))?;
    Ok((folder.join(SOCKET_FILE), Some(folder)))
}

/// The socket gpg uses in the container (`gpgconf --list-dirs agent-socket`), freed for the forwarded agent: an agent
/// of the container's own is stopped and its socket removed (only a socket: any other file there is an error).
fn gpg_socket_place() -> Result<(std::path::PathBuf, Option<std::path::PathBuf>), String> {
    use std::os::unix::fs::{DirBuilderExt as _, FileTypeExt as _};
    let listed = std::process::Command::new("gpgconf")
        .args(["--list-dirs", "agent-socket"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|_| {
            "gpg is not installed in the dev container; install gnupg there (its Dockerfile or a Feature) to sign with your forwarded gpg-agent".to_owned()
        })?;
    let path = String::from_utf8_lossy(&listed.stdout).trim().to_owned();
    if !listed.status.success()
        || !path.starts_with('/')
        || !path.ends_with(&format!("/{GPG_SOCKET_FILE}"))
        || path.contains(['\n', '\r', '\0'])
    {
        return Err(format!("gpgconf names no agent socket (it said {path:?})"));
    }
    let path = std::path::PathBuf::from(path);
    let _ = std::process::Command::new("gpgconf")
        .args(["--kill", "gpg-agent"])
        .stdin(std::process::Stdio::null())
        .output();
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|error| format!("making {}: {error}", parent.display()))?;
    }
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.file_type().is_socket() => std::fs::remove_file(&path)
            .map_err(|error| format!("removing the old {}: {error}", path.display()))?,
        Ok(_) => return Err(format!("{} is there and is not a socket", path.display())),
        Err(_) => {}
    }
    Ok((path, None))
}

/// Copies both ways between two connections on threads of their own, each direction's end passed on as a half-close.
fn splice(a: std::os::unix::net::UnixStream, b: std::os::unix::net::UnixStream) {
    let (Ok(a_writer), Ok(b_writer)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    for (mut from, mut to) in [(a, b_writer), (b, a_writer)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_line_gives_the_user_and_the_socket() {
        assert_eq!(
            parse_ready("ready 1000 /tmp/skiff-agent.AbC123/agent.sock", Kind::Ssh),
            Ok((1000, "/tmp/skiff-agent.AbC123/agent.sock".to_owned()))
        );
        assert_eq!(
            parse_ready("ready 0 /run/user/0/gnupg/S.gpg-agent", Kind::Gpg),
            Ok((0, "/run/user/0/gnupg/S.gpg-agent".to_owned()))
        );
    }

    /// The path becomes an environment variable's value: a relay that answers anything else is not believed.
    #[test]
    fn a_ready_line_that_is_not_a_socket_path_is_refused() {
        for line in [
            "ready 1000 relative/agent.sock",
            "ready x /tmp/a/agent.sock",
            "ready 1000 /tmp/a/other",
            "ready 1000 /tmp/a/S.gpg-agent",
            "ready 1000 /tmp/a=b/agent.sock",
            "hello",
        ] {
            assert!(parse_ready(line, Kind::Ssh).is_err(), "{line}");
        }
    }

    #[test]
    fn the_relay_refuses_a_name_that_is_not_a_forwarding_sockets() {
        assert_eq!(
            relay("skiff-git-credential", Kind::Ssh),
            std::process::ExitCode::FAILURE
        );
    }
}
