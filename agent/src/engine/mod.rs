//! The dev container engine: turns a resolved devcontainer.json into a running container, finds and
//! reuses the one it made before, runs the lifecycle commands, and stops or removes it.
//!
//! It speaks to Docker only through `crate::docker`, and knows nothing of gRPC.
//! This file holds `Engine`, its error, and what every part shares (finding the container, stop, delete).
//! Its parts, by job: `up` orchestrates `skiff up`; `create` makes the container; `images` pulls and builds
//! images; `lifecycle` runs the lifecycle commands; `probe` reads the user's environment; `mounts` parses and
//! places mounts; `process` is the one way to start a process in the container (through the process
//! server that `servers` keeps, else `docker exec`).
//! Beside them: `run_args` parses `runArgs` and `build.options`, `features` fetches, resolves, orders and builds
//! Features, `metadata` reads and merges the `devcontainer.metadata` label, and `compose` drives Docker Compose
//! configurations.

mod compose;
mod create;
mod features;
mod images;
mod lifecycle;
mod metadata;
mod mounts;
mod probe;
mod process;
mod run_args;
mod servers;
mod up;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use skiff::api::{ContainerState, OutputStream, UpEvent, UpPhase};
use tokio::sync::{Mutex, mpsc};

pub use self::compose::LABEL_PROJECT as LABEL_COMPOSE_PROJECT;
pub use self::images::image_tag;
pub use self::mounts::parse_mount;
pub use self::process::{Control, Process, ProcessSpec, remote_env};
use self::servers::ProcServers;
pub use self::up::{LABEL_CONFIG_HASH, Remaining, Up};
use crate::docker::{BuildSpec, ContainerInfo, ContainerSpec, Docker, DockerError, Mount};
use crate::idle::Activity;
use crate::procd::client::{CONTAINER_PATH, ProcServer, binary_beside_agent};
use crate::state::{StateDir, WorkspaceRecord};

/// The label that marks a container as a skiff workspace's.
pub const LABEL_WORKSPACE: &str = "skiff.workspace";

/// A failure of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Docker failed.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// The configuration cannot be used.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    /// A lifecycle command failed; the ones after it did not run.
    #[error(
        "{file}: {hook} failed with exit code {code}{detail}; the lifecycle commands after it did not run"
    )]
    Hook {
        file: String,
        hook: &'static str,
        code: i64,
        detail: String,
    },
    /// There is no dev container yet.
    #[error("workspace {workspace} has no dev container; run `skiff up` first")]
    NoContainer { workspace: String },
    /// The dev container exists but is not running.
    #[error(
        "the dev container of workspace {workspace} is {state}; run `skiff up {workspace}` to start it"
    )]
    NotRunning {
        workspace: String,
        state: ContainerState,
    },
    /// The agent's state folder could not be written.
    #[error("writing the agent's state: {0}")]
    State(#[from] std::io::Error),
    /// A command started in the dev container, then the process server carrying it failed.
    #[error("running `{command}` in the dev container: {reason}")]
    Process { command: String, reason: String },
    /// The dev container stopped under a command (or `up`'s step) that ran in it, without the agent stopping it.
    #[error(
        "the dev container of workspace {workspace} stopped while {during}: Docker restarted, or something else stopped \
         it; the next `skiff exec` or `skiff up {workspace}` starts it again"
    )]
    Stopped { workspace: String, during: String },
}

impl EngineError {
    /// Whether the Docker engine did not answer (the agent cannot do anything until it does).
    pub fn docker_unreachable(&self) -> bool {
        matches!(self, Self::Docker(DockerError::Unreachable { .. }))
    }

    /// Whether Docker refused to pull or build an image (something the user can fix in the configuration).
    pub fn image_refused(&self) -> bool {
        matches!(
            self,
            Self::Docker(DockerError::Pull { .. } | DockerError::Build { .. })
        )
    }
}

/// The dev container's output, chunk by chunk, tagged with the stream it came from.
pub type Logs = BoxStream<'static, Result<(OutputStream, Bytes), EngineError>>;

/// Where `Up` sends its events.
pub type Events = mpsc::Sender<UpEvent>;

async fn emit(events: &Events, event: UpEvent) {
    // A client that hung up no longer wants events; the work itself goes on.
    let _ = events.send(event).await;
}

/// The `devcontainer.metadata` entries in `labels` (an image's or a container's, named by `what`); a label that does
/// not parse is a warning and counts as none, as the reference CLI does.
async fn label_entries(
    labels: &BTreeMap<String, String>,
    what: &str,
    events: &Events,
) -> Vec<metadata::Entry> {
    match metadata::entries_from_label(
        labels
            .get(skiff::devcontainer::LABEL_METADATA)
            .map(String::as_str),
    ) {
        Ok(entries) => entries,
        Err(problem) => {
            emit(
                events,
                UpEvent::Warning(format!("{what}: {problem}; ignoring it")),
            )
            .await;
            Vec::new()
        }
    }
}

async fn progress(events: &Events, phase: UpPhase, message: impl Into<String>) {
    let message = message.into();
    tracing::info!(?phase, "{message}");
    emit(events, UpEvent::Progress { phase, message }).await;
}

/// The running dev container and how to run things in it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The container.
    pub container: ContainerInfo,
    /// The agent's record of it.
    pub record: WorkspaceRecord,
}

/// The engine of one workspace.
#[derive(Debug)]
pub struct Engine {
    docker: Docker,
    workspace: String,
    state: StateDir,
    activity: Arc<Activity>,
    /// The record of the workspace's container; the lock also keeps `up`, `stop` and `delete` from overlapping.
    record: Mutex<Option<WorkspaceRecord>>,
    /// Held while lifecycle commands run, including those after `waitFor` that outlive their `up`: a second `up` runs
    /// its commands after them, so the reference order holds.
    lifecycle: Arc<Mutex<()>>,
    /// The process server of the dev container, through which processes start (see `process`).
    servers: Arc<ProcServers>,
    /// The container this agent last saw running and did not stop itself: when it is found stopped (Docker restarted,
    /// which stops every container), the next use starts it again (`up::start_again`).
    seen_running: std::sync::Mutex<Option<String>>,
    /// Held while a stopped container is started again up to the end of its `postStartCommand`: a command that finds
    /// it stopped at the same moment (an exec beside its git credential stream, say) waits for that start to finish
    /// rather than run in a container whose `postStartCommand` has not run yet.
    starting: Mutex<()>,
    /// The client's registry logins for the `up` that runs (its pulls and builds use them); empty between `up`s,
    /// and never written anywhere.
    logins: std::sync::Mutex<Vec<skiff::api::RegistryLogin>>,
    /// This machine's own registry logins, by credential helper (`registry_helpers`), asked for at each `up`.
    registry_helpers: std::collections::BTreeMap<String, String>,
}

impl Engine {
    /// An engine for `workspace` on the Docker engine the environment names (`DOCKER_HOST`, else the local
    /// socket), picking up the record a previous agent left in `state`.
    pub fn connect(
        workspace: String,
        state: StateDir,
        activity: Arc<Activity>,
    ) -> Result<Self, EngineError> {
        Ok(Self::new(Docker::connect()?, workspace, state, activity))
    }

    /// An engine for `workspace` on `docker`, picking up the record a previous agent left in `state`.
    fn new(docker: Docker, workspace: String, state: StateDir, activity: Arc<Activity>) -> Self {
        let record = state.load_record();
        Self {
            docker,
            workspace,
            state,
            activity,
            record: Mutex::new(record),
            lifecycle: Arc::new(Mutex::new(())),
            servers: Arc::default(),
            seen_running: std::sync::Mutex::default(),
            starting: Mutex::new(()),
            logins: std::sync::Mutex::default(),
            registry_helpers: std::collections::BTreeMap::new(),
        }
    }

    /// With this machine's own registry logins, asked from these credential helpers at each `up`.
    #[must_use]
    pub fn with_registry_helpers(
        mut self,
        helpers: std::collections::BTreeMap<String, String>,
    ) -> Self {
        self.registry_helpers = helpers;
        self
    }

    /// The Docker engine's version; the error names the socket and `DOCKER_HOST` when it does not answer.
    pub async fn docker_version(&self) -> Result<String, EngineError> {
        Ok(self.docker.version().await?)
    }

    /// The dev container's CPU use in percent of one core (200 means two busy cores), measured over about a
    /// second by the engine; `None` when it is not running.
    pub async fn cpu_percent(&self, target: &Target) -> Result<Option<f64>, EngineError> {
        Ok(self.docker.cpu_percent(&target.container.id).await?)
    }

    /// The dev container's output, from the start or the last `tail` lines, following new output if asked.
    pub fn logs(&self, target: &Target, follow: bool, tail: u32) -> Result<Logs, EngineError> {
        let logs = self.docker.logs(&target.container.id, follow, tail)?;
        Ok(logs.map(|item| item.map_err(EngineError::from)).boxed())
    }

    /// The dev container's process server, started if it is not running; `None` where it cannot run.
    pub async fn process_server(&self, target: &Target) -> Option<ProcServer> {
        self.servers.get(&self.docker, &target.container).await
    }

    /// Forgets the process server (it stopped answering); the next use starts another.
    pub async fn forget_process_server(&self) {
        self.servers.forget().await;
    }

    /// Makes sure the `skiff-procd` binary is in the dev container, for a use that runs it as a program of its
    /// own (the SFTP subsystem, the SSH agent relay): a running process server means it is in place; otherwise it is copied in.
    pub async fn place_process_server_binary(&self, target: &Target) -> Result<(), String> {
        if self.process_server(target).await.is_some() {
            return Ok(());
        }
        let binary = binary_beside_agent().map_err(|error| {
            format!(
                "sftp and ssh agent forwarding run skiff-procd in the dev container, and {error}"
            )
        })?;
        let contents = tokio::fs::read(&binary)
            .await
            .map_err(|error| format!("reading {}: {error}", binary.display()))?;
        self.docker
            .put_file(&target.container.id, CONTAINER_PATH, &contents, 0o755)
            .await
            .map_err(|error| format!("placing skiff-procd in the dev container: {error}"))
    }

    /// What the dev container's merged metadata (its `devcontainer.metadata` label: image, Features and
    /// devcontainer.json entries) asks of VS Code. A label that cannot be read asks nothing.
    pub fn editor_customizations(target: &Target) -> skiff::api::EditorCustomizations {
        let label = target
            .container
            .labels
            .get(skiff::devcontainer::LABEL_METADATA)
            .map(String::as_str);
        let entries = metadata::entries_from_label(label).unwrap_or_default();
        let (extensions, settings) = metadata::vscode(&entries);
        skiff::api::EditorCustomizations {
            extensions,
            settings_json: (!settings.is_empty())
                .then(|| serde_json::Value::Object(settings).to_string()),
        }
    }

    /// The workspace's name.
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// The container and record, if `up` has made one.
    pub async fn current(&self) -> Result<Option<Target>, EngineError> {
        let Some(record) = self.record.lock().await.clone() else {
            return Ok(None);
        };
        let container = self.docker.inspect_container(&record.container_id).await?;
        Ok(container.map(|container| Target { container, record }))
    }

    /// The running container, or an error that says what to do. A container this agent saw running that stopped
    /// without the agent stopping it (Docker restarted) is started again, as the user would by `skiff up`.
    pub async fn running(&self) -> Result<Target, EngineError> {
        let target = self
            .current()
            .await?
            .ok_or_else(|| EngineError::NoContainer {
                workspace: self.workspace.clone(),
            })?;
        if target.container.state == ContainerState::Running {
            // Running because another call is starting it again: that start ends with its `postStartCommand`,
            // which this call waits for (the lock is held from before Docker starts the container until then).
            drop(self.starting.lock().await);
            self.saw_running(&target.container.id);
            return Ok(target);
        }
        if target.container.state == ContainerState::Stopped
            && self.was_seen_running(&target.container.id)
        {
            return self.start_again(target).await;
        }
        Err(EngineError::NotRunning {
            workspace: self.workspace.clone(),
            state: target.container.state,
        })
    }

    fn saw_running(&self, container_id: &str) {
        *self
            .seen_running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(container_id.to_owned());
    }

    fn was_seen_running(&self, container_id: &str) -> bool {
        self.seen_running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_deref()
            == Some(container_id)
    }

    /// Whether `target`'s container stopped since `target` was read (or started again since): Docker restarted, or
    /// something else stopped it. An engine that does not answer counts as stopped, since it takes its containers
    /// with it when it goes.
    pub async fn stopped_since(&self, target: &Target) -> bool {
        match self.docker.inspect_container(&target.container.id).await {
            Ok(Some(container)) => {
                container.state != ContainerState::Running
                    || container.started_at != target.container.started_at
            }
            Ok(None) | Err(_) => true,
        }
    }

    /// The error for a command or step (`during`) cut short by the container stopping under it (see
    /// [`Engine::stopped_since`]); `cause` is how it showed, for the log.
    pub fn stopped_under(&self, during: &str, cause: &dyn std::fmt::Display) -> EngineError {
        tracing::warn!("the dev container stopped while {during}: {cause}");
        EngineError::Stopped {
            workspace: self.workspace.clone(),
            during: during.to_owned(),
        }
    }

    /// Stops the dev container (if running); its files stay.
    pub async fn stop(&self) -> Result<bool, EngineError> {
        let _slot = self.record.lock().await;
        drop(_slot);
        // Stopped by the agent: not a container to start again on the next use.
        *self
            .seen_running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        let Some(target) = self.current().await? else {
            return Ok(false);
        };
        let was_running = target.container.state == ContainerState::Running;
        if was_running {
            tracing::info!(
                container = short(&target.container.id),
                "stopping the dev container"
            );
            self.docker.stop_container(&target.container.id, 10).await?;
        }
        // A compose configuration's other services stop with it (the reference default `shutdownAction: stopCompose`).
        if let Some(project) = target.container.labels.get(compose::LABEL_PROJECT) {
            let labels = BTreeMap::from([(compose::LABEL_PROJECT.to_owned(), project.clone())]);
            for id in self.docker.find_containers_ext(&labels).await? {
                self.docker.stop_container(&id, 10).await?;
            }
        }
        Ok(was_running)
    }

    /// Removes the dev container, the image built for it (with a compose project: its containers, network, built
    /// images and named volumes), and the agent's record.
    pub async fn delete(
        &self,
        local_labels: Option<&BTreeMap<String, String>>,
    ) -> Result<(Vec<String>, Vec<String>), EngineError> {
        let mut slot = self.record.lock().await;
        let mut containers = Vec::new();
        let mut images = Vec::new();
        if let Some(record) = slot.as_ref() {
            // A compose configuration's project goes with its dev container: every service container and its default
            // network.
            let dev_container = self.docker.inspect_container(&record.container_id).await?;
            if let Some((project, service, image)) = dev_container.and_then(|container| {
                let project = container.labels.get(compose::LABEL_PROJECT).cloned()?;
                let service = container.labels.get(compose::LABEL_SERVICE).cloned();
                Some((project, service, container.image))
            }) {
                let labels = BTreeMap::from([(compose::LABEL_PROJECT.to_owned(), project.clone())]);
                for id in self.docker.find_containers_ext(&labels).await? {
                    if id != record.container_id && self.docker.remove_container(&id).await? {
                        containers.push(id);
                    }
                }
                if self.docker.remove_container(&record.container_id).await? {
                    containers.push(record.container_id.clone());
                }
                self.docker
                    .remove_network(&format!("{project}_default"))
                    .await?;
                // The project's named volumes (compose labels the ones it made; an `external` one is the user's and
                // stays): a deleted workspace leaves no data behind that nothing refers to.
                let volumes = self
                    .docker
                    .remove_volumes_labelled(compose::LABEL_PROJECT, &project)
                    .await?;
                if !volumes.is_empty() {
                    tracing::info!(?volumes, "removed the compose project's volumes");
                }
                // An image compose built for the service (named after the project) goes too; pulled images stay.
                if (image.starts_with(&format!("{project}_"))
                    || image.starts_with(&format!("{project}-")))
                    && self.docker.remove_image(&image).await?
                {
                    images.push(image.clone());
                }
                // Under a Feature image, the one compose built for the service goes once that one has.
                let built_bases = service.iter().flat_map(|service| {
                    [
                        format!("{project}-{service}"),
                        format!("{project}_{service}"),
                    ]
                });
                for base in built_bases.filter(|base| *base != image) {
                    if self.docker.remove_image(&base).await? {
                        images.push(base);
                    }
                }
            }
            if self.docker.remove_container(&record.container_id).await? {
                containers.push(record.container_id.clone());
            }
            if let Some(image) = &record.built_image
                && self.docker.remove_image(image).await?
            {
                images.push(image.clone());
            }
        }
        // Containers of this workspace that the record does not know (an interrupted `up`) go too.
        let mut labels = BTreeMap::from([(LABEL_WORKSPACE.to_owned(), self.workspace.clone())]);
        if let Some(local_labels) = local_labels {
            labels.extend(local_labels.clone());
        }
        while let Some(container) = self.docker.find_container(&labels).await? {
            if !self.docker.remove_container(&container.id).await? {
                break;
            }
            containers.push(container.id);
        }
        self.state.remove_record()?;
        *slot = None;
        Ok((containers, images))
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests;
