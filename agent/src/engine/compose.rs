//! Docker Compose configurations, through the compose CLI as the reference CLI does (the Engine API has no compose).
//!
//! `docker compose` (v2) is used where it answers, else `docker-compose` (v1, what Debian 12 ships). The dev container's
//! labels, user, environment, mounts and keep-alive go into a generated override file passed after the user's files; the
//! container is then found by the `com.docker.compose.project` and `com.docker.compose.service` labels.
//! This is the one place the agent starts a subprocess that manages containers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use skiff::api::{OutputStream, UpEvent, UpPhase, UpSpec};
use skiff::devcontainer::{self, DevContainer};

use super::create::keep_alive_script;
use super::metadata::{self, Entry};
use super::up::{LABEL_CONFIG_HASH, reused_entries, substitute_entries, warn_if_changed};
use super::{ContainerInfo, Engine, EngineError, Events, LABEL_WORKSPACE, emit, progress};

/// Label compose puts on every container of a project.
pub const LABEL_PROJECT: &str = "com.docker.compose.project";
/// Label compose puts on a container naming its service.
pub const LABEL_SERVICE: &str = "com.docker.compose.service";

/// What `up` of a compose configuration made or found.
#[derive(Debug)]
pub struct ComposeUp {
    pub container: ContainerInfo,
    pub entries: Vec<Entry>,
    pub created: bool,
    /// The Feature image this `up` built for the service, if it built one.
    pub built_image: Option<String>,
}

/// The compose CLI found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeCli {
    /// `docker compose`.
    V2,
    /// `docker-compose`.
    V1,
}

impl ComposeCli {
    fn command(&self) -> tokio::process::Command {
        match self {
            ComposeCli::V2 => {
                let mut command = tokio::process::Command::new("docker");
                command.arg("compose");
                command
            }
            ComposeCli::V1 => tokio::process::Command::new("docker-compose"),
        }
    }
}

/// Finds the compose CLI: v2 where `docker compose version` answers, else v1.
pub async fn detect() -> Option<ComposeCli> {
    let answers = |mut command: tokio::process::Command| async move {
        command
            .arg("version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .is_ok_and(|status| status.success())
    };
    let mut v2 = tokio::process::Command::new("docker");
    v2.arg("compose");
    if answers(v2).await {
        return Some(ComposeCli::V2);
    }
    if answers(tokio::process::Command::new("docker-compose")).await {
        return Some(ComposeCli::V1);
    }
    None
}

/// A project name the way compose normalises it: lower-case, only `-`, `_`, `a-z` and `0-9`.
pub fn normalize_project_name(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|character| {
            character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || "-_".contains(*character)
        })
        .collect()
}

/// The project name by the reference CLI's rules: `COMPOSE_PROJECT_NAME` (environment, then `.env` in the workspace folder),
/// then a top-level `name:` of the compose files (the last one that sets it), then `<workspace>_devcontainer` when the first
/// compose file is in the workspace's `.devcontainer` folder, else the name of the first file's folder.
pub fn project_name(
    env: &BTreeMap<String, String>,
    workspace: &Path,
    files: &[PathBuf],
    texts: &[String],
) -> String {
    if let Some(name) = env
        .get("COMPOSE_PROJECT_NAME")
        .filter(|name| !name.is_empty())
    {
        return normalize_project_name(name);
    }
    if let Ok(dotenv) = std::fs::read_to_string(workspace.join(".env"))
        && let Some(name) = dotenv.lines().find_map(|line| {
            line.trim()
                .strip_prefix("COMPOSE_PROJECT_NAME=")
                .map(|value| value.trim().trim_matches('"').to_owned())
        })
        && !name.is_empty()
    {
        return normalize_project_name(&name);
    }
    let declared = texts.iter().rev().find_map(|text| {
        text.lines().find_map(|line| {
            let value = line.strip_prefix("name:")?.trim();
            let value = value.trim_matches(|character| character == '"' || character == '\'');
            (!value.is_empty()).then(|| interpolate(value, env))
        })
    });
    if let Some(name) = declared.filter(|name| !name.is_empty()) {
        return normalize_project_name(&name);
    }
    let first_folder = files
        .first()
        .and_then(|file| file.parent())
        .unwrap_or(workspace);
    let basename = |path: &Path| {
        path.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if first_folder == workspace.join(".devcontainer") {
        normalize_project_name(&format!("{}_devcontainer", basename(workspace)))
    } else {
        normalize_project_name(&basename(first_folder))
    }
}

/// `${VAR}`, `${VAR:-default}` and `$VAR` from `env`, as compose interpolates a value.
fn interpolate(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut result = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        result.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(inner) = after.strip_prefix('{')
            && let Some(end) = inner.find('}')
        {
            let expression = &inner[..end];
            let (name, default) = expression
                .split_once(":-")
                .or_else(|| expression.split_once('-'))
                .unwrap_or((expression, ""));
            result.push_str(
                env.get(name)
                    .filter(|value| !value.is_empty())
                    .map_or(default, String::as_str),
            );
            rest = &inner[end + 1..];
        } else {
            let length = after
                .find(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
                .unwrap_or(after.len());
            result.push_str(env.get(&after[..length]).map_or("", String::as_str));
            rest = &after[length..];
        }
    }
    result.push_str(rest);
    result
}

/// What the compose configuration says about the dev container's service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceInfo {
    pub image: Option<String>,
    pub has_build: bool,
    pub user: Option<String>,
}

/// Reads the service's `image`, `build` and `user` from the output of `compose config` (JSON from v2, normalised YAML
/// from v1: two-space indentation, one key per line).
pub fn service_info(config_output: &str, service: &str) -> Option<ServiceInfo> {
    if let Ok(json) = serde_json::from_str::<Value>(config_output) {
        let entry = json.get("services")?.get(service)?;
        return Some(ServiceInfo {
            image: entry
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_owned),
            has_build: entry.get("build").is_some(),
            user: entry.get("user").and_then(Value::as_str).map(str::to_owned),
        });
    }
    let mut in_services = false;
    let mut in_service = false;
    let mut info = ServiceInfo::default();
    let mut found = false;
    for line in config_output.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 {
            in_services = trimmed == "services:";
            in_service = false;
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 {
            let name = trimmed
                .trim_end_matches(':')
                .trim_matches(|c| c == '\'' || c == '"');
            in_service = name == service;
            found |= in_service;
            continue;
        }
        if in_service && indent == 4 {
            let unquote = |value: &str| {
                value
                    .trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .to_owned()
            };
            if let Some(image) = trimmed.strip_prefix("image:") {
                info.image = Some(unquote(image));
            } else if trimmed.starts_with("build:") {
                info.has_build = true;
            } else if let Some(user) = trimmed.strip_prefix("user:") {
                info.user = Some(unquote(user));
            }
        }
    }
    found.then_some(info)
}

fn yaml_string(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// Compose interpolates `$` in values; `$$` is a literal dollar.
fn compose_literal(text: &str) -> String {
    yaml_string(&text.replace('$', "$$"))
}

/// The generated override file; `image` replaces the service's image (its Feature image).
pub fn override_file(
    version: Option<&str>,
    service: &str,
    image: Option<&str>,
    labels: &BTreeMap<String, String>,
    merged: &metadata::Merged,
    keep_alive: Option<&str>,
    mounts: &[devcontainer::Mount],
) -> String {
    let mut text = String::new();
    if let Some(version) = version {
        text.push_str(&format!("version: {}\n", yaml_string(version)));
    }
    text.push_str(&format!("services:\n  {}:\n", yaml_string(service)));
    if let Some(image) = image {
        text.push_str(&format!("    image: {}\n", yaml_string(image)));
    }
    if let Some(script) = keep_alive {
        text.push_str(&format!(
            "    entrypoint: [\"/bin/sh\", \"-c\", {}, \"-\"]\n",
            compose_literal(script)
        ));
    }
    if let Some(user) = &merged.container_user {
        text.push_str(&format!("    user: {}\n", yaml_string(user)));
    }
    if merged.init {
        text.push_str("    init: true\n");
    }
    if merged.privileged {
        text.push_str("    privileged: true\n");
    }
    if !merged.cap_add.is_empty() {
        text.push_str(&format!(
            "    cap_add: {}\n",
            serde_json::to_string(&merged.cap_add).unwrap_or_default()
        ));
    }
    if !merged.security_opt.is_empty() {
        text.push_str(&format!(
            "    security_opt: {}\n",
            serde_json::to_string(&merged.security_opt).unwrap_or_default()
        ));
    }
    if !merged.container_env.is_empty() {
        text.push_str("    environment:\n");
        for (key, value) in &merged.container_env {
            text.push_str(&format!(
                "      {}: {}\n",
                yaml_string(key),
                compose_literal(value)
            ));
        }
    }
    text.push_str("    labels:\n");
    for (key, value) in labels {
        text.push_str(&format!(
            "      {}: {}\n",
            yaml_string(key),
            compose_literal(value)
        ));
    }
    let mut named_volumes = Vec::new();
    if !mounts.is_empty() {
        text.push_str("    volumes:\n");
        for mount in mounts {
            let spec = mount.to_mount_spec();
            let mut entry = serde_json::Map::new();
            for part in spec.split(',') {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                let key = match key {
                    "src" => "source",
                    "dst" | "destination" => "target",
                    other => other,
                };
                if matches!(key, "type" | "source" | "target") {
                    entry.insert(key.to_owned(), Value::String(value.to_owned()));
                }
            }
            if entry.get("type").and_then(Value::as_str) == Some("volume")
                && let Some(source) = entry.get("source").and_then(Value::as_str)
            {
                named_volumes.push(source.to_owned());
            }
            text.push_str(&format!("      - {}\n", Value::Object(entry)));
        }
    }
    if !named_volumes.is_empty() {
        text.push_str("volumes:\n");
        for volume in named_volumes {
            text.push_str(&format!("  {}: {{}}\n", yaml_string(&volume)));
        }
    }
    text
}

/// Runs a compose command to its end; its output goes to the client, and a failure carries its last lines.
async fn run(
    cli: &ComposeCli,
    project: &str,
    files: &[PathBuf],
    args: &[&str],
    events: &Events,
) -> Result<String, String> {
    let mut command = cli.command();
    command.arg("--project-name").arg(project);
    for file in files {
        command.arg("-f").arg(file);
    }
    command.args(args);
    if let Some(folder) = files.first().and_then(|file| file.parent()) {
        command.current_dir(folder);
    }
    let output = command
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|error| format!("could not run the compose CLI: {error}"))?;
    if !output.stderr.is_empty() && args.first() != Some(&"config") {
        emit(
            events,
            UpEvent::Output {
                stream: OutputStream::Stderr,
                data: output.stderr.clone(),
            },
        )
        .await;
    }
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        Err(format!(
            "`compose {}` failed ({}): {}",
            args.join(" "),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ))
    }
}

/// Brings up a compose configuration and returns the dev container.
pub async fn up(
    engine: &Engine,
    config: &DevContainer,
    spec: &UpSpec,
    config_hash: &str,
    devcontainer_id: &str,
    events: &Events,
) -> Result<ComposeUp, EngineError> {
    let config_error = |message: String| EngineError::Config {
        file: spec.config_file.clone(),
        message,
    };
    let files_folder = Path::new(&spec.files_folder);
    let config_file = engine.agent_config_file(spec);
    let files = config.compose_files(&config_file);
    if files.is_empty() {
        return Err(config_error(
            "\"dockerComposeFile\": name at least one compose file".to_owned(),
        ));
    }
    for file in &files {
        if !file.is_file() {
            return Err(config_error(format!(
                "\"dockerComposeFile\": {} does not exist; the path is relative to the folder of devcontainer.json",
                file.display()
            )));
        }
    }
    let service = config.service.clone().ok_or_else(|| {
        config_error("\"service\": a Docker Compose configuration must name its service".to_owned())
    })?;
    let cli = detect().await.ok_or_else(|| {
        config_error(
            "\"dockerComposeFile\": neither `docker compose` nor `docker-compose` runs on the agent's machine; install one"
                .to_owned(),
        )
    })?;
    let texts: Vec<String> = files
        .iter()
        .map(|file| std::fs::read_to_string(file).unwrap_or_default())
        .collect();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let project = project_name(&env, files_folder, &files, &texts);
    let compose_error = |message: String| config_error(format!("\"dockerComposeFile\": {message}"));

    let labels = BTreeMap::from([
        (LABEL_PROJECT.to_owned(), project.clone()),
        (LABEL_SERVICE.to_owned(), service.clone()),
    ]);
    let mut existing = engine.docker.find_container(&labels).await?;
    if spec.rebuild
        && let Some(container) = existing.take()
    {
        progress(
            events,
            UpPhase::Creating,
            format!(
                "removing container {} to rebuild",
                super::short(&container.id)
            ),
        )
        .await;
        engine.docker.remove_container(&container.id).await?;
    }

    let override_folder = engine.state.path().join("compose");
    std::fs::create_dir_all(&override_folder)?;
    let override_path = override_folder.join("docker-compose.devcontainer.yml");
    let version = texts.first().and_then(|text| {
        text.lines().find_map(|line| {
            line.strip_prefix("version:").map(|value| {
                value
                    .trim()
                    .trim_matches(|c| c == '\'' || c == '"')
                    .to_owned()
            })
        })
    });

    let has_features = config
        .features
        .as_ref()
        .is_some_and(|features| !features.is_empty());
    let (entries, created, service_image, built_image) = match &existing {
        Some(container) => {
            warn_if_changed(container, config_hash, events).await;
            // The service keeps running the Feature image it was made from.
            let service_image = has_features.then(|| container.image.clone());
            (
                reused_entries(container, config, events).await,
                false,
                service_image,
                None,
            )
        }
        None => {
            // Features are resolved before anything is built, so a bad Feature leaves no image behind.
            let features = engine.resolve_features(config, spec, events).await?;
            let config_text = match cli {
                ComposeCli::V2 => {
                    run(
                        &cli,
                        &project,
                        &files,
                        &["config", "--format", "json"],
                        events,
                    )
                    .await
                }
                ComposeCli::V1 => run(&cli, &project, &files, &["config"], events).await,
            }
            .map_err(compose_error)?;
            let info = service_info(&config_text, &service).ok_or_else(|| {
                config_error(format!(
                    "\"service\": service {service:?} is not in the Docker Compose configuration"
                ))
            })?;
            let image = if info.has_build {
                progress(
                    events,
                    UpPhase::Building,
                    format!("building service {service}"),
                )
                .await;
                let _building = engine.activity.busy(crate::idle::source::BUILD);
                run(&cli, &project, &files, &["build", &service], events)
                    .await
                    .map_err(compose_error)?;
                info.image.clone().unwrap_or_else(|| match cli {
                    ComposeCli::V1 => format!("{project}_{service}"),
                    ComposeCli::V2 => format!("{project}-{service}"),
                })
            } else {
                let image = info.image.clone().ok_or_else(|| {
                    config_error(format!(
                        "\"service\": service {service:?} has neither image nor build"
                    ))
                })?;
                engine.ensure_image(&image, events).await?;
                image
            };
            let base = engine.docker.inspect_image(&image).await?;
            let base_user = base
                .as_ref()
                .map(|base| base.user.clone())
                .unwrap_or_default();
            let mut entries = match metadata::entries_from_label(
                base.as_ref()
                    .and_then(|base| base.labels.get(devcontainer::LABEL_METADATA))
                    .map(String::as_str),
            ) {
                Ok(entries) => entries,
                Err(problem) => {
                    emit(
                        events,
                        UpEvent::Warning(format!("image {image}: {problem}; ignoring it")),
                    )
                    .await;
                    Vec::new()
                }
            };
            for feature in &features {
                entries.push(metadata::feature_entry(&feature.user_id, &feature.manifest));
            }
            entries.push(metadata::config_entry(config));
            if features.is_empty() {
                (entries, true, None, None)
            } else {
                // As for an image config, the Features go into a layer on the service's image, and the service
                // runs that instead. Named after the project, so `delete` removes it with the project.
                let merged = metadata::merge(&substitute_entries(&entries, devcontainer_id, None));
                let container_user = merged.container_user.clone().unwrap_or_else(|| {
                    if base_user.is_empty() {
                        "root".to_owned()
                    } else {
                        base_user.clone()
                    }
                });
                let remote_user = merged
                    .remote_user
                    .clone()
                    .unwrap_or_else(|| container_user.clone());
                let tag = format!("{project}-{service}-features");
                let layer = super::features::Layer {
                    base_image: &image,
                    image_user: &base_user,
                    container_user: &container_user,
                    remote_user: &remote_user,
                    features: &features,
                };
                engine
                    .install_features(
                        &layer,
                        &metadata::label_value(&entries),
                        &tag,
                        files_folder,
                        events,
                    )
                    .await?;
                (entries, true, Some(tag.clone()), Some(tag))
            }
        }
    };

    let merged = metadata::merge(&substitute_entries(&entries, devcontainer_id, None));
    let mut container_labels =
        devcontainer::id_labels(Path::new(&spec.local_folder), Path::new(&spec.config_file));
    container_labels.insert(LABEL_WORKSPACE.to_owned(), engine.workspace.clone());
    container_labels.insert(LABEL_CONFIG_HASH.to_owned(), config_hash.to_owned());
    container_labels.insert(
        devcontainer::LABEL_METADATA.to_owned(),
        metadata::label_value(&entries),
    );
    // Compose configurations keep the image's command unless the config says otherwise (the default differs from
    // image and Dockerfile configurations).
    let keep_alive = merged
        .override_command
        .unwrap_or(false)
        .then(|| keep_alive_script(&merged.entrypoints));
    std::fs::write(
        &override_path,
        override_file(
            version.as_deref(),
            &service,
            service_image.as_deref(),
            &container_labels,
            &merged,
            keep_alive.as_deref(),
            &merged.mounts,
        ),
    )?;
    let mut all_files = files.clone();
    all_files.push(override_path);
    let mut args: Vec<String> = vec!["up".into(), "-d".into()];
    if !created {
        args.push("--no-recreate".into());
    }
    if let Some(services) = &config.run_services {
        args.extend(services.iter().cloned());
        if !services.contains(&service) {
            args.push(service.clone());
        }
    }
    progress(
        events,
        UpPhase::Starting,
        format!("starting Docker Compose project {project}"),
    )
    .await;
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&cli, &project, &all_files, &arg_refs, events)
        .await
        .map_err(compose_error)?;
    let container = engine
        .docker
        .find_container(&labels)
        .await?
        .ok_or_else(|| {
            config_error(format!(
                "\"service\": Docker Compose started project {project} but no container of service {service} is there"
            ))
        })?;
    Ok(ComposeUp {
        container,
        entries,
        created,
        built_image,
    })
}

#[cfg(test)]
mod tests;
