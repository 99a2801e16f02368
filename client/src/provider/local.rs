//! The local provider: runs `skiffd` for a workspace on this machine, against the local Docker engine,
//! listening on loopback, and reconnects to it while it runs.
//!
//! The agent's configuration, key and state live in the workspace's folder of the store (`skiffd.toml`,
//! `agent/`, `agent.log`), so the client pins the agent's certificate by reading it from there
//! (`tunnel::connect::local_agent_file`).
//!
//! `status`, `stop`, `delete` and `list` of a local workspace ask its agent, and `up` places a workspace by
//! finding or making its record for the folder.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::agent_client::AgentClient;
use crate::files::DeleteDecision;
use crate::progress::Progress;
use crate::tunnel::connect::{self, Pin};
use crate::tunnel::tcp;
use crate::workspace::{self, ProviderKind, Store, Workspace, WorkspaceError, WorkspaceRecord};

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
    /// Another command was starting the agent and did not finish.
    #[error("waiting for another skiff command to start the agent ({path}): {source}")]
    StartLock {
        path: PathBuf,
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
        let certificate_path = connect::local_agent_file(&workspace.folder);
        let Ok(agent_certificate) = std::fs::read_to_string(&certificate_path) else {
            return Ok(None);
        };
        let channel = connect::connect(
            tcp::dial(address),
            &workspace.identity()?,
            Pin::Certificate(&agent_certificate),
            &format!("at {address}"),
        )
        .await?;
        Ok(Some(AgentClient::new(channel)))
    }

    /// A client of the workspace's agent, starting the agent first if it is not running.
    pub async fn ensure_agent(&self, workspace: &Workspace) -> Result<AgentClient, LocalError> {
        if let Some(client) = self.connect_running(workspace).await? {
            return Ok(client);
        }
        // One command starts the agent; another at the same moment waits for it and uses that agent.
        let lock_path = workspace.folder.join("agent-start.lock");
        let _starting = skiff::lock::lock(&lock_path, Duration::from_secs(30))
            .await
            .map_err(|source| LocalError::StartLock {
                path: lock_path.clone(),
                source,
            })?;
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

    /// A client of the workspace's agent with its dev container running (see `Provider::connect`). `skiff stop`
    /// and the idle stop both end a local workspace's agent, so a command that finds no agent starts it and asks it
    /// the container's state; one that finds the agent running (started by `logs` or `ssh-config`, which only look)
    /// asks it to `Start`, which the agent answers from memory while it knows its container runs.
    pub async fn connect(
        &self,
        workspace: &Workspace,
        on_stopped: super::OnStopped,
    ) -> anyhow::Result<AgentClient> {
        let stopped = |state| {
            matches!(
                state,
                skiff::api::ContainerState::Stopped | skiff::api::ContainerState::Created
            )
        };
        if let Some(mut client) = self.connect_running(workspace).await? {
            match on_stopped {
                super::OnStopped::Start => {
                    if super::start_dev_container(&mut client, workspace).await? {
                        eprintln!(
                            "skiff: workspace {} was stopped; started it (--no-start leaves it stopped)",
                            workspace.name()
                        );
                    }
                }
                super::OnStopped::Refuse => {
                    if stopped(client.status().await?.container_state) {
                        return Err(super::OnStopped::refused(workspace));
                    }
                }
            }
            return Ok(client);
        }
        let mut client = self.ensure_agent(workspace).await?;
        if !stopped(client.status().await?.container_state) {
            // Running (only the agent had ended), or never made: the command says what to do then.
            return Ok(client);
        }
        if on_stopped == super::OnStopped::Refuse {
            return Err(super::OnStopped::refused(workspace));
        }
        super::OnStopped::announce(workspace);
        super::start_dev_container(&mut client, workspace).await?;
        Ok(client)
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

impl LocalProvider {
    /// `up`'s record of `placement`'s folder: the one it has (its configuration file and idle timeout brought up
    /// to date), else a new one. The local provider's agent always waits, so `--no-wait` is refused.
    pub(crate) fn place(
        &self,
        placement: &super::Placement<'_>,
        progress: &Progress,
    ) -> anyhow::Result<Workspace> {
        let args = placement.args;
        let folder = placement.folder;
        if args.no_wait {
            anyhow::bail!(
                "--no-wait is for AWS workspaces (--provider aws); the local provider always waits"
            );
        }
        let store = Store::open_default()?;
        let mut workspace = match store.find_by_folder(folder)? {
            Some(existing) => {
                if let Some(name) = &args.name
                    && name != existing.name()
                {
                    anyhow::bail!(
                        "{} is already workspace {}; use that name, or `skiff delete {}` first",
                        folder.display(),
                        existing.name(),
                        existing.name()
                    );
                }
                existing
            }
            None => {
                let name = args
                    .name
                    .clone()
                    .unwrap_or_else(|| workspace::name_from_folder(folder));
                let created = store.create(WorkspaceRecord {
                    name,
                    provider: ProviderKind::Local,
                    local_folder: folder.to_owned(),
                    config_file: placement.config_file.to_owned(),
                    idle_timeout: args.idle_timeout.clone().unwrap_or_else(|| "30m".into()),
                    aws: None,
                    auto_start: true,
                    git_credentials: true,
                    dotfiles: None,
                });
                match created {
                    // Another `up` of this folder made it at the same moment: use that one.
                    Err(workspace::WorkspaceError::NameTaken { existing, .. })
                        if existing == folder =>
                    {
                        store.find_by_folder(folder)?.ok_or_else(|| {
                            anyhow::anyhow!(
                                "workspace for {} vanished while it was made",
                                folder.display()
                            )
                        })?
                    }
                    created => created?,
                }
            }
        };
        let mut changed = false;
        if workspace.record.config_file != placement.config_file {
            workspace.record.config_file = placement.config_file.to_owned();
            changed = true;
        }
        if let Some(timeout) = &args.idle_timeout
            && *timeout != workspace.record.idle_timeout
        {
            workspace.record.idle_timeout = timeout.clone();
            changed = true;
            progress.line(&format!(
                "the idle timeout {timeout} applies from the workspace's next start (`skiff stop {}` then `skiff up`)",
                workspace.name()
            ));
        }
        if changed {
            workspace.save()?;
        }
        Ok(workspace)
    }

    /// `skiff status NAME` of a local workspace: its record and, when its agent runs, the agent's report.
    pub(crate) async fn status(&self, name: &str, json: bool) -> anyhow::Result<i32> {
        /// What `status --json` prints.
        #[derive(Debug, serde::Serialize)]
        struct Report {
            name: String,
            provider: String,
            folder: String,
            config_file: String,
            agent_running: bool,
            #[serde(flatten)]
            status: Option<skiff::api::Status>,
        }
        let workspace = Store::open_default()?.get(name)?;
        let status = match self.connect_running(&workspace).await? {
            Some(mut client) => Some(client.status().await?),
            None => None,
        };
        let report = Report {
            name: workspace.name().to_owned(),
            provider: workspace.record.provider.to_string(),
            folder: workspace.record.local_folder.display().to_string(),
            config_file: workspace.record.config_file.display().to_string(),
            agent_running: status.is_some(),
            status,
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(0);
        }
        println!("workspace         {}", report.name);
        println!("provider          {}", report.provider);
        println!("folder            {}", report.folder);
        println!("config            {}", report.config_file);
        let Some(status) = report.status else {
            println!(
                "state             stopped (agent not running; `skiff up {}` starts it)",
                report.name
            );
            return Ok(0);
        };
        super::print_agent(&status);
        Ok(0)
    }

    /// `skiff stop NAME` of a local workspace: stops the dev container and its agent; files and state stay for
    /// the next `up`.
    pub(crate) async fn stop(&self, name: &str) -> anyhow::Result<i32> {
        let workspace = Store::open_default()?.get(name)?;
        let Some(mut client) = self.connect_running(&workspace).await? else {
            eprintln!("workspace {} is already stopped", workspace.name());
            return Ok(0);
        };
        let was_running = client.stop(true).await?;
        if !self
            .wait_for_exit(&workspace, Duration::from_secs(20))
            .await
        {
            anyhow::bail!(
                "the agent of workspace {} did not exit after stopping; see its log in {}",
                workspace.name(),
                workspace.folder.display()
            );
        }
        if was_running {
            eprintln!("stopped workspace {}", workspace.name());
        } else {
            eprintln!(
                "workspace {} was not running; its agent has exited",
                workspace.name()
            );
        }
        Ok(0)
    }

    /// `skiff delete NAME` of a local workspace: the agent removes the dev container, the image built for it and
    /// what it made, then the record and keys go. The workspace's own folder is never touched.
    pub(crate) async fn delete(
        &self,
        name: &str,
        confirmation: super::Confirmation,
    ) -> anyhow::Result<i32> {
        let workspace = Store::open_default()?.get(name)?;
        // A workspace cloned from a git URL keeps its files with its agent (the folder is the agent's), so they go
        // with it: check them for work that exists nowhere else first.
        let files_on_agent = workspace.record.local_folder.starts_with(&workspace.folder);
        let mut confirmed = false;
        if files_on_agent {
            let mut client = self.ensure_agent(&workspace).await?;
            match crate::files::check_before_delete(
                &mut client,
                workspace.name(),
                confirmation.loses_work(),
            )
            .await?
            {
                DeleteDecision::Refused => return Ok(1),
                DeleteDecision::Confirmed => confirmed = true,
                DeleteDecision::NothingToLose => {}
            }
        }
        if confirmation.asks() && !confirmed && std::io::stdin().is_terminal() {
            let kept = if files_on_agent {
                "its files go too".to_owned()
            } else {
                format!("{} stays", workspace.record.local_folder.display())
            };
            if !super::confirm(&format!(
                "Delete workspace {} (its dev container, built image, keys and state; {kept})?",
                workspace.name()
            ))? {
                eprintln!("kept workspace {}", workspace.name());
                return Ok(1);
            }
        }
        // The agent removes what it made; the record goes only once that succeeded, so nothing is orphaned.
        let mut client = self.ensure_agent(&workspace).await?;
        let (containers, images) = client.delete(true).await?;
        if !self
            .wait_for_exit(&workspace, Duration::from_secs(20))
            .await
        {
            anyhow::bail!(
                "the agent of workspace {} did not exit after deleting; the workspace record is kept",
                workspace.name()
            );
        }
        let name = workspace.name().to_owned();
        workspace.remove()?;
        eprintln!(
            "deleted workspace {name} ({} container{}, {} image{} removed)",
            containers.len(),
            if containers.len() == 1 { "" } else { "s" },
            images.len(),
            if images.len() == 1 { "" } else { "s" }
        );
        Ok(0)
    }

    /// The local workspaces of `skiff list`; only a running agent is asked, listing never starts one. Every agent
    /// is asked at once.
    pub(crate) async fn list() -> anyhow::Result<Vec<super::ListRow>> {
        let store = Store::open_default()?;
        let provider = Self {
            agent_binary: None,
            start_is_activity: true,
        };
        let workspaces: Vec<Workspace> = store
            .all()?
            .into_iter()
            // Other providers list their own.
            .filter(|workspace| workspace.record.provider == ProviderKind::Local)
            .collect();
        let rows = workspaces.iter().map(|workspace| {
            let provider = &provider;
            async move {
                let status = match provider.connect_running(workspace).await {
                    Ok(Some(mut client)) => client.status().await.ok(),
                    _ => None,
                };
                super::ListRow {
                    name: workspace.name().to_owned(),
                    provider: workspace.record.provider.to_string(),
                    state: status.as_ref().map_or_else(
                        || "stopped".to_owned(),
                        |status| status.container_state.to_string(),
                    ),
                    folder: workspace.record.local_folder.display().to_string(),
                    stopped_since_unix: status
                        .is_none()
                        .then(|| last_down(&Self::agent_state(workspace)))
                        .flatten(),
                    container_id: status
                        .as_ref()
                        .and_then(|status| status.container_id.clone()),
                    aws: None,
                    status,
                }
            }
        });
        Ok(futures::future::join_all(rows).await)
    }
}

/// When the workspace's agent last recorded a down in its ledger (`ledger.jsonl` in its state folder): its stop.
fn last_down(state: &Path) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Entry {
        at: i64,
        up: bool,
    }
    let text = std::fs::read_to_string(state.join("ledger.jsonl")).ok()?;
    let last = text
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Entry>(line).ok())?;
    (!last.up).then_some(last.at)
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
