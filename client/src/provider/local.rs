//! The local provider: runs `skiffd` for a workspace on this machine, against the local Docker engine,
//! listening on loopback, and reconnects to it while it runs.
//!
//! The agent's configuration, key and state live in the workspace's folder of the store (`skiffd.toml`,
//! `agent/`, `agent.log`), so the client pins the agent's certificate by reading it from there.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::agent_client::AgentClient;
use crate::tunnel::tcp;
use crate::workspace::{self, Workspace, WorkspaceError};

/// A failure of the local provider.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// No `skiffd` binary was found.
    #[error(
        "could not find skiffd: looked for {}; install it beside skiff or pass --agent-binary PATH",
        looked.iter().map(|path| path.display().to_string()).collect::<Vec<_>>().join(" and ")
    )]
    NoAgentBinary { looked: Vec<PathBuf> },
    /// The agent did not start.
    #[error("the agent of workspace {workspace} did not start: {reason}; its log is {log}")]
    AgentDidNotStart {
        workspace: String,
        reason: String,
        log: PathBuf,
    },
    /// The workspace's record or keys failed.
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    /// The connection failed.
    #[error(transparent)]
    Connect(#[from] tcp::ConnectError),
    /// Starting the agent process failed.
    #[error("starting {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How the local provider runs agents.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    /// The `skiffd` to run; by default the one beside this `skiff`.
    pub agent_binary: Option<PathBuf>,
    /// Whether starting the agent counts as activity: true for commands a person uses the workspace with
    /// (`up`, `exec`, `ssh`, `forward`), false for looking at it (`logs`) or removing it.
    pub start_is_activity: bool,
}

impl LocalProvider {
    fn agent_state(workspace: &Workspace) -> PathBuf {
        workspace.folder.join("agent")
    }

    fn log_path(workspace: &Workspace) -> PathBuf {
        workspace.folder.join("agent.log")
    }

    /// The agent certificate this machine pinned for `workspace`, once its agent has started; its key is also
    /// the agent's SSH host key.
    pub fn pinned_certificate(workspace: &Workspace) -> Option<String> {
        std::fs::read_to_string(Self::agent_state(workspace).join("agent.crt")).ok()
    }

    /// The agent's address if it is running and answers a connection.
    fn listen_address(workspace: &Workspace) -> Option<SocketAddr> {
        std::fs::read_to_string(Self::agent_state(workspace).join("listen-address"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A client of the workspace's agent if it is running; `None` if it is not.
    pub async fn connect_running(
        &self,
        workspace: &Workspace,
    ) -> Result<Option<AgentClient>, LocalError> {
        let Some(address) = Self::listen_address(workspace) else {
            return Ok(None);
        };
        // A listen address left by an agent that died is stale: nothing accepts there.
        if tokio::net::TcpStream::connect(address).await.is_err() {
            return Ok(None);
        }
        let certificate_path = Self::agent_state(workspace).join("agent.crt");
        let Ok(agent_certificate) = std::fs::read_to_string(&certificate_path) else {
            return Ok(None);
        };
        let channel = tcp::connect(address, &workspace.identity()?, &agent_certificate).await?;
        Ok(Some(AgentClient::new(channel)))
    }

    /// A client of the workspace's agent, starting the agent first if it is not running.
    pub async fn ensure_agent(&self, workspace: &Workspace) -> Result<AgentClient, LocalError> {
        if let Some(client) = self.connect_running(workspace).await? {
            return Ok(client);
        }
        self.start_agent(workspace).await?;
        self.connect_running(workspace)
            .await?
            .ok_or_else(|| LocalError::AgentDidNotStart {
                workspace: workspace.name().to_owned(),
                reason: "it wrote its address but does not accept connections".into(),
                log: Self::log_path(workspace),
            })
    }

    /// Waits up to `timeout` for the agent to exit (after `Stop` or `Delete` asked it to).
    pub async fn wait_for_exit(&self, workspace: &Workspace, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match Self::listen_address(workspace) {
                None => return true,
                Some(address) if tokio::net::TcpStream::connect(address).await.is_err() => {
                    return true;
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
        false
    }

    fn find_agent_binary(&self) -> Result<PathBuf, LocalError> {
        let mut looked = Vec::new();
        let candidates = self
            .agent_binary
            .clone()
            .into_iter()
            .chain(std::env::var_os("SKIFF_AGENT_BINARY").map(PathBuf::from))
            .chain(
                std::env::current_exe()
                    .ok()
                    .and_then(|exe| exe.parent().map(|folder| folder.join("skiffd"))),
            );
        for candidate in candidates {
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked.push(candidate);
            if self.agent_binary.is_some() {
                // An explicit --agent-binary that does not exist is an error, not a hint to look elsewhere.
                break;
            }
        }
        Err(LocalError::NoAgentBinary { looked })
    }

    async fn start_agent(&self, workspace: &Workspace) -> Result<(), LocalError> {
        let binary = self.find_agent_binary()?;
        let state = Self::agent_state(workspace);
        let config_path = workspace.folder.join("skiffd.toml");
        let identity = workspace.identity()?;
        let config = skiff_agent_config(workspace, &state, &identity.certificate_pem);
        workspace::write_file(&config_path, config.as_bytes(), 0o600)?;
        let _ = std::fs::remove_file(state.join("listen-address"));
        let log_path = Self::log_path(workspace);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| LocalError::Spawn {
                binary: log_path.clone(),
                source,
            })?;
        let log_for_stderr = log.try_clone().map_err(|source| LocalError::Spawn {
            binary: log_path.clone(),
            source,
        })?;
        let mut command = std::process::Command::new(&binary);
        command.arg("--config").arg(&config_path);
        if self.start_is_activity {
            command.arg("--start-is-activity");
        }
        command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        // Its own process group: the agent outlives this command and ignores the terminal's Ctrl-C.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|source| LocalError::Spawn {
            binary: binary.clone(),
            source,
        })?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if Self::listen_address(workspace).is_some() {
                // Reap the child in the background when it eventually exits, so it never lingers as a zombie.
                std::thread::spawn(move || {
                    let _ = child.wait();
                });
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LocalError::AgentDidNotStart {
                    workspace: workspace.name().to_owned(),
                    reason: format!("it exited with {status}: {}", last_line(&log_path)),
                    log: log_path,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(LocalError::AgentDidNotStart {
                    workspace: workspace.name().to_owned(),
                    reason: "it did not listen within 15 seconds".into(),
                    log: log_path,
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The agent configuration the local provider writes.
fn skiff_agent_config(workspace: &Workspace, state: &Path, client_certificate: &str) -> String {
    #[derive(serde::Serialize)]
    struct Config<'a> {
        workspace: &'a str,
        listen: &'a str,
        idle_timeout: &'a str,
        idle_action: &'a str,
        client_certificate: &'a str,
        state_dir: &'a Path,
    }
    toml::to_string(&Config {
        workspace: workspace.name(),
        listen: "127.0.0.1:0",
        idle_timeout: &workspace.record.idle_timeout,
        idle_action: "stop-container",
        client_certificate,
        state_dir: state,
    })
    .expect("the agent configuration always serialises")
}

fn last_line(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "it wrote nothing".into())
}
