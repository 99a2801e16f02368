//! Git credentials through the tunnel: git in the dev container asks `skiff-procd git-credential` (set as the
//! container's system-wide credential helper, so every user's git asks it), which hands the request to this agent
//! over an abstract Unix socket in the container's network namespace; the agent passes it to a connected client
//! (`GitCredentials`), whose own `git credential` answers from the laptop's credential store. Nothing is stored on
//! the agent's machine or in the container: an answer lives in the agent's memory for the moment it is passed on.
//!
//! Only while a client is connected: with none, a request fails at once with a message that says how to connect.
//! Only the attributes git's helper protocol names are passed, each value a single line; the client asks its git
//! for nothing else.
//!
//! The socket lives in the container's network namespace, which no process outside the container shares, so only
//! the container reaches it; a container on the host's own network (`--network host`) gets no socket, since every
//! process of the machine could then ask.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use skiff::api::{GitCredentialAnswer, GitCredentialRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::tasks::Tasks;

/// The abstract socket's name, in the container's network namespace.
pub const SOCKET_NAME: &[u8] = b"skiff-git-credential";

/// The most a request may hold: git's are a few hundred bytes.
const MAX_REQUEST: u64 = 64 * 1024;

/// How long a request may take to arrive once connected.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a request waits for a client that is registering (a session's command and its credential call start
/// together) before it fails for want of one.
const REGISTRATION_GRACE: Duration = Duration::from_millis(500);

/// How long the laptop may take to answer (a credential manager may ask the person first).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The attributes of git's credential helper protocol that are passed on; any other is dropped.
pub const ATTRIBUTES: &[&str] = &[
    "protocol",
    "host",
    "path",
    "username",
    "password",
    "password_expiry_utc",
    "oauth_refresh_token",
];

/// The actions of git's credential helper protocol.
pub const ACTIONS: &[&str] = &["get", "store", "erase"];

/// Run as root in the dev container once per start: git's system configuration names the helper first, unless it
/// does already; nothing when the container has no git.
pub const CONFIGURE: &str = r#"command -v git >/dev/null 2>&1 || exit 0
helper='/.skiff/skiff-procd git-credential'
git config --system --get-all credential.helper 2>/dev/null | grep -qxF "$helper" && exit 0
git config --system --add credential.helper "$helper""#;

/// The message of a request made while no client is connected.
pub fn no_client_message(workspace: &str) -> String {
    format!(
        "skiff: no skiff client is connected to workspace {workspace}, and git credentials come from your machine while one is: run git from `skiff ssh {workspace}` or `skiff exec {workspace}` (or an editor connected through `ssh {workspace}.skiff`)"
    )
}

/// Parses a request as the helper sends it: the action on the first line, then git's `key=value` lines. Only the
/// allowed attributes are kept; a line that is not `key=value`, or a value with a NUL, is refused.
pub fn parse_request(text: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let mut lines = text.lines();
    let action = lines.next().unwrap_or_default().trim().to_owned();
    if !ACTIONS.contains(&action.as_str()) {
        return Err(format!("unknown credential action {action:?}"));
    }
    let mut attributes = BTreeMap::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{line:?} is not key=value"))?;
        if value.contains('\0') {
            return Err(format!("the value of {key} holds a NUL"));
        }
        if ATTRIBUTES.contains(&key) {
            attributes.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok((action, attributes))
}

/// Writes `attributes` as git's helper protocol lines; values with a line break or NUL are dropped.
pub fn format_attributes(attributes: &BTreeMap<String, String>) -> String {
    attributes
        .iter()
        .filter(|(key, value)| {
            ATTRIBUTES.contains(&key.as_str()) && !value.contains(['\n', '\r', '\0'])
        })
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect()
}

/// The clients that answer credential requests, and the requests waiting for them.
#[derive(Debug, Default)]
pub struct Broker {
    workspace: String,
    /// Cancelled when the agent stops: the socket closes at once rather than holding the agent for its grace.
    shutdown: tokio_util::sync::CancellationToken,
    next: AtomicU64,
    clients: std::sync::Mutex<Vec<(u64, mpsc::Sender<GitCredentialRequest>)>>,
    waiting: std::sync::Mutex<BTreeMap<u64, oneshot::Sender<GitCredentialAnswer>>>,
    /// The network namespace (its inode) the socket listens in, and the task that accepts on it.
    listening: std::sync::Mutex<Option<(u64, tokio::task::AbortHandle)>>,
    /// The container start git's configuration was last set for (its id and start time).
    configured: std::sync::Mutex<Option<(String, String)>>,
}

/// A connected client's place among those that answer; dropping it leaves.
#[derive(Debug)]
pub struct Registration {
    broker: Arc<Broker>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.broker
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(id, _)| *id != self.id);
    }
}

impl Broker {
    /// A broker for `workspace`, whose socket closes when `shutdown` is cancelled.
    pub fn new(workspace: &str, shutdown: tokio_util::sync::CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            workspace: workspace.to_owned(),
            shutdown,
            next: AtomicU64::new(1),
            ..Self::default()
        })
    }

    /// Adds a client that answers requests; the latest one answers.
    pub fn register(self: &Arc<Self>) -> (Registration, mpsc::Receiver<GitCredentialRequest>) {
        let (sender, receiver) = mpsc::channel(8);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((id, sender));
        (
            Registration {
                broker: Arc::clone(self),
                id,
            },
            receiver,
        )
    }

    /// Whether git's configuration still has to be set for this start (`started_at`) of container `id` (true once
    /// per start).
    pub fn configure_once(&self, id: &str, started_at: &str) -> bool {
        let key = (id.to_owned(), started_at.to_owned());
        let mut configured = self
            .configured
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if configured.as_ref() == Some(&key) {
            return false;
        }
        *configured = Some(key);
        true
    }

    /// A client's answer to request `answer.id`.
    pub fn answer(&self, answer: GitCredentialAnswer) {
        let waiting = self
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&answer.id);
        if let Some(waiting) = waiting {
            let _ = waiting.send(answer);
        }
    }

    /// Asks the latest connected client; its answer's attributes, or why there is none.
    pub async fn ask(
        &self,
        action: String,
        attributes: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, sender);
        let request = GitCredentialRequest {
            id,
            action,
            attributes,
        };
        let result = async {
            let mut waited = Duration::ZERO;
            loop {
                let latest = self
                    .clients
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .last()
                    .cloned();
                let Some((client, sender)) = latest else {
                    // A session that opened its command and its credential call together may register a moment
                    // after the command asks; beyond that, nobody is connected.
                    if waited < REGISTRATION_GRACE {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        waited += Duration::from_millis(50);
                        continue;
                    }
                    return Err(no_client_message(&self.workspace));
                };
                if sender.send(request.clone()).await.is_ok() {
                    break;
                }
                // That client left as it was asked: the next one answers.
                self.clients
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|(id, _)| *id != client);
            }
            match tokio::time::timeout(ANSWER_TIMEOUT, receiver).await {
                Ok(Ok(answer)) => match answer.error {
                    Some(error) => Err(format!("skiff: your machine's git credential: {error}")),
                    None => Ok(answer.attributes),
                },
                Ok(Err(_)) => Err("skiff: the client left before it answered".to_owned()),
                Err(_) => Err(format!(
                    "skiff: your machine did not answer within {} s",
                    ANSWER_TIMEOUT.as_secs()
                )),
            }
        }
        .await;
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        result
    }

    /// Makes sure the socket listens in the network namespace `namespace` (the dev container's), replacing one in
    /// an older namespace (the container started again). A namespace that is the agent's own is refused.
    pub fn listen_in(self: &Arc<Self>, namespace: &Path, tasks: &Tasks) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt as _;
        let inode = std::fs::metadata(namespace)
            .map_err(|error| format!("{}: {error}", namespace.display()))?
            .ino();
        if crate::procd::client::is_own_namespace(namespace)? {
            return Err(
                "the dev container shares the machine's network namespace (--network host), so every process of the machine could ask for credentials; git credentials are not offered there".to_owned(),
            );
        }
        let mut listening = self
            .listening
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((current, task)) = listening.as_ref() {
            if *current == inode && !task.is_finished() {
                return Ok(());
            }
            task.abort();
        }
        let listener =
            crate::procd::client::bind_abstract_in(namespace, SOCKET_NAME).map_err(|error| {
                format!("listening for git credentials in the dev container: {error}")
            })?;
        let broker = Arc::clone(self);
        let connections = tasks.clone();
        let shutdown = self.shutdown.clone();
        let accepting = tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = shutdown.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                let Ok((connection, _)) = accepted else {
                    break;
                };
                let broker = Arc::clone(&broker);
                connections.spawn(async move { broker.serve(connection).await });
            }
        });
        *listening = Some((inode, accepting.abort_handle()));
        Ok(())
    }

    /// Answers one helper's connection: its request in, `ok` and the attributes, or `error` and why, out.
    async fn serve(&self, mut connection: tokio::net::UnixStream) {
        let mut request = Vec::new();
        let read = tokio::time::timeout(
            READ_TIMEOUT,
            (&mut connection)
                .take(MAX_REQUEST)
                .read_to_end(&mut request),
        )
        .await;
        let reply = match read {
            Ok(Ok(_)) => match std::str::from_utf8(&request)
                .map_err(|_| "the request is not UTF-8".to_owned())
                .and_then(parse_request)
            {
                Ok((action, attributes)) => match self.ask(action, attributes).await {
                    Ok(attributes) => format!("ok\n{}", format_attributes(&attributes)),
                    Err(error) => format!("error\n{error}\n"),
                },
                Err(error) => format!("error\nskiff: {error}\n"),
            },
            _ => "error\nskiff: the request did not arrive\n".to_owned(),
        };
        let _ = connection.write_all(reply.as_bytes()).await;
        let _ = connection.shutdown().await;
    }
}

/// The helper's side, run by `skiff-procd git-credential ACTION` in the dev container: sends the action and git's
/// request, prints the answer's attributes for git, or the reason there is none on standard error (exit 1).
pub fn helper(action: &str) -> std::process::ExitCode {
    use std::io::{Read as _, Write as _};
    use std::os::linux::net::SocketAddrExt as _;
    if !ACTIONS.contains(&action) {
        // Git may call a helper with actions it adds later: nothing to do.
        return std::process::ExitCode::SUCCESS;
    }
    let mut request = format!("{action}\n").into_bytes();
    if std::io::stdin()
        .take(MAX_REQUEST)
        .read_to_end(&mut request)
        .is_err()
    {
        return std::process::ExitCode::FAILURE;
    }
    let reply = (|| -> std::io::Result<String> {
        let address = std::os::unix::net::SocketAddr::from_abstract_name(SOCKET_NAME)?;
        let mut stream = std::os::unix::net::UnixStream::connect_addr(&address)?;
        stream.write_all(&request)?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut reply = String::new();
        stream.take(MAX_REQUEST).read_to_string(&mut reply)?;
        Ok(reply)
    })();
    match reply {
        Ok(reply) => match reply.split_once('\n') {
            Some(("ok", attributes)) => {
                print!("{attributes}");
                std::process::ExitCode::SUCCESS
            }
            Some(("error", why)) => {
                eprint!("{why}");
                std::process::ExitCode::FAILURE
            }
            _ => {
                eprintln!("skiff: the agent's answer was not understood");
                std::process::ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!(
                "skiff: the agent does not offer git credentials in this container ({error}); connect with `skiff ssh` or `skiff exec`, whose client answers them"
            );
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_protocols_attributes_pass_and_a_value_never_adds_a_line() {
        let (action, attributes) = parse_request(
            "get\nprotocol=https\nhost=example.com\nwwwauth[]=Basic\ncapability[]=authtype\nexotic=1\n\nafter=ignored\n",
        )
        .unwrap();
        assert_eq!(action, "get");
        assert_eq!(
            attributes.keys().collect::<Vec<_>>(),
            ["host", "protocol"],
            "unknown attributes are dropped"
        );
        assert!(parse_request("run\nhost=x\n").is_err());
        assert!(parse_request("get\nno equals sign\n").is_err());
        assert!(parse_request("get\nhost=a\0b\n").is_err());
        let answer = BTreeMap::from([
            ("username".to_owned(), "ada".to_owned()),
            ("password".to_owned(), "p\nhost=evil".to_owned()),
            ("exotic".to_owned(), "x".to_owned()),
        ]);
        assert_eq!(format_attributes(&answer), "username=ada\n");
    }

    #[tokio::test]
    async fn a_request_with_no_client_fails_at_once_naming_the_way_to_connect() {
        let broker = Broker::new("app", tokio_util::sync::CancellationToken::new());
        let started = std::time::Instant::now();
        let error = broker.ask("get".into(), BTreeMap::new()).await.unwrap_err();
        assert!(started.elapsed() < REGISTRATION_GRACE + Duration::from_secs(1));
        assert!(
            error.contains("skiff ssh app") && error.contains("skiff exec app"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn the_latest_client_answers_and_a_client_that_left_does_not() {
        let broker = Broker::new("app", tokio_util::sync::CancellationToken::new());
        let (first, _first_requests) = broker.register();
        let (second, mut second_requests) = broker.register();
        let answering = async {
            let request = second_requests.recv().await.unwrap();
            assert_eq!(request.attributes["host"], "example.com");
            broker.answer(GitCredentialAnswer {
                id: request.id,
                attributes: BTreeMap::from([("username".into(), "ada".into())]),
                error: None,
            });
        };
        let (answer, ()) = tokio::join!(
            broker.ask(
                "get".into(),
                BTreeMap::from([("host".into(), "example.com".into())])
            ),
            answering
        );
        assert_eq!(answer.unwrap()["username"], "ada");
        drop((first, second));
        assert!(broker.ask("get".into(), BTreeMap::new()).await.is_err());
    }
}
