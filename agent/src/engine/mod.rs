//! The dev container engine: turns a resolved devcontainer.json into a running container, finds and
//! reuses the one it made before, runs the lifecycle commands, and stops or removes it.
//!
//! It speaks to Docker only through `crate::docker`, and knows nothing of gRPC.
//! Its parts: `run_args` parses `runArgs` and `build.options`, `features` resolves, orders and builds local Features,
//! `metadata` reads and merges the `devcontainer.metadata` label, and `compose` drives Docker Compose configurations.

mod features;
mod metadata;
mod run_args;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use sha2::Digest;
use skiff::api::{ContainerState, OutputStream, UpEvent, UpPhase, UpResult, UpSpec};
use skiff::devcontainer::{
    self, ConfigKind, DevContainer, LifecycleCommand, PortSpec, SimpleCommand,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, mpsc};

use crate::docker::{
    BuildSpec, ContainerInfo, ContainerSpec, Docker, DockerError, ExecConfig, Mount,
};
use crate::idle::{self, Activity};
use crate::state::{StateDir, WorkspaceRecord};

/// The label that marks a container as a skiff workspace's.
pub const LABEL_WORKSPACE: &str = "skiff.workspace";

/// The keep-alive the reference CLI runs when `overrideCommand` is on: it exits on SIGTERM at once,
/// so stopping the container does not wait for Docker's grace period.
const KEEP_ALIVE_SCRIPT: &str =
    "echo Container started\ntrap \"exit 0\" 15\nexec \"$@\"\nwhile sleep 1 & wait $!; do :; done";

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
}

/// Where `Up` sends its events.
pub type Events = mpsc::Sender<UpEvent>;

async fn emit(events: &Events, event: UpEvent) {
    // A client that hung up no longer wants events; the work itself goes on.
    let _ = events.send(event).await;
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
}

impl Engine {
    /// An engine for `workspace`, picking up the record a previous agent left in `state`.
    pub fn new(
        docker: Docker,
        workspace: String,
        state: StateDir,
        activity: Arc<Activity>,
    ) -> Self {
        let record = state.load_record();
        Self {
            docker,
            workspace,
            state,
            activity,
            record: Mutex::new(record),
        }
    }

    /// The Docker engine.
    pub fn docker(&self) -> &Docker {
        &self.docker
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

    /// The running container, or an error that says what to do.
    pub async fn running(&self) -> Result<Target, EngineError> {
        let target = self
            .current()
            .await?
            .ok_or_else(|| EngineError::NoContainer {
                workspace: self.workspace.clone(),
            })?;
        if target.container.state != ContainerState::Running {
            return Err(EngineError::NotRunning {
                workspace: self.workspace.clone(),
                state: target.container.state,
            });
        }
        Ok(target)
    }

    /// Builds (or finds) and starts the dev container, then runs its lifecycle commands.
    pub async fn up(&self, spec: UpSpec, events: &Events) -> Result<UpResult, EngineError> {
        let _busy = self.activity.busy(idle::source::UP);
        let mut record_slot = self.record.lock().await;
        let config_error = |message: String| EngineError::Config {
            file: spec.config_file.clone(),
            message,
        };
        let config: DevContainer = serde_json::from_str(&spec.config_json).map_err(|error| {
            config_error(format!(
                "the client sent a configuration the agent cannot read: {error}"
            ))
        })?;
        let kind = config
            .kind()
            .map_err(|error| config_error(error.to_string()))?;
        if kind == ConfigKind::Compose {
            return Err(config_error(
                "\"dockerComposeFile\": Docker Compose configurations are not supported by this agent yet; \
                 use \"image\" or \"build.dockerfile\""
                    .into(),
            ));
        }
        for warning in unsupported_properties(&config) {
            emit(events, UpEvent::Warning(warning)).await;
        }
        let local_folder = Path::new(&spec.local_folder);
        let labels = devcontainer::id_labels(local_folder, Path::new(&spec.config_file));

        progress(
            events,
            UpPhase::Resolving,
            "looking for the workspace's dev container",
        )
        .await;
        let mut existing = self.docker.find_container(&labels).await?;
        if spec.rebuild
            && let Some(container) = existing.take()
        {
            progress(
                events,
                UpPhase::Creating,
                format!("removing container {} to rebuild", short(&container.id)),
            )
            .await;
            self.docker.remove_container(&container.id).await?;
        }

        let (container, record, created) = match existing {
            Some(container) => {
                let record = match record_slot
                    .clone()
                    .filter(|record| record.container_id == container.id)
                {
                    Some(record) => record,
                    None => self.record_for(&config, &container, local_folder).await?,
                };
                (container, record, false)
            }
            None => {
                let (container, record) = self.create(&config, kind, &spec, labels, events).await?;
                (container, record, true)
            }
        };
        self.state.save_record(&record)?;
        *record_slot = Some(record.clone());

        let container = if container.state == ContainerState::Running {
            container
        } else {
            progress(
                events,
                UpPhase::Starting,
                format!("starting container {}", short(&container.id)),
            )
            .await;
            self.docker.start_container(&container.id).await?;
            self.docker
                .inspect_container(&container.id)
                .await?
                .ok_or_else(|| EngineError::NoContainer {
                    workspace: self.workspace.clone(),
                })?
        };
        drop(record_slot);

        let target = Target {
            container: container.clone(),
            record: record.clone(),
        };
        self.run_lifecycle(&config, &target, &spec.config_file, events)
            .await?;

        Ok(UpResult {
            container_id: container.id,
            created,
            workspace_folder: record.workspace_folder,
            remote_user: record.remote_user,
            image: record.image,
        })
    }

    /// Makes the image and the container.
    async fn create(
        &self,
        config: &DevContainer,
        kind: ConfigKind,
        spec: &UpSpec,
        mut labels: BTreeMap<String, String>,
        events: &Events,
    ) -> Result<(ContainerInfo, WorkspaceRecord), EngineError> {
        let local_folder = Path::new(&spec.local_folder);
        let files_folder = Path::new(&spec.files_folder);
        let (image, built_image) = match kind {
            ConfigKind::Image => {
                let image = config.image.clone().unwrap_or_default();
                if self.docker.inspect_image(&image).await?.is_none() {
                    progress(events, UpPhase::Pulling, format!("pulling image {image}")).await;
                    let mut lines = Vec::new();
                    self.docker
                        .pull_image(&image, |line| lines.push(line))
                        .await?;
                    for line in lines {
                        emit(
                            events,
                            UpEvent::Output {
                                stream: OutputStream::Stdout,
                                data: format!("{line}\n").into_bytes(),
                            },
                        )
                        .await;
                    }
                }
                (image, None)
            }
            _ => {
                let tag = image_tag(local_folder);
                let build = self.build_spec(config, spec, files_folder, &tag)?;
                progress(events, UpPhase::Building, format!("building image {tag}")).await;
                let _building = self.activity.busy(idle::source::BUILD);
                let (lines, mut receiver) = mpsc::unbounded_channel::<String>();
                let forward_events = events.clone();
                let forwarding = tokio::spawn(async move {
                    while let Some(line) = receiver.recv().await {
                        emit(
                            &forward_events,
                            UpEvent::Output {
                                stream: OutputStream::Stdout,
                                data: line.into_bytes(),
                            },
                        )
                        .await;
                    }
                });
                let built = self
                    .docker
                    .build_image(&build, |line| {
                        let _ = lines.send(line);
                    })
                    .await;
                drop(lines);
                let _ = forwarding.await;
                built?;
                (tag.clone(), Some(tag))
            }
        };
        let image_info = self.docker.inspect_image(&image).await?;
        let image_user = image_info.map(|info| info.user).unwrap_or_default();

        let (workspace_mount, workspace_folder) = self.workspace_mount(config, spec)?;
        let mut mounts: Vec<Mount> = workspace_mount.into_iter().collect();
        for mount in config.mounts.iter().flatten() {
            mounts.push(parse_mount(&mount.to_mount_spec()).map_err(|message| {
                EngineError::Config {
                    file: spec.config_file.clone(),
                    message: format!("\"mounts\": {message}"),
                }
            })?);
        }

        labels.insert(LABEL_WORKSPACE.into(), self.workspace.clone());
        labels.insert(devcontainer::LABEL_METADATA.into(), metadata_label(config));
        let keep_alive = config.override_command.unwrap_or(true);
        let container_spec = ContainerSpec {
            name: None,
            image: image.clone(),
            labels,
            env: config
                .container_env
                .iter()
                .flatten()
                .map(|(key, value)| format!("{key}={value}"))
                .collect(),
            user: config.container_user.clone(),
            entrypoint: keep_alive.then(|| vec!["/bin/sh".to_owned()]),
            cmd: keep_alive.then(|| {
                vec![
                    "-c".to_owned(),
                    KEEP_ALIVE_SCRIPT.to_owned(),
                    "-".to_owned(),
                ]
            }),
            mounts,
            init: config.init.unwrap_or(false),
            privileged: config.privileged.unwrap_or(false),
            cap_add: config.cap_add.clone().unwrap_or_default(),
            security_opt: config.security_opt.clone().unwrap_or_default(),
            published_ports: published_ports(config),
        };
        progress(
            events,
            UpPhase::Creating,
            format!("creating a container from {image}"),
        )
        .await;
        let id = self.docker.create_container(container_spec).await?;
        let container =
            self.docker
                .inspect_container(&id)
                .await?
                .ok_or_else(|| EngineError::NoContainer {
                    workspace: self.workspace.clone(),
                })?;
        let remote_user = config
            .remote_user
            .clone()
            .or_else(|| config.container_user.clone())
            .filter(|user| !user.is_empty())
            .unwrap_or_else(|| {
                if image_user.is_empty() {
                    "root".into()
                } else {
                    image_user
                }
            });
        let record = WorkspaceRecord {
            container_id: id,
            image,
            built_image,
            workspace_folder,
            remote_user,
            remote_env: config.remote_env.clone().unwrap_or_default(),
            shutdown_action: config.shutdown_action.as_ref().map(|action| {
                serde_json::to_value(action)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default()
            }),
        };
        Ok((container, record))
    }

    /// Rebuilds the agent's record of a container found by its labels (a record lost with an earlier agent).
    async fn record_for(
        &self,
        config: &DevContainer,
        container: &ContainerInfo,
        local_folder: &Path,
    ) -> Result<WorkspaceRecord, EngineError> {
        let image_user = self
            .docker
            .inspect_image(&container.image)
            .await?
            .map(|info| info.user)
            .unwrap_or_default();
        let remote_user = config
            .remote_user
            .clone()
            .or_else(|| config.container_user.clone())
            .or_else(|| (!container.user.is_empty()).then(|| container.user.clone()))
            .unwrap_or_else(|| {
                if image_user.is_empty() {
                    "root".into()
                } else {
                    image_user
                }
            });
        Ok(WorkspaceRecord {
            container_id: container.id.clone(),
            image: container.image.clone(),
            built_image: container
                .image
                .starts_with("vsc-")
                .then(|| container.image.clone()),
            workspace_folder: config.effective_workspace_folder(local_folder),
            remote_user,
            remote_env: config.remote_env.clone().unwrap_or_default(),
            shutdown_action: None,
        })
    }

    fn build_spec(
        &self,
        config: &DevContainer,
        spec: &UpSpec,
        files_folder: &Path,
        tag: &str,
    ) -> Result<BuildSpec, EngineError> {
        // The configuration names paths on the client's machine; the files are under `files_folder` here.
        let config_file = relocate(
            Path::new(&spec.config_file),
            Path::new(&spec.local_folder),
            files_folder,
        );
        let dockerfile = config.dockerfile_path(&config_file).unwrap_or_default();
        let context = config.context_dir(&config_file).unwrap_or_default();
        if !dockerfile.is_file() {
            return Err(EngineError::Config {
                file: spec.config_file.clone(),
                message: format!(
                    "\"build.dockerfile\": {} does not exist; the path is relative to the folder of devcontainer.json",
                    dockerfile.display()
                ),
            });
        }
        if !context.is_dir() {
            return Err(EngineError::Config {
                file: spec.config_file.clone(),
                message: format!("\"build.context\": {} is not a folder", context.display()),
            });
        }
        let build = config.build.clone().unwrap_or_default();
        Ok(BuildSpec {
            context,
            dockerfile,
            tag: tag.to_owned(),
            args: build.args.unwrap_or_default(),
            target: build.target.filter(|target| !target.is_empty()),
            cache_from: build
                .cache_from
                .map(|list| list.as_slice().to_vec())
                .unwrap_or_default(),
            labels: BTreeMap::new(),
            no_cache: false,
        })
    }

    /// The workspace's own mount and the folder it appears at in the container.
    fn workspace_mount(
        &self,
        config: &DevContainer,
        spec: &UpSpec,
    ) -> Result<(Option<Mount>, String), EngineError> {
        let local_folder = Path::new(&spec.local_folder);
        let workspace_folder = config.effective_workspace_folder(local_folder);
        match config.workspace_mount.as_deref() {
            // An empty workspaceMount means no workspace mount at all, as in the reference CLI.
            Some("") => Ok((None, workspace_folder)),
            Some(text) => {
                let mount = parse_mount(text).map_err(|message| EngineError::Config {
                    file: spec.config_file.clone(),
                    message: format!("\"workspaceMount\": {message}"),
                })?;
                // A bind mount of the client's folder is a bind mount of the files' folder here.
                let mount = match mount {
                    Mount::Bind {
                        source,
                        target,
                        read_only,
                    } => Mount::Bind {
                        source: relocate(
                            Path::new(&source),
                            local_folder,
                            Path::new(&spec.files_folder),
                        )
                        .to_string_lossy()
                        .into_owned(),
                        target,
                        read_only,
                    },
                    volume => volume,
                };
                Ok((Some(mount), workspace_folder))
            }
            None => Ok((
                Some(Mount::Bind {
                    source: spec.files_folder.clone(),
                    target: DevContainer::default_workspace_folder(local_folder),
                    read_only: false,
                }),
                workspace_folder,
            )),
        }
    }

    /// Runs the in-container lifecycle commands in the reference order, each at most as often as the reference does.
    async fn run_lifecycle(
        &self,
        config: &DevContainer,
        target: &Target,
        config_file: &str,
        events: &Events,
    ) -> Result<(), EngineError> {
        let created = target.container.created.clone();
        let started = target.container.started_at.clone();
        let hooks: [(&'static str, &Option<LifecycleCommand>, Option<&str>); 5] = [
            (
                "onCreateCommand",
                &config.on_create_command,
                Some(created.as_str()),
            ),
            (
                "updateContentCommand",
                &config.update_content_command,
                Some(created.as_str()),
            ),
            (
                "postCreateCommand",
                &config.post_create_command,
                Some(created.as_str()),
            ),
            (
                "postStartCommand",
                &config.post_start_command,
                Some(started.as_str()),
            ),
            ("postAttachCommand", &config.post_attach_command, None),
        ];
        for (hook, command, marker) in hooks {
            let Some(command) = command.as_ref().filter(|command| !command.is_empty()) else {
                continue;
            };
            if let Some(marker) = marker
                && !self.claim_marker(target, hook, marker).await?
            {
                tracing::debug!(hook, "already ran for this container");
                continue;
            }
            progress(events, UpPhase::Lifecycle, format!("running {hook}")).await;
            let _busy = self.activity.busy(idle::source::LIFECYCLE);
            let commands: Vec<(Option<String>, Vec<String>)> = match command {
                LifecycleCommand::Shell(shell) => vec![(None, shell_command(shell))],
                LifecycleCommand::Exec(argv) => vec![(None, argv.clone())],
                LifecycleCommand::Parallel(named) => named
                    .iter()
                    .map(|(name, command)| {
                        let argv = match command {
                            SimpleCommand::Shell(shell) => shell_command(shell),
                            SimpleCommand::Exec(argv) => argv.clone(),
                        };
                        (Some(name.clone()), argv)
                    })
                    .filter(|(_, argv)| !argv.is_empty())
                    .collect(),
            };
            let runs = commands.into_iter().map(|(name, argv)| {
                let events = events.clone();
                async move {
                    let code = self.run_hook_command(target, argv, &events).await?;
                    Ok::<_, EngineError>((name, code))
                }
            });
            for result in futures::future::join_all(runs).await {
                let (name, code) = result?;
                if code != 0 {
                    return Err(EngineError::Hook {
                        file: config_file.to_owned(),
                        hook,
                        code,
                        detail: name
                            .map(|name| format!(" (command \"{name}\")"))
                            .unwrap_or_default(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes the hook's marker if it does not hold `stamp` yet; true means the hook should run now.
    /// The same test the reference CLI makes, so a container made by either is treated alike.
    async fn claim_marker(
        &self,
        target: &Target,
        hook: &str,
        stamp: &str,
    ) -> Result<bool, EngineError> {
        if stamp.is_empty() {
            return Ok(false);
        }
        let script = format!(
            "mkdir -p \"$HOME/.devcontainer\" && CONTENT=\"$(cat \"$HOME/.devcontainer/.{hook}Marker\" 2>/dev/null || echo ENOENT)\" \
             && [ \"${{CONTENT:-{stamp}}}\" != '{stamp}' ] && echo '{stamp}' > \"$HOME/.devcontainer/.{hook}Marker\""
        );
        let (code, _) = self
            .exec_collect(target, vec!["/bin/sh".into(), "-c".into(), script])
            .await?;
        Ok(code == 0)
    }

    async fn run_hook_command(
        &self,
        target: &Target,
        command: Vec<String>,
        events: &Events,
    ) -> Result<i64, EngineError> {
        let mut session = self
            .docker
            .exec(
                &target.container.id,
                self.exec_config(target, command, false, false),
            )
            .await?;
        let _ = session.input.shutdown().await;
        while let Some(item) = session.output.next().await {
            let (stream, data) = item?;
            emit(
                events,
                UpEvent::Output {
                    stream,
                    data: data.to_vec(),
                },
            )
            .await;
        }
        self.exit_code(&session.id).await
    }

    /// Runs a command to its end and returns its exit code and standard output.
    pub async fn exec_collect(
        &self,
        target: &Target,
        command: Vec<String>,
    ) -> Result<(i64, Vec<u8>), EngineError> {
        let mut session = self
            .docker
            .exec(
                &target.container.id,
                self.exec_config(target, command, false, false),
            )
            .await?;
        let _ = session.input.shutdown().await;
        let mut stdout = Vec::new();
        while let Some(item) = session.output.next().await {
            let (stream, data) = item?;
            if stream == OutputStream::Stdout {
                stdout.extend_from_slice(&data);
            }
        }
        Ok((self.exit_code(&session.id).await?, stdout))
    }

    /// The exit code of a finished exec; the engine may need a moment after the output ends to record it.
    pub async fn exit_code(&self, exec_id: &str) -> Result<i64, EngineError> {
        let mut delay = std::time::Duration::from_millis(1);
        loop {
            let outcome = self.docker.inspect_exec(exec_id).await?;
            if !outcome.running {
                return Ok(outcome.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_millis(50));
        }
    }

    /// How to run `command` in the container as the workspace's remote user, in the workspace folder,
    /// with `remoteEnv` applied.
    pub fn exec_config(
        &self,
        target: &Target,
        command: Vec<String>,
        tty: bool,
        stdin: bool,
    ) -> ExecConfig {
        ExecConfig {
            command,
            user: Some(target.record.remote_user.clone()),
            working_dir: Some(target.record.workspace_folder.clone()),
            env: remote_env(&target.record.remote_env, &target.container.env),
            tty,
            stdin,
        }
    }

    /// Stops the dev container (if running); its files stay.
    pub async fn stop(&self) -> Result<bool, EngineError> {
        let _slot = self.record.lock().await;
        drop(_slot);
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
        Ok(was_running)
    }

    /// Removes the dev container, the image built for it, and the agent's record.
    pub async fn delete(
        &self,
        local_labels: Option<&BTreeMap<String, String>>,
    ) -> Result<(Vec<String>, Vec<String>), EngineError> {
        let mut slot = self.record.lock().await;
        let mut containers = Vec::new();
        let mut images = Vec::new();
        if let Some(record) = slot.as_ref() {
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

/// The tag of an image built for a workspace, as the reference CLI names it.
fn image_tag(local_folder: &Path) -> String {
    let basename: String = local_folder
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || "._-".contains(character) {
                character
            } else {
                '-'
            }
        })
        .collect();
    let digest = sha2::Sha256::digest(local_folder.to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("vsc-{basename}-{hex}")
}

/// Moves `path` from under `from` to under `to`; paths outside `from` stay as they are.
fn relocate(path: &Path, from: &Path, to: &Path) -> std::path::PathBuf {
    match path.strip_prefix(from) {
        Ok(relative) => to.join(relative),
        Err(_) => path.to_owned(),
    }
}

fn shell_command(shell: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), shell.into()]
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// `remoteEnv` as `KEY=VALUE`, with `${containerEnv:VAR[:default]}` resolved from the container's environment.
/// A `null` value unsets the variable (Docker cannot unset, so it becomes empty for exec).
pub fn remote_env(
    remote_env: &BTreeMap<String, Option<String>>,
    container_env: &[String],
) -> Vec<String> {
    let container: std::collections::HashMap<String, String> = container_env
        .iter()
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    remote_env
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_deref()
                .map(|value| {
                    let mut value = serde_json::Value::String(value.to_owned());
                    // A `${containerEnv}` without a name is left as written rather than failing the command.
                    let _ = devcontainer::substitute_container_env(&mut value, &container);
                    value.as_str().unwrap_or_default().to_owned()
                })
                .unwrap_or_default();
            format!("{key}={value}")
        })
        .collect()
}

/// Parses Docker's `--mount` syntax (`type=bind,source=/a,target=/b,readonly`).
pub fn parse_mount(text: &str) -> Result<Mount, String> {
    let mut kind = "volume";
    let mut source = None;
    let mut target = None;
    let mut read_only = false;
    for part in text.split(',') {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key.trim() {
            "type" => {
                kind = if value == "bind" {
                    "bind"
                } else if value == "volume" {
                    "volume"
                } else {
                    return Err(format!(
                        "{text:?}: mount type {value:?} is not supported; use bind or volume"
                    ));
                }
            }
            "source" | "src" => source = Some(value.to_owned()),
            "target" | "destination" | "dst" => target = Some(value.to_owned()),
            "readonly" | "ro" => read_only = value.is_empty() || value == "true" || value == "1",
            // Consistency only matters to Docker Desktop on macOS; Docker ignores it elsewhere.
            "consistency" | "bind-propagation" | "volume-nocopy" => {}
            other => return Err(format!("{text:?}: mount option {other:?} is not supported")),
        }
    }
    let target = target.ok_or_else(|| format!("{text:?}: a mount needs target="))?;
    Ok(if kind == "bind" {
        Mount::Bind {
            source: source.ok_or_else(|| format!("{text:?}: a bind mount needs source="))?,
            target,
            read_only,
        }
    } else {
        Mount::Volume {
            source: source.filter(|source| !source.is_empty()),
            target,
        }
    })
}

/// Ports `appPort` publishes on the agent machine's loopback.
fn published_ports(config: &DevContainer) -> Vec<(String, String, String)> {
    let Some(app_port) = &config.app_port else {
        return Vec::new();
    };
    app_port
        .as_slice()
        .iter()
        .filter_map(|port| match port {
            PortSpec::Number(number) => Some((
                format!("{number}/tcp"),
                "127.0.0.1".to_owned(),
                number.to_string(),
            )),
            PortSpec::Text(text) => {
                // `[ip:]host:container` as `docker run -p` takes it.
                let parts: Vec<&str> = text.split(':').collect();
                match parts.as_slice() {
                    [host, container] => Some((
                        format!("{container}/tcp"),
                        "127.0.0.1".to_owned(),
                        (*host).to_owned(),
                    )),
                    [ip, host, container] => Some((
                        format!("{container}/tcp"),
                        (*ip).to_owned(),
                        (*host).to_owned(),
                    )),
                    [single] => Some((
                        format!("{single}/tcp"),
                        "127.0.0.1".to_owned(),
                        (*single).to_owned(),
                    )),
                    _ => None,
                }
            }
        })
        .collect()
}

/// The `devcontainer.metadata` label for a container made without a feature build: the configuration's
/// mergeable properties, as the reference CLI writes them.
fn metadata_label(config: &DevContainer) -> String {
    const KEYS: &[&str] = &[
        "remoteUser",
        "containerUser",
        "containerEnv",
        "remoteEnv",
        "mounts",
        "init",
        "privileged",
        "capAdd",
        "securityOpt",
        "onCreateCommand",
        "updateContentCommand",
        "postCreateCommand",
        "postStartCommand",
        "postAttachCommand",
        "waitFor",
        "userEnvProbe",
        "overrideCommand",
        "forwardPorts",
        "portsAttributes",
        "otherPortsAttributes",
        "shutdownAction",
        "updateRemoteUserUID",
        "hostRequirements",
        "customizations",
    ];
    let value = serde_json::to_value(config).unwrap_or_default();
    let entry: serde_json::Map<String, serde_json::Value> = KEYS
        .iter()
        .filter_map(|key| Some(((*key).to_owned(), value.get(*key)?.clone())))
        .collect();
    serde_json::Value::Array(vec![serde_json::Value::Object(entry)]).to_string()
}

/// Properties this agent reads but does not act on yet, as warnings the user sees.
fn unsupported_properties(config: &DevContainer) -> Vec<String> {
    let mut warnings = Vec::new();
    if config
        .features
        .as_ref()
        .is_some_and(|features| !features.is_empty())
    {
        warnings.push(
            "\"features\" are not installed by this agent yet; the container runs without them"
                .to_owned(),
        );
    }
    if config
        .run_args
        .as_ref()
        .is_some_and(|args| !args.is_empty())
    {
        warnings.push("\"runArgs\" are not applied by this agent yet".to_owned());
    }
    warnings
}

#[cfg(test)]
mod tests;
