//! The dev container engine: turns a resolved devcontainer.json into a running container, finds and
//! reuses the one it made before, runs the lifecycle commands, and stops or removes it.
//!
//! It speaks to Docker only through `crate::docker`, and knows nothing of gRPC.
//! Its parts: `run_args` parses `runArgs` and `build.options`, `features` fetches, resolves, orders and builds Features,
//! `metadata` reads and merges the `devcontainer.metadata` label, and `compose` drives Docker Compose configurations.

mod compose;
mod features;
mod metadata;
mod run;
mod run_args;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::Digest;
use skiff::api::{ContainerState, OutputStream, UpEvent, UpPhase, UpResult, UpSpec};
use skiff::devcontainer::{
    self, ConfigKind, DevContainer, LifecycleCommand, PortSpec, SimpleCommand, UserEnvProbe,
};

use self::metadata::HookCommand;
use tokio::sync::{Mutex, mpsc};

use crate::docker::{
    BuildSpec, ContainerInfo, ContainerSpec, Docker, DockerError, ExecConfig, Mount,
};
use crate::idle::{self, Activity};
use crate::procd::client::ProcServers;
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
    /// Held while lifecycle commands run, including those after `waitFor` that outlive their `up`: a second `up` runs
    /// its commands after them, so the reference order holds.
    lifecycle: Arc<Mutex<()>>,
    /// The process server of the dev container, shared with `Exec` and SSH (see `run`).
    servers: Arc<ProcServers>,
}

/// What `up` made ready, and the lifecycle commands it left to run after that (see [`Engine::finish`]).
#[derive(Debug)]
pub struct Up {
    pub result: UpResult,
    pub remaining: Remaining,
}

/// The lifecycle commands after the `waitFor` point (by default `postCreateCommand`, `postStartCommand` and
/// `postAttachCommand`), which run once the dev container is reported ready.
#[derive(Debug)]
pub struct Remaining {
    merged: metadata::Merged,
    target: Target,
    config_file: String,
    hooks: &'static [&'static str],
    _lifecycle: tokio::sync::OwnedMutexGuard<()>,
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
            lifecycle: Arc::new(Mutex::new(())),
            servers: Arc::default(),
        }
    }

    /// The dev container's process server, started on first use.
    pub fn servers(&self) -> &Arc<ProcServers> {
        &self.servers
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

    /// Builds (or finds) and starts the dev container, then runs its lifecycle commands up to the `waitFor` point; the
    /// dev container is ready then, and [`Engine::finish`] runs the rest.
    pub async fn up(&self, spec: UpSpec, events: &Events) -> Result<Up, EngineError> {
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
        let local_folder = Path::new(&spec.local_folder);
        let labels = devcontainer::id_labels(local_folder, Path::new(&spec.config_file));
        let devcontainer_id = devcontainer::devcontainer_id(&labels);
        let config_hash = config_hash(&spec.config_json);

        progress(
            events,
            UpPhase::Resolving,
            "looking for the workspace's dev container",
        )
        .await;
        let (container, entries, created, built_image) = if kind == ConfigKind::Compose {
            let up =
                compose::up(self, &config, &spec, &config_hash, &devcontainer_id, events).await?;
            // A reused container's Feature image is the one its record names.
            let built = up.built_image.or_else(|| {
                record_slot
                    .as_ref()
                    .filter(|record| record.container_id == up.container.id)
                    .and_then(|record| record.built_image.clone())
            });
            (up.container, up.entries, up.created, built)
        } else {
            let run_args = run_args::parse_run_args(config.run_args.as_deref().unwrap_or_default())
                .map_err(|error| config_error(format!("\"runArgs\": {error}")))?;
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
            match existing {
                Some(container) => {
                    warn_if_changed(&container, &config_hash, events).await;
                    let entries = reused_entries(&container, &config, events).await;
                    let built = record_slot
                        .as_ref()
                        .filter(|record| record.container_id == container.id)
                        .and_then(|record| record.built_image.clone())
                        .or_else(|| {
                            container
                                .image
                                .starts_with("vsc-")
                                .then(|| container.image.clone())
                        });
                    (container, entries, false, built)
                }
                None => {
                    let made = self
                        .create(
                            &config,
                            kind,
                            &spec,
                            labels,
                            &run_args,
                            &config_hash,
                            &devcontainer_id,
                            events,
                        )
                        .await?;
                    (made.container, made.entries, true, made.built_image)
                }
            }
        };

        if created {
            // Recorded before anything else can fail, so `delete` finds what this `up` made even when starting it or a
            // lifecycle command fails.
            let early = WorkspaceRecord {
                container_id: container.id.clone(),
                image: container.image.clone(),
                built_image: built_image.clone(),
                workspace_folder: config.effective_workspace_folder(local_folder),
                remote_user: "root".to_owned(),
                ..Default::default()
            };
            self.state.save_record(&early)?;
            *record_slot = Some(early);
        }
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

        let merged = metadata::merge(&substitute_entries(
            &entries,
            &devcontainer_id,
            Some(&container.env),
        ));
        let remote_user = merged
            .remote_user
            .clone()
            .or_else(|| merged.container_user.clone())
            .or_else(|| (!container.user.is_empty()).then(|| container.user.clone()))
            .unwrap_or_else(|| "root".to_owned());
        let mut record = WorkspaceRecord {
            container_id: container.id.clone(),
            image: container.image.clone(),
            built_image,
            workspace_folder: config.effective_workspace_folder(local_folder),
            remote_user: remote_user.clone(),
            remote_env: merged.remote_env.clone(),
            shutdown_action: merged.shutdown_action.clone(),
        };
        let probe = merged.user_env_probe.unwrap_or_default();
        if probe != UserEnvProbe::None {
            let probed = self
                .probe_user_env(&container, &remote_user, probe, events)
                .await;
            // The probed environment is the base; remoteEnv overrides it, as in the reference CLI.
            let mut remote_env: BTreeMap<String, Option<String>> = probed
                .into_iter()
                .map(|(key, value)| (key, Some(value)))
                .collect();
            remote_env.extend(merged.remote_env.clone());
            record.remote_env = remote_env;
        }
        self.state.save_record(&record)?;
        *record_slot = Some(record.clone());
        drop(record_slot);

        let target = Target {
            container: container.clone(),
            record: record.clone(),
        };
        let lifecycle = Arc::clone(&self.lifecycle).lock_owned().await;
        let (now, later) = split_at_wait_for(merged.wait_for.unwrap_or_default());
        self.run_lifecycle(&merged, &target, &spec.config_file, now, events)
            .await?;

        Ok(Up {
            result: UpResult {
                container_id: container.id,
                created,
                workspace_folder: record.workspace_folder,
                remote_user: record.remote_user,
                image: record.image,
            },
            remaining: Remaining {
                merged,
                target,
                config_file: spec.config_file,
                hooks: later,
                _lifecycle: lifecycle,
            },
        })
    }

    /// Runs the lifecycle commands `up` left for after the dev container is ready. They run to their end whether or not
    /// anyone still reads `events`, as the spec's background commands do.
    pub async fn finish(&self, remaining: Remaining, events: &Events) -> Result<(), EngineError> {
        self.run_lifecycle(
            &remaining.merged,
            &remaining.target,
            &remaining.config_file,
            remaining.hooks,
            events,
        )
        .await
    }

    /// Resolves the config's Features (fetching and caching what is not local), in install order.
    async fn resolve_features(
        &self,
        config: &DevContainer,
        spec: &UpSpec,
        events: &Events,
    ) -> Result<Vec<features::ResolvedFeature>, EngineError> {
        let config_file = self.agent_config_file(spec);
        let feature_cache = self.state.path().join("features");
        let sources = features::Sources {
            config_folder: config_file.parent().unwrap_or(Path::new("/")),
            workspace: Path::new(&spec.files_folder),
            cache: &feature_cache,
            events: Some(events),
            limits: features::Limits::DEFAULT,
        };
        features::resolve(config, &sources)
            .await
            .map_err(|error| EngineError::Config {
                file: spec.config_file.clone(),
                message: format!("\"features\": {error}"),
            })
    }

    /// Builds the Feature layer on `layer.base_image` as `tag`, labelled with the merged metadata `label`.
    async fn install_features(
        &self,
        layer: &features::Layer<'_>,
        label: &str,
        tag: &str,
        files_folder: &Path,
        events: &Events,
    ) -> Result<(), EngineError> {
        let archive = features::layer_archive(layer)?;
        let build = BuildSpec {
            context: files_folder.to_owned(),
            dockerfile: files_folder.join(features::LAYER_DOCKERFILE),
            tag: tag.to_owned(),
            args: BTreeMap::new(),
            target: None,
            cache_from: Vec::new(),
            labels: BTreeMap::from([(devcontainer::LABEL_METADATA.to_owned(), label.to_owned())]),
            no_cache: false,
        };
        let names: Vec<&str> = layer
            .features
            .iter()
            .map(|feature| feature.user_id.as_str())
            .collect();
        progress(
            events,
            UpPhase::Building,
            format!("installing Features {} into image {tag}", names.join(", ")),
        )
        .await;
        self.build(
            archive,
            features::LAYER_DOCKERFILE,
            &build,
            &Default::default(),
            events,
        )
        .await
    }

    /// Makes the image (building the Dockerfile and the Feature layer as needed) and the container.
    #[expect(
        clippy::too_many_arguments,
        reason = "the pieces of one up, passed once"
    )]
    async fn create(
        &self,
        config: &DevContainer,
        kind: ConfigKind,
        spec: &UpSpec,
        mut labels: BTreeMap<String, String>,
        run_args: &run_args::RunArgs,
        config_hash: &str,
        devcontainer_id: &str,
        events: &Events,
    ) -> Result<Made, EngineError> {
        let local_folder = Path::new(&spec.local_folder);
        let files_folder = Path::new(&spec.files_folder);
        let config_error = |message: String| EngineError::Config {
            file: spec.config_file.clone(),
            message,
        };
        // Features are resolved before anything is built, so a bad Feature leaves no image behind.
        let features = self.resolve_features(config, spec, events).await?;
        let tag = image_tag(local_folder);
        let (base_image, mut built_image) = match kind {
            ConfigKind::Image => {
                let image = config.image.clone().unwrap_or_default();
                self.ensure_image(&image, events).await?;
                (image, None)
            }
            _ => {
                let build = self.build_spec(config, spec, files_folder, &tag)?;
                let options = run_args::parse_build_options(
                    config
                        .build
                        .as_ref()
                        .and_then(|build| build.options.as_deref())
                        .unwrap_or_default(),
                )
                .map_err(|error| config_error(format!("\"build.options\": {error}")))?;
                let mut build = build;
                build.args.extend(options.args.clone());
                build.labels.extend(options.labels.clone());
                if build.target.is_none() {
                    build.target = options.target.clone();
                }
                build.cache_from.extend(options.cache_from.clone());
                build.no_cache |= options.no_cache;
                let (archive, dockerfile) = {
                    let context = build.context.clone();
                    let dockerfile = build.dockerfile.clone();
                    tokio::task::spawn_blocking(move || {
                        crate::docker::pack_build_context(&context, &dockerfile)
                    })
                    .await
                    .map_err(|error| EngineError::State(std::io::Error::other(error)))??
                };
                progress(events, UpPhase::Building, format!("building image {tag}")).await;
                self.build(archive, &dockerfile, &build, &options.extras, events)
                    .await?;
                (tag.clone(), Some(tag.clone()))
            }
        };
        let base_info = self
            .docker
            .inspect_image(&base_image)
            .await?
            .ok_or_else(|| {
                config_error(format!(
                    "image {base_image} is not on this machine after pulling or building it"
                ))
            })?;
        let mut entries = match metadata::entries_from_label(
            base_info
                .labels
                .get(devcontainer::LABEL_METADATA)
                .map(String::as_str),
        ) {
            Ok(entries) => entries,
            Err(problem) => {
                emit(
                    events,
                    UpEvent::Warning(format!("image {base_image}: {problem}; ignoring it")),
                )
                .await;
                Vec::new()
            }
        };
        for feature in &features {
            entries.push(metadata::feature_entry(&feature.user_id, &feature.manifest));
        }
        entries.push(metadata::config_entry(config));
        let merged = metadata::merge(&substitute_entries(&entries, devcontainer_id, None));
        let container_user = merged
            .container_user
            .clone()
            .or_else(|| run_args.user.clone())
            .unwrap_or_else(|| {
                if base_info.user.is_empty() {
                    "root".to_owned()
                } else {
                    base_info.user.clone()
                }
            });
        let remote_user = merged
            .remote_user
            .clone()
            .unwrap_or_else(|| container_user.clone());
        let label = metadata::label_value(&entries);

        let mut image = base_image.clone();
        if !features.is_empty() {
            let feature_tag = match kind {
                ConfigKind::Image => format!("{tag}-features"),
                _ => tag.clone(),
            };
            let layer = features::Layer {
                base_image: &base_image,
                image_user: &base_info.user,
                container_user: &container_user,
                remote_user: &remote_user,
                features: &features,
            };
            self.install_features(&layer, &label, &feature_tag, files_folder, events)
                .await?;
            image = feature_tag.clone();
            built_image = Some(feature_tag);
        }

        if merged.update_remote_user_uid != Some(false)
            && let Some((uid, gid)) = owner_of(files_folder)
            && uid != 0
            && remote_user != "root"
            && !remote_user.bytes().all(|byte| byte.is_ascii_digit())
        {
            let uid_tag = format!("{}-uid", built_image.clone().unwrap_or_else(|| tag.clone()));
            let build = BuildSpec {
                context: files_folder.to_owned(),
                dockerfile: files_folder.join(UPDATE_UID_DOCKERFILE_NAME),
                tag: uid_tag.clone(),
                args: BTreeMap::from([
                    ("BASE_IMAGE".to_owned(), image.clone()),
                    ("REMOTE_USER".to_owned(), remote_user.clone()),
                    ("NEW_UID".to_owned(), uid.to_string()),
                    ("NEW_GID".to_owned(), gid.to_string()),
                    (
                        "IMAGE_USER".to_owned(),
                        if base_info.user.is_empty() {
                            "root".to_owned()
                        } else {
                            base_info.user.clone()
                        },
                    ),
                ]),
                target: None,
                cache_from: Vec::new(),
                labels: BTreeMap::new(),
                no_cache: false,
            };
            progress(
                events,
                UpPhase::Building,
                format!("giving user {remote_user} the workspace owner's UID:GID {uid}:{gid} (updateRemoteUserUID)"),
            )
            .await;
            let archive = single_file_archive(UPDATE_UID_DOCKERFILE_NAME, UPDATE_UID_DOCKERFILE)?;
            self.build(
                archive,
                UPDATE_UID_DOCKERFILE_NAME,
                &build,
                &Default::default(),
                events,
            )
            .await?;
            // The `-uid` image replaces the one it extends as what `delete` removes: untagging that one leaves its
            // layers as the `-uid` image's parent, so they go when it goes.
            if let Some(previous) = &built_image {
                self.docker.remove_image(previous).await?;
            }
            image = uid_tag.clone();
            built_image = Some(uid_tag);
        }

        let (workspace_mount, _) = self.workspace_mount(config, spec)?;
        let mut mounts: Vec<Mount> = workspace_mount.into_iter().collect();
        for mount in &merged.mounts {
            mounts.push(
                parse_mount(&mount.to_mount_spec())
                    .map_err(|message| config_error(format!("\"mounts\": {message}")))?,
            );
        }
        for mount in &run_args.mounts {
            mounts.push(match mount {
                Mount::Bind {
                    source,
                    target,
                    read_only,
                } => Mount::Bind {
                    source: if source.starts_with('.') {
                        files_folder.join(source).to_string_lossy().into_owned()
                    } else {
                        relocate(Path::new(source), local_folder, files_folder)
                            .to_string_lossy()
                            .into_owned()
                    },
                    target: target.clone(),
                    read_only: *read_only,
                },
                volume => volume.clone(),
            });
        }

        let mut env: Vec<String> = merged
            .container_env
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        for file in &run_args.env_files {
            let path = files_folder.join(file);
            let text = std::fs::read_to_string(&path).map_err(|error| {
                config_error(format!(
                    "\"runArgs\": --env-file {file}: cannot read {}: {error}",
                    path.display()
                ))
            })?;
            env.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty() && !line.starts_with('#'))
                    .map(str::to_owned),
            );
        }
        env.extend(run_args.env.iter().cloned());

        labels.insert(LABEL_WORKSPACE.into(), self.workspace.clone());
        labels.insert(devcontainer::LABEL_METADATA.into(), label);
        labels.insert(LABEL_CONFIG_HASH.into(), config_hash.to_owned());
        labels.extend(run_args.labels.iter().cloned());
        let override_command = merged.override_command.unwrap_or(true);
        let (entrypoint, cmd) = if override_command || !merged.entrypoints.is_empty() {
            let mut cmd = vec![
                "-c".to_owned(),
                keep_alive_script(&merged.entrypoints),
                "-".to_owned(),
            ];
            if !override_command {
                let (image_entrypoint, image_cmd) = self.docker.image_command(&image).await?;
                cmd.extend(image_entrypoint);
                cmd.extend(image_cmd);
            }
            (Some(vec!["/bin/sh".to_owned()]), Some(cmd))
        } else if let Some(entrypoint) = &run_args.entrypoint {
            (Some(vec![entrypoint.clone()]), None)
        } else {
            (None, None)
        };
        let mut cap_add = merged.cap_add.clone();
        cap_add.extend(run_args.cap_add.iter().cloned());
        let mut security_opt = merged.security_opt.clone();
        security_opt.extend(run_args.security_opt.iter().cloned());
        let mut published_ports = published_ports(config);
        published_ports.extend(run_args.published_ports.iter().cloned());
        let container_spec = ContainerSpec {
            name: run_args.name.clone(),
            image: image.clone(),
            labels,
            env,
            user: merged
                .container_user
                .clone()
                .or_else(|| run_args.user.clone()),
            entrypoint,
            cmd,
            mounts,
            init: merged.init || run_args.init,
            privileged: merged.privileged || run_args.privileged,
            cap_add,
            security_opt,
            published_ports,
        };
        progress(
            events,
            UpPhase::Creating,
            format!("creating a container from {image}"),
        )
        .await;
        let id = self
            .docker
            .create_container_ext(container_spec, run_args.host.clone())
            .await?;
        let container =
            self.docker
                .inspect_container(&id)
                .await?
                .ok_or_else(|| EngineError::NoContainer {
                    workspace: self.workspace.clone(),
                })?;
        Ok(Made {
            container,
            entries,
            built_image,
        })
    }

    /// The config file's path on this machine (the client names it by its own path).
    fn agent_config_file(&self, spec: &UpSpec) -> std::path::PathBuf {
        relocate(
            Path::new(&spec.config_file),
            Path::new(&spec.local_folder),
            Path::new(&spec.files_folder),
        )
    }

    /// Pulls `image` unless it is on the machine.
    async fn ensure_image(&self, image: &str, events: &Events) -> Result<(), EngineError> {
        if self.docker.inspect_image(image).await?.is_some() {
            return Ok(());
        }
        progress(events, UpPhase::Pulling, format!("pulling image {image}")).await;
        let mut lines = Vec::new();
        self.docker
            .pull_image(image, |line| lines.push(line))
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
        Ok(())
    }

    /// Builds an image from a context archive, streaming the build's output as events.
    async fn build(
        &self,
        archive: Vec<u8>,
        dockerfile: &str,
        build: &BuildSpec,
        extras: &crate::docker::BuildExtras,
        events: &Events,
    ) -> Result<(), EngineError> {
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
            .build_image_archive(archive, dockerfile, build, extras, |line| {
                let _ = lines.send(line);
            })
            .await;
        drop(lines);
        let _ = forwarding.await;
        built?;
        Ok(())
    }

    /// Probes the remote user's shell environment the way the reference CLI does (`userEnvProbe`): runs the user's shell as a
    /// login and/or interactive shell and reads its environment. A probe that fails or takes over 10 s gives nothing, with a
    /// warning.
    async fn probe_user_env(
        &self,
        container: &ContainerInfo,
        user: &str,
        probe: UserEnvProbe,
        events: &Events,
    ) -> BTreeMap<String, String> {
        let flags = match probe {
            UserEnvProbe::None => return BTreeMap::new(),
            UserEnvProbe::LoginShell => "-lc",
            UserEnvProbe::InteractiveShell => "-ic",
            UserEnvProbe::LoginInteractiveShell => "-lic",
        };
        let script = format!(
            "u=\"$(id -un 2>/dev/null)\"; s=\"$SHELL\"; \
             [ -n \"$s\" ] || s=\"$( (getent passwd \"$u\" || grep \"^$u:\" /etc/passwd) 2>/dev/null | head -n 1 | cut -d: -f7)\"; \
             [ -x \"$s\" ] || s=/bin/sh; \
             exec \"$s\" {flags} 'printf %s {PROBE_MARK}; cat /proc/self/environ; printf %s {PROBE_MARK}'"
        );
        let config = ExecConfig {
            command: vec!["/bin/sh".into(), "-c".into(), script],
            user: Some(user.to_owned()),
            working_dir: None,
            env: Vec::new(),
            tty: false,
            stdin: false,
        };
        let run = self.run_to_end(container, config, run::Sink::Collect);
        let output = match tokio::time::timeout(std::time::Duration::from_secs(10), run).await {
            Ok(Ok((_, output))) => output,
            Ok(Err(error)) => {
                emit(
                    events,
                    UpEvent::Warning(format!(
                        "userEnvProbe: probing the environment of {user} failed: {error}"
                    )),
                )
                .await;
                return BTreeMap::new();
            }
            Err(_) => {
                emit(events, UpEvent::Warning(format!(
                    "userEnvProbe: the shell of {user} did not answer within 10 s; commands run without its environment"
                )))
                .await;
                return BTreeMap::new();
            }
        };
        parse_probe(&output)
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

    /// Runs the in-container lifecycle `hooks` (a part of [`metadata::HOOKS`]) in the reference order, each at most as
    /// often as the reference does: per hook, the commands of the base image, then of the Features in install order, then
    /// of devcontainer.json.
    async fn run_lifecycle(
        &self,
        merged: &metadata::Merged,
        target: &Target,
        config_file: &str,
        hooks: &[&'static str],
        events: &Events,
    ) -> Result<(), EngineError> {
        let created = target.container.created.clone();
        let started = target.container.started_at.clone();
        for &hook in hooks {
            let marker = match hook {
                "postStartCommand" => Some(started.as_str()),
                "postAttachCommand" => None,
                _ => Some(created.as_str()),
            };
            let commands = merged.hook(hook);
            if commands.is_empty() {
                continue;
            }
            if let Some(marker) = marker
                && !self.claim_marker(target, hook, marker).await?
            {
                tracing::debug!(hook, "already ran for this container");
                continue;
            }
            let _busy = self.activity.busy(idle::source::LIFECYCLE);
            for HookCommand { origin, command } in commands {
                let from = if origin == "devcontainer.json" {
                    String::new()
                } else {
                    format!(" from Feature {origin}")
                };
                progress(events, UpPhase::Lifecycle, format!("running {hook}{from}")).await;
                let runs: Vec<(Option<String>, Vec<String>)> = match command {
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
                let runs = runs.into_iter().map(|(name, argv)| {
                    let events = events.clone();
                    async move {
                        let code = self.run_hook_command(target, argv, &events).await?;
                        Ok::<_, EngineError>((name, code))
                    }
                });
                for result in futures::future::join_all(runs).await {
                    let (name, code) = result?;
                    if code != 0 {
                        let mut detail = name
                            .map(|name| format!(" (command \"{name}\")"))
                            .unwrap_or_default();
                        detail.push_str(&from);
                        return Err(EngineError::Hook {
                            file: config_file.to_owned(),
                            hook,
                            code,
                            detail,
                        });
                    }
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
        let config = self.exec_config(target, command, false, false);
        let (code, _) = self
            .run_to_end(&target.container, config, run::Sink::Events(events))
            .await?;
        Ok(code)
    }

    /// Runs a command to its end as the workspace's remote user and returns its exit code and standard output.
    pub async fn exec_collect(
        &self,
        target: &Target,
        command: Vec<String>,
    ) -> Result<(i64, Vec<u8>), EngineError> {
        let config = self.exec_config(target, command, false, false);
        self.run_to_end(&target.container, config, run::Sink::Collect)
            .await
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
        // A compose configuration's other services stop with it (the reference default `shutdownAction: stopCompose`).
        if let Some(project) = target.container.labels.get(compose::LABEL_PROJECT) {
            let labels = BTreeMap::from([(compose::LABEL_PROJECT.to_owned(), project.clone())]);
            for id in self.docker.find_containers_ext(&labels).await? {
                self.docker.stop_container(&id, 10).await?;
            }
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

/// The label holding a hash of the resolved devcontainer.json a container was made from, to tell when it changed.
pub const LABEL_CONFIG_HASH: &str = "skiff.config_hash";

/// What `create` made.
#[derive(Debug)]
struct Made {
    container: ContainerInfo,
    /// The metadata entries written into the container's label.
    entries: Vec<metadata::Entry>,
    built_image: Option<String>,
}

/// A short hash of the resolved config the client sent.
fn config_hash(config_json: &str) -> String {
    // Hash the value, not the text, so formatting never counts as a change.
    let canonical = serde_json::from_str::<serde_json::Value>(config_json)
        .map(|value| value.to_string())
        .unwrap_or_else(|_| config_json.to_owned());
    let digest = sha2::Sha256::digest(canonical.as_bytes());
    digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Warns when the container was made from another version of devcontainer.json.
async fn warn_if_changed(container: &ContainerInfo, config_hash: &str, events: &Events) {
    match container.labels.get(LABEL_CONFIG_HASH) {
        Some(made_from) if made_from != config_hash => {
            emit(
                events,
                UpEvent::Warning(
                    "devcontainer.json changed since this dev container was made; only remoteUser, remoteEnv and \
                     userEnvProbe apply to it now. Run `skiff up --rebuild` to make it afresh with every change"
                        .to_owned(),
                ),
            )
            .await;
        }
        _ => {}
    }
}

/// The metadata of an existing container: its label's entries, then the properties of devcontainer.json that apply
/// without a rebuild (as the reference CLI does when it reuses a container).
async fn reused_entries(
    container: &ContainerInfo,
    config: &DevContainer,
    events: &Events,
) -> Vec<metadata::Entry> {
    let mut entries = match metadata::entries_from_label(
        container
            .labels
            .get(devcontainer::LABEL_METADATA)
            .map(String::as_str),
    ) {
        Ok(entries) => entries,
        Err(problem) => {
            emit(
                events,
                UpEvent::Warning(format!(
                    "container {}: {problem}; ignoring it",
                    short(&container.id)
                )),
            )
            .await;
            Vec::new()
        }
    };
    entries.push(metadata::updatable_entry(config));
    entries
}

/// Substitutes `${devcontainerId}` and, once the container exists, `${containerEnv:VAR}` in metadata entries.
fn substitute_entries(
    entries: &[metadata::Entry],
    devcontainer_id: &str,
    container_env: Option<&[String]>,
) -> Vec<metadata::Entry> {
    let mut value = serde_json::Value::Array(
        entries
            .iter()
            .cloned()
            .map(serde_json::Value::Object)
            .collect(),
    );
    devcontainer::substitute_devcontainer_id(&mut value, devcontainer_id);
    if let Some(container_env) = container_env {
        let env: std::collections::HashMap<String, String> = container_env
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        // A `${containerEnv}` without a name stays as written rather than failing `up`.
        let _ = devcontainer::substitute_container_env(&mut value, &env);
    }
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|item| match item {
                serde_json::Value::Object(entry) => Some(entry),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The keep-alive the reference CLI runs: it exits on SIGTERM at once, runs the Features' entrypoints, then the image's
/// command if one follows, else sleeps.
fn keep_alive_script(entrypoints: &[String]) -> String {
    let mut script = String::from("echo Container started\ntrap \"exit 0\" 15\n");
    for entrypoint in entrypoints {
        script.push_str(entrypoint);
        script.push('\n');
    }
    script.push_str("exec \"$@\"\nwhile sleep 1 & wait $!; do :; done");
    script
}

/// The owner (UID, GID) of the workspace's files on this machine: the IDs `updateRemoteUserUID` gives the remote user, so
/// that the bind-mounted files belong to it.
fn owner_of(folder: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(folder).ok()?;
    Some((metadata.uid(), metadata.gid()))
}

/// The Dockerfile of the `-uid` image, by name in its context.
const UPDATE_UID_DOCKERFILE_NAME: &str = "Dockerfile.skiff-update-uid";

/// Gives `REMOTE_USER` the UID `NEW_UID` and GID `NEW_GID`, as the reference CLI's `updateUID.Dockerfile` does: nothing
/// when the user is missing or already has them, nothing when another user has the UID, the old GID kept when another
/// group has the new one, and the home folder handed over.
const UPDATE_UID_DOCKERFILE: &str = r#"ARG BASE_IMAGE
FROM $BASE_IMAGE
USER root
ARG REMOTE_USER
ARG NEW_UID
ARG NEW_GID
RUN set -e; \
    line="$(grep "^${REMOTE_USER}:" /etc/passwd || true)"; \
    if [ -z "$line" ]; then echo "skiff: user ${REMOTE_USER} is not in /etc/passwd; nothing to update"; exit 0; fi; \
    old_uid="$(echo "$line" | cut -d: -f3)"; old_gid="$(echo "$line" | cut -d: -f4)"; home="$(echo "$line" | cut -d: -f6)"; \
    uid_owner="$(awk -F: -v id="$NEW_UID" '$3 == id { print $1; exit }' /etc/passwd)"; \
    gid_owner="$(awk -F: -v id="$NEW_GID" '$3 == id { print $1; exit }' /etc/group)"; \
    if [ "$old_uid" = "$NEW_UID" ] && [ "$old_gid" = "$NEW_GID" ]; then echo "skiff: ${REMOTE_USER} already has ${NEW_UID}:${NEW_GID}"; exit 0; fi; \
    if [ "$old_uid" != "$NEW_UID" ] && [ -n "$uid_owner" ]; then echo "skiff: UID ${NEW_UID} belongs to ${uid_owner}; ${REMOTE_USER} keeps ${old_uid}"; exit 0; fi; \
    gid="$NEW_GID"; \
    if [ "$old_gid" != "$NEW_GID" ] && [ -n "$gid_owner" ]; then echo "skiff: GID ${NEW_GID} belongs to group ${gid_owner}; keeping ${old_gid}"; gid="$old_gid"; fi; \
    echo "skiff: ${REMOTE_USER} ${old_uid}:${old_gid} -> ${NEW_UID}:${gid}"; \
    awk -F: -v OFS=: -v user="$REMOTE_USER" -v uid="$NEW_UID" -v gid="$gid" '$1 == user { $3 = uid; $4 = gid } { print }' /etc/passwd > /tmp/passwd.skiff && cat /tmp/passwd.skiff > /etc/passwd; \
    if [ "$old_gid" != "$gid" ]; then awk -F: -v OFS=: -v old="$old_gid" -v gid="$gid" '$3 == old { $3 = gid } { print }' /etc/group > /tmp/group.skiff && cat /tmp/group.skiff > /etc/group; fi; \
    rm -f /tmp/passwd.skiff /tmp/group.skiff; \
    if [ -d "$home" ]; then chown -R "${NEW_UID}:${gid}" "$home"; fi
ARG IMAGE_USER
USER $IMAGE_USER
"#;

/// A build context holding one file.
fn single_file_archive(name: &str, contents: &str) -> Result<Vec<u8>, EngineError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, contents.as_bytes())?;
    Ok(builder.into_inner()?)
}

/// Marks the start and end of the probed environment in the probe's output, so shell start-up noise is ignored.
const PROBE_MARK: &str = "SKIFF_ENV_PROBE_2f7c1a";

/// Reads the environment between the probe's marks (`NAME=value` entries separated by NUL); `PWD` is dropped, as in the
/// reference CLI.
fn parse_probe(output: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(output);
    let Some(start) = text.find(PROBE_MARK) else {
        return BTreeMap::new();
    };
    let rest = &text[start + PROBE_MARK.len()..];
    let Some(end) = rest.find(PROBE_MARK) else {
        return BTreeMap::new();
    };
    rest[..end]
        .split('\0')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| !key.is_empty() && *key != "PWD")
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The `waitFor` value a hook is.
/// The in-container hooks `up` waits for (up to and including `waitFor`) and those that run after the dev container is
/// ready. `initializeCommand` runs on the client's machine before `up`, so waiting for it waits for no in-container hook.
fn split_at_wait_for(
    wait_for: devcontainer::WaitFor,
) -> (&'static [&'static str], &'static [&'static str]) {
    let waited = match wait_for {
        devcontainer::WaitFor::InitializeCommand => 0,
        devcontainer::WaitFor::OnCreateCommand => 1,
        devcontainer::WaitFor::UpdateContentCommand => 2,
        devcontainer::WaitFor::PostCreateCommand => 3,
        devcontainer::WaitFor::PostStartCommand => 4,
    };
    let hooks: &'static [&'static str] = &metadata::HOOKS;
    hooks.split_at(waited)
}

#[cfg(test)]
mod tests;
