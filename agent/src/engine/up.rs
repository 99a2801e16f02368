//! `up`: finds or makes the dev container, starts it, probes the user's environment, records it, and runs the
//! lifecycle commands up to `waitFor`; `finish` runs the rest. Also the config hash that tells when
//! devcontainer.json changed since a container was made, and the metadata of a reused container.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::Digest;
use skiff::api::{ContainerState, OutputStream, UpEvent, UpPhase, UpResult, UpSpec};
use skiff::devcontainer::{self, ConfigKind, DevContainer, UserEnvProbe};

use super::lifecycle::split_at_wait_for;
use super::{
    ContainerInfo, Engine, EngineError, Events, Target, compose, emit, label_entries, metadata,
    progress, run_args, short,
};
use crate::idle;
use crate::state::WorkspaceRecord;

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
    /// Builds (or finds) and starts the dev container, then runs its lifecycle commands up to the `waitFor` point; the
    /// dev container is ready then, and [`Engine::finish`] runs the rest.
    pub async fn up(&self, spec: UpSpec, events: &Events) -> Result<Up, EngineError> {
        let _busy = self.activity.busy(idle::source::UP);
        let mut record_slot = self.record.lock().await;
        let mut unanswered = Vec::new();
        let logins = crate::registry_helpers::with_machine_logins(
            &spec.registry_logins,
            &self.registry_helpers,
            |line| unanswered.push(line),
        )
        .await;
        for line in unanswered {
            tracing::warn!("{line}");
            emit(
                events,
                UpEvent::Output {
                    stream: OutputStream::Stderr,
                    data: format!("warning: {line}\n").into_bytes(),
                },
            )
            .await;
        }
        let _logins = self.lend_logins(&logins);
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

        self.saw_running(&container.id);

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
}

impl Engine {
    /// Starts again the dev container this agent saw running and that stopped without the agent stopping it (a restart
    /// of Docker stops every container), and runs its `postStartCommand` for the new start as `up` would, from the
    /// container's metadata label; the process server is placed again on the first command.
    pub(super) async fn start_again(&self, target: Target) -> Result<Target, EngineError> {
        tracing::info!(
            container = short(&target.container.id),
            "starting the dev container again: it stopped without the agent stopping it"
        );
        Ok(self.start_stopped(target).await?.0)
    }

    /// Makes sure the dev container runs, for a command that connects to a stopped workspace: one stopped by
    /// `skiff stop`, by its idle timeout, or by a restart of its machine or of Docker is started as `skiff up` of a
    /// stopped workspace starts it (a compose configuration's other services first), and its `postStartCommand`
    /// runs. Starting what was made before, not reading the configuration again, is what the command asked for:
    /// the dev container it left. `Ok(false)` when it was running already (or another command started it first).
    pub async fn start_if_stopped(&self) -> Result<bool, EngineError> {
        // Known running (seen running, not stopped by this agent since): answered without asking Docker, so a
        // command that connects pays nothing for the question. Should Docker have stopped it meanwhile, the
        // command's own `running` starts it again.
        let known = self
            .record
            .lock()
            .await
            .as_ref()
            .is_some_and(|record| self.was_seen_running(&record.container_id));
        if known {
            return Ok(false);
        }
        let _busy = self.activity.busy(idle::source::UP);
        let target = self
            .current()
            .await?
            .ok_or_else(|| EngineError::NoContainer {
                workspace: self.workspace.clone(),
            })?;
        if target.container.state == ContainerState::Running {
            self.saw_running(&target.container.id);
            return Ok(false);
        }
        tracing::info!(
            container = short(&target.container.id),
            "starting the stopped dev container for a command that connected"
        );
        let (target, started) = self.start_stopped(target).await?;
        self.saw_running(&target.container.id);
        Ok(started)
    }

    /// Starts `target`'s stopped container (with a compose project's other containers first) and runs its
    /// `postStartCommand` from the container's metadata label, as `up` would for the new start; the process server
    /// is placed again on the first command. The bool is false when another call had started it meanwhile.
    async fn start_stopped(&self, target: Target) -> Result<(Target, bool), EngineError> {
        // Held to the end of `postStartCommand`: a second caller waits here, then finds the container running.
        let _starting = self.starting.lock().await;
        let record_slot = self.record.lock().await;
        let not_running = |state| EngineError::NotRunning {
            workspace: self.workspace.clone(),
            state,
        };
        let container = self
            .docker
            .inspect_container(&target.container.id)
            .await?
            .ok_or_else(|| EngineError::NoContainer {
                workspace: self.workspace.clone(),
            })?;
        if container.state == ContainerState::Running {
            // Another call started it (and ran its `postStartCommand`) while this one waited.
            return Ok((
                Target {
                    container,
                    record: target.record,
                },
                false,
            ));
        }
        if !matches!(
            container.state,
            ContainerState::Stopped | ContainerState::Created
        ) {
            return Err(not_running(container.state));
        }
        // A compose configuration's other services (a database, say) come up before the dev container that uses
        // them, as `docker compose start` brings them.
        if let Some(project) = container.labels.get(compose::LABEL_PROJECT) {
            let labels = BTreeMap::from([(compose::LABEL_PROJECT.to_owned(), project.clone())]);
            for id in self.docker.find_containers_ext(&labels).await? {
                if id == container.id {
                    continue;
                }
                let service = self.docker.inspect_container(&id).await?;
                if service.is_some_and(|service| service.state != ContainerState::Running) {
                    self.docker.start_container(&id).await?;
                }
            }
        }
        self.docker.start_container(&container.id).await?;
        let container = self
            .docker
            .inspect_container(&container.id)
            .await?
            .ok_or_else(|| EngineError::NoContainer {
                workspace: self.workspace.clone(),
            })?;
        drop(record_slot);
        if container.state != ContainerState::Running {
            return Err(not_running(container.state));
        }
        let target = Target {
            container,
            record: target.record,
        };

        // Nobody reads these events: the command that asked for the container only wants it running.
        let (events, _) = tokio::sync::mpsc::channel(1);
        let labels = &target.container.labels;
        let entries = label_entries(
            labels,
            &format!("container {}", short(&target.container.id)),
            &events,
        )
        .await;
        let id_labels: BTreeMap<String, String> = labels
            .iter()
            .filter(|(key, _)| {
                [
                    devcontainer::LABEL_LOCAL_FOLDER,
                    devcontainer::LABEL_CONFIG_FILE,
                ]
                .contains(&key.as_str())
            })
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let merged = metadata::merge(&substitute_entries(
            &entries,
            &devcontainer::devcontainer_id(&id_labels),
            Some(&target.container.env),
        ));
        let config_file = labels
            .get(devcontainer::LABEL_CONFIG_FILE)
            .cloned()
            .unwrap_or_default();
        let _lifecycle = self.lifecycle.lock().await;
        if let Err(error) = self
            .run_lifecycle(
                &merged,
                &target,
                &config_file,
                &["postStartCommand"],
                &events,
            )
            .await
        {
            tracing::warn!("postStartCommand of the dev container started again: {error}");
        }
        Ok((target, true))
    }
}

/// The label holding a hash of the resolved devcontainer.json a container was made from, to tell when it changed.
pub const LABEL_CONFIG_HASH: &str = "skiff.config_hash";

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
pub(super) async fn warn_if_changed(container: &ContainerInfo, config_hash: &str, events: &Events) {
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
pub(super) async fn reused_entries(
    container: &ContainerInfo,
    config: &DevContainer,
    events: &Events,
) -> Vec<metadata::Entry> {
    let mut entries = label_entries(
        &container.labels,
        &format!("container {}", short(&container.id)),
        events,
    )
    .await;
    entries.push(metadata::updatable_entry(config));
    entries
}

/// Substitutes `${devcontainerId}` and, once the container exists, `${containerEnv:VAR}` in metadata entries.
pub(super) fn substitute_entries(
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
