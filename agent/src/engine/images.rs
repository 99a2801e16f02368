//! Images: pulling, building a Dockerfile from a context archive, the Feature layer, and the `-uid` image that
//! gives the remote user the workspace owner's UID (`updateRemoteUserUID`).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::Digest;
use skiff::api::{OutputStream, UpEvent, UpPhase, UpSpec};
use skiff::devcontainer::{self, DevContainer};
use tokio::sync::mpsc;

use super::mounts::relocate;
use super::{BuildSpec, Engine, EngineError, Events, emit, features, progress};
use crate::idle;

/// The client's registry logins, lent to the engine for one `up`: they are gone when this is dropped.
pub(super) struct LentLogins<'a>(&'a std::sync::Mutex<Vec<skiff::api::RegistryLogin>>);

impl Drop for LentLogins<'_> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

/// Whether a build failed because an image a cached step stood for was removed under it.
pub(super) fn lost_cache_parent(detail: &str) -> bool {
    detail.contains("failed to get digest") && detail.contains("no such file or directory")
}

impl Engine {
    /// Lends `logins` to this `up`'s pulls and builds until the returned value is dropped.
    pub(super) fn lend_logins(&self, logins: &[skiff::api::RegistryLogin]) -> LentLogins<'_> {
        *self
            .logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = logins.to_vec();
        LentLogins(&self.logins)
    }

    /// The logins lent for the `up` that runs.
    fn logins(&self) -> Vec<skiff::api::RegistryLogin> {
        self.logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Resolves the config's Features (fetching and caching what is not local), in install order.
    pub(super) async fn resolve_features(
        &self,
        config: &DevContainer,
        spec: &UpSpec,
        events: &Events,
    ) -> Result<Vec<features::ResolvedFeature>, EngineError> {
        let config_file = self.agent_config_file(spec);
        let feature_cache = self.state.path().join("features");
        let logins = self.logins();
        let sources = features::Sources {
            config_folder: config_file.parent().unwrap_or(Path::new("/")),
            workspace: Path::new(&spec.files_folder),
            cache: &feature_cache,
            events: Some(events),
            limits: features::Limits::DEFAULT,
            logins: &logins,
        };
        features::resolve(config, &sources)
            .await
            .map_err(|error| EngineError::Config {
                file: spec.config_file.clone(),
                message: format!("\"features\": {error}"),
            })
    }

    /// Builds the Feature layer on `layer.base_image` as `tag`, labelled with the merged metadata `label`.
    pub(super) async fn install_features(
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

    /// Pulls `image` unless it is on the machine.
    pub(super) async fn ensure_image(
        &self,
        image: &str,
        events: &Events,
    ) -> Result<(), EngineError> {
        if self.docker.inspect_image(image).await?.is_some() {
            return Ok(());
        }
        progress(events, UpPhase::Pulling, format!("pulling image {image}")).await;
        let mut lines = Vec::new();
        let login = {
            let logins = self.logins();
            skiff::api::RegistryLogin::for_reference(&logins, image).cloned()
        };
        self.docker
            .pull_image(image, login.as_ref(), |line| lines.push(line))
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
    pub(super) async fn build(
        &self,
        archive: Vec<u8>,
        dockerfile: &str,
        build: &BuildSpec,
        extras: &crate::docker::BuildExtras,
        events: &Events,
    ) -> Result<(), EngineError> {
        let _building = self.activity.busy(idle::source::BUILD);
        let logins = self.logins();
        let (lines, mut receiver) = mpsc::unbounded_channel::<String>();
        // The build's lines become events beside the build, in this task.
        let forwarding = async {
            while let Some(line) = receiver.recv().await {
                emit(
                    events,
                    UpEvent::Output {
                        stream: OutputStream::Stdout,
                        data: line.into_bytes(),
                    },
                )
                .await;
            }
        };
        let building = async move {
            let mut built = self
                .docker
                .build_image_archive(
                    archive.clone(),
                    dockerfile,
                    build,
                    extras,
                    &logins,
                    |line| {
                        let _ = lines.send(line);
                    },
                )
                .await;
            // Docker's classic builder can pick a cached step whose image a concurrent removal (another
            // workspace's `delete` taking its untagged parents) deletes before the next step commits on it; the
            // build then fails on a digest that is gone. Built again, it no longer finds that cache entry.
            if let Err(crate::docker::DockerError::Build { detail, .. }) = &built
                && lost_cache_parent(detail)
            {
                tracing::info!(
                    "a cached build step vanished under the build ({detail}); building again"
                );
                built = self
                    .docker
                    .build_image_archive(archive, dockerfile, build, extras, &logins, |line| {
                        let _ = lines.send(line);
                    })
                    .await;
            }
            drop(lines);
            built
        };
        let (built, ()) = tokio::join!(building, forwarding);
        built?;
        Ok(())
    }

    pub(super) fn build_spec(
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
}

/// The tag of an image built for a workspace, as the reference CLI names it.
pub fn image_tag(local_folder: &Path) -> String {
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

/// The Dockerfile of the `-uid` image, by name in its context.
pub(super) const UPDATE_UID_DOCKERFILE_NAME: &str = "Dockerfile.skiff-update-uid";

/// Gives `REMOTE_USER` the UID `NEW_UID` and GID `NEW_GID`, as the reference CLI's `updateUID.Dockerfile` does: nothing
/// when the user is missing or already has them, nothing when another user has the UID, the old GID kept when another
/// group has the new one, and the home folder handed over.
pub(super) const UPDATE_UID_DOCKERFILE: &str = r#"ARG BASE_IMAGE
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
pub(super) fn single_file_archive(name: &str, contents: &str) -> Result<Vec<u8>, EngineError> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(contents.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, name, contents.as_bytes())?;
    Ok(builder.into_inner()?)
}
