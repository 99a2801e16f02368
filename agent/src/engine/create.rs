//! Making the dev container: the image (Dockerfile, Features, `-uid`), its metadata label, mounts, environment,
//! keep-alive command and published ports, then the container itself.

use std::collections::BTreeMap;
use std::path::Path;

use skiff::api::{UpPhase, UpSpec};
use skiff::devcontainer::{self, ConfigKind, DevContainer, PortSpec};

use super::images::{
    UPDATE_UID_DOCKERFILE, UPDATE_UID_DOCKERFILE_NAME, image_tag, single_file_archive,
};
use super::mounts::{parse_mount, relocate};
use super::up::{LABEL_CONFIG_HASH, substitute_entries};
use super::{
    BuildSpec, ContainerInfo, ContainerSpec, Engine, EngineError, Events, LABEL_WORKSPACE, Mount,
    features, label_entries, metadata, progress, run_args,
};

impl Engine {
    /// Makes the image (building the Dockerfile and the Feature layer as needed) and the container.
    #[expect(
        clippy::too_many_arguments,
        reason = "the pieces of one up, passed once"
    )]
    pub(super) async fn create(
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
        let mut entries =
            label_entries(&base_info.labels, &format!("image {base_image}"), events).await;
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
    pub(super) fn agent_config_file(&self, spec: &UpSpec) -> std::path::PathBuf {
        relocate(
            Path::new(&spec.config_file),
            Path::new(&spec.local_folder),
            Path::new(&spec.files_folder),
        )
    }
}

/// What `create` made.
#[derive(Debug)]
pub(super) struct Made {
    pub(super) container: ContainerInfo,
    /// The metadata entries written into the container's label.
    pub(super) entries: Vec<metadata::Entry>,
    pub(super) built_image: Option<String>,
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

/// The keep-alive the reference CLI runs: it exits on SIGTERM at once, runs the Features' entrypoints, then the image's
/// command if one follows, else sleeps.
pub(super) fn keep_alive_script(entrypoints: &[String]) -> String {
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
