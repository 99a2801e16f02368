//! Features: resolving the `features` of devcontainer.json into Feature folders, ordering them the way the reference
//! CLI does, and making the image layer that installs them.
//!
//! A local Feature (`./x`) is its folder next to devcontainer.json. A Feature from an OCI registry (`oci`) or a tarball URL
//! (`tarball`) is fetched into the agent's cache (`<state>/features/`) and unpacked there into the same layout a local
//! Feature has, so from then on all three are installed alike. The order follows the reference CLI's `computeDependsOnInstallationOrder`: a graph from `dependsOn`
//! (hard, added when missing) and `installsAfter` (soft, only between Features that are installed anyway), installed in
//! rounds; a round takes every Feature whose dependencies are in, keeps those with the highest
//! `overrideFeatureInstallOrder` priority, and sorts them by id and options. A round that takes nothing is a cycle.
//! The layer is built by Docker's classic builder from one context archive holding the Feature folders (the reference
//! CLI's BuildKit `--build-context` has no equivalent in the Engine API's classic builder).

mod oci;
mod tarball;
mod unpack;

pub use unpack::Limits;

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use skiff::api::{UpEvent, UpPhase};
use skiff::devcontainer::{DevContainer, FeatureManifest, FeatureReference, FeatureValue};

/// A Feature to install, with the options it installs with.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedFeature {
    /// The id as the user (or a `dependsOn`) wrote it, e.g. `./tiger` or `ghcr.io/devcontainers/features/node:1`.
    pub user_id: String,
    /// The Feature's folder on the agent's machine: a local Feature's own folder, or its unpacked copy in the cache, named
    /// by content (the manifest digest, the tarball's SHA-256), so two ids naming the same content share it.
    pub folder: PathBuf,
    /// What the Feature is without its version: the folder of a local Feature, `registry/namespace/id` of an OCI
    /// Feature, the URL of a tarball. `installsAfter` and `overrideFeatureInstallOrder` name Features by it, and rounds
    /// are sorted by it.
    pub resource: String,
    /// The tag or digest an OCI Feature was asked for; empty for the others.
    pub version: String,
    /// Option values the user gave.
    pub options: Map<String, Value>,
    pub manifest: FeatureManifest,
}

/// Why the Features cannot be installed; the message names the Feature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FeatureError(pub String);

/// A node of the install graph.
#[derive(Debug, Clone)]
struct Node {
    feature: ResolvedFeature,
    /// Hard dependencies, by (folder, options).
    depends_on: Vec<(PathBuf, Map<String, Value>)>,
    /// Soft dependencies, by resource.
    installs_after: Vec<String>,
    priority: usize,
}

fn same(node: &Node, folder: &Path, options: &Map<String, Value>) -> bool {
    node.feature.folder == folder && node.feature.options == *options
}

/// Where a local Feature id points, checked to be inside the workspace's `.devcontainer` folder as the reference CLI requires.
fn local_folder(id: &str, config_folder: &Path, workspace: &Path) -> Result<PathBuf, FeatureError> {
    let folder = normalize(&config_folder.join(id));
    let devcontainer = normalize(&workspace.join(".devcontainer"));
    if !folder.starts_with(&devcontainer) {
        return Err(FeatureError(format!(
            "Feature {id:?}: local Features must be inside the workspace's .devcontainer folder ({}), but it is {}",
            devcontainer.display(),
            folder.display()
        )));
    }
    Ok(folder)
}

/// Removes `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut result = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                result.pop();
            }
            other => result.push(other.as_os_str()),
        }
    }
    result
}

fn read_manifest(id: &str, folder: &Path) -> Result<FeatureManifest, FeatureError> {
    let file = folder.join("devcontainer-feature.json");
    let text = std::fs::read_to_string(&file).map_err(|error| {
        FeatureError(format!(
            "Feature {id:?}: cannot read {}: {error}",
            file.display()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(FeatureError(format!(
            "Feature {id:?}: {} is empty",
            file.display()
        )));
    }
    skiff::devcontainer::parse_feature(&file, &text)
        .map_err(|error| FeatureError(format!("Feature {id:?}: {error}")))
}

fn options_of(value: &Value, manifest: &FeatureManifest) -> Map<String, Value> {
    match value {
        Value::Object(options) => options.clone(),
        // A string is the shorthand for the option `version`, when the Feature has one.
        Value::String(version) if manifest.options.contains_key("version") => {
            Map::from_iter([("version".to_owned(), Value::String(version.clone()))])
        }
        _ => Map::new(),
    }
}

/// Where a Feature's files are on this machine, and what it is (see [`ResolvedFeature`]).
#[derive(Debug, Clone)]
struct Located {
    folder: PathBuf,
    resource: String,
    version: String,
}

/// Finds Features on this machine, fetching those from registries and URLs into the cache.
#[derive(Debug)]
pub struct Sources<'a> {
    /// The folder holding devcontainer.json on this machine (local ids are relative to it).
    pub config_folder: &'a Path,
    /// The workspace's files on this machine (local Features must be inside its `.devcontainer`).
    pub workspace: &'a Path,
    /// The agent's Feature cache, `<state>/features`.
    pub cache: &'a Path,
    /// Where fetching is reported; none in unit tests.
    pub events: Option<&'a super::Events>,
    /// How large a fetched Feature archive may be.
    pub limits: Limits,
    /// The client's registry logins for this `up`, for Features in registries that need one.
    pub logins: &'a [skiff::api::RegistryLogin],
}

impl Sources<'_> {
    /// Tells the user what fetching is doing.
    async fn note(&self, message: String) {
        tracing::info!("{message}");
        if let Some(events) = self.events {
            let _ = events
                .send(UpEvent::Progress {
                    phase: UpPhase::Pulling,
                    message,
                })
                .await;
        }
    }

    async fn locate(&self, id: &str) -> Result<Located, FeatureError> {
        match FeatureReference::classify(id) {
            FeatureReference::Local(_) => {
                let folder = local_folder(id, self.config_folder, self.workspace)?;
                Ok(Located {
                    resource: folder.display().to_string(),
                    folder,
                    version: String::new(),
                })
            }
            FeatureReference::Oci(reference) => {
                let reference = oci::OciReference::parse(&reference)
                    .map_err(|message| FeatureError(format!("Feature {id:?}: {message}")))?;
                let fetched = oci::fetch(id, &reference, self).await?;
                Ok(Located {
                    folder: fetched,
                    resource: reference.resource(),
                    version: reference.version(),
                })
            }
            FeatureReference::Tarball(url) => {
                let folder = tarball::fetch(id, &url, self).await?;
                Ok(Located {
                    folder,
                    resource: url,
                    version: String::new(),
                })
            }
            FeatureReference::Unsupported(_) => Err(FeatureError(format!(
                "Feature {id:?}: legacy Feature ids are not supported; if you meant a local Feature, prepend its name with \"./\""
            ))),
        }
    }
}

/// `id` without its tag or digest (`ghcr.io/x/y:1` → `ghcr.io/x/y`); a registry's port is kept.
fn without_version(id: &str) -> &str {
    let id = id.split('@').next().unwrap_or(id);
    let last = id.rfind('/').map_or(0, |slash| slash + 1);
    match id[last..].find(':') {
        Some(colon) => &id[..last + colon],
        None => id,
    }
}

/// Resolves the `features` of `config` (whose file is in `sources.config_folder` on this machine) into the Features to
/// install, in install order, fetching those that are not local.
pub async fn resolve(
    config: &DevContainer,
    sources: &Sources<'_>,
) -> Result<Vec<ResolvedFeature>, FeatureError> {
    let Some(features) = config
        .features
        .as_ref()
        .filter(|features| !features.is_empty())
    else {
        return Ok(Vec::new());
    };
    let config_folder = sources.config_folder;
    let mut worklist: Vec<(String, Value)> = Vec::new();
    for (id, value) in features {
        let value = match value {
            FeatureValue::Enabled(false) => continue,
            FeatureValue::Enabled(true) => Value::Object(Map::new()),
            FeatureValue::Version(version) => Value::String(version.clone()),
            FeatureValue::Options(options) => Value::Object(options.clone()),
        };
        worklist.push((id.clone(), value));
    }

    // Each id is located (and fetched) once per resolution, however many Features depend on it.
    let mut located: HashMap<String, (Located, FeatureManifest)> = HashMap::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut index = 0;
    while index < worklist.len() {
        let (id, value) = worklist[index].clone();
        index += 1;
        let (place, manifest) = locate_once(sources, &mut located, &id).await?;
        let options = options_of(&value, &manifest);
        if nodes.iter().any(|node| same(node, &place.folder, &options)) {
            continue;
        }
        let mut depends_on = Vec::new();
        for (dependency, dependency_value) in &manifest.depends_on {
            let (dependency_place, dependency_manifest) =
                locate_once(sources, &mut located, dependency).await?;
            depends_on.push((
                dependency_place.folder,
                options_of(dependency_value, &dependency_manifest),
            ));
            worklist.push((dependency.clone(), dependency_value.clone()));
        }
        let installs_after = manifest
            .installs_after
            .iter()
            .map(|after| {
                if after.starts_with("./") || after.starts_with("../") {
                    normalize(&config_folder.join(after)).display().to_string()
                } else {
                    without_version(after).to_owned()
                }
            })
            .collect();
        nodes.push(Node {
            feature: ResolvedFeature {
                user_id: id,
                folder: place.folder,
                resource: place.resource,
                version: place.version,
                options,
                manifest,
            },
            depends_on,
            installs_after,
            priority: 0,
        });
    }

    if let Some(order) = &config.override_feature_install_order {
        let count = order.len();
        for (position, wanted) in order.iter().enumerate() {
            let wanted_resource = if wanted.starts_with("./") || wanted.starts_with("../") {
                normalize(&config_folder.join(wanted)).display().to_string()
            } else {
                without_version(wanted).to_owned()
            };
            for node in &mut nodes {
                let matches = node.feature.user_id == *wanted
                    || without_version(&node.feature.user_id) == wanted.as_str()
                    || node.feature.resource == wanted_resource;
                if matches {
                    node.priority = count - position;
                }
            }
        }
    }
    order(nodes)
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// Makes ring the process's rustls provider (as the rest of skiff uses) before an HTTPS client is built; reqwest is built
/// without a provider of its own. A provider installed earlier stays.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Locates `id` and reads its manifest, once per resolution.
async fn locate_once(
    sources: &Sources<'_>,
    located: &mut HashMap<String, (Located, FeatureManifest)>,
    id: &str,
) -> Result<(Located, FeatureManifest), FeatureError> {
    if let Some(found) = located.get(id) {
        return Ok(found.clone());
    }
    let place = sources.locate(id).await?;
    let manifest = read_manifest(id, &place.folder)?;
    located.insert(id.to_owned(), (place.clone(), manifest.clone()));
    Ok((place, manifest))
}

/// The round-based install order.
fn order(mut remaining: Vec<Node>) -> Result<Vec<ResolvedFeature>, FeatureError> {
    let mut installed: Vec<Node> = Vec::new();
    while !remaining.is_empty() {
        let ready: Vec<usize> = (0..remaining.len())
            .filter(|&candidate| {
                let node = &remaining[candidate];
                let hard = node.depends_on.iter().all(|(folder, options)| {
                    installed.iter().any(|done| same(done, folder, options))
                });
                // A soft dependency only holds back while a Feature of that resource is still waiting.
                let soft = node.installs_after.iter().all(|resource| {
                    !remaining.iter().enumerate().any(|(other, waiting)| {
                        other != candidate && waiting.feature.resource == *resource
                    })
                });
                hard && soft
            })
            .collect();
        if ready.is_empty() {
            let mut names: Vec<String> = remaining
                .iter()
                .map(|node| node.feature.user_id.clone())
                .collect();
            names.sort();
            names.dedup();
            return Err(FeatureError(format!(
                "the Features depend on each other in a cycle ({}); break the cycle in their dependsOn or installsAfter",
                names.join(", ")
            )));
        }
        let top = ready
            .iter()
            .map(|&candidate| remaining[candidate].priority)
            .max()
            .unwrap_or(0);
        let mut round: Vec<Node> = Vec::new();
        let mut kept = Vec::new();
        for (position, node) in remaining.into_iter().enumerate() {
            if ready.contains(&position) && node.priority == top {
                round.push(node);
            } else {
                kept.push(node);
            }
        }
        remaining = kept;
        round.sort_by(|first, second| round_order(&first.feature, &second.feature));
        installed.extend(round);
    }
    Ok(installed.into_iter().map(|node| node.feature).collect())
}

/// The stable order within a round: by resource (a local Feature's folder orders like its id), then tag, then fewer
/// options first, then option names and values — the order the reference CLI's tests expect.
fn round_order(first: &ResolvedFeature, second: &ResolvedFeature) -> Ordering {
    first
        .resource
        .cmp(&second.resource)
        .then_with(|| first.version.cmp(&second.version))
        .then_with(|| first.options.len().cmp(&second.options.len()))
        .then_with(|| first.options.keys().cmp(second.options.keys()))
        .then_with(|| {
            let text = |options: &Map<String, Value>| {
                options
                    .values()
                    .map(|value| match value {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
            };
            text(&first.options).cmp(&text(&second.options))
        })
}

/// What the Feature layer is built on.
#[derive(Debug, Clone)]
pub struct Layer<'a> {
    /// The image to extend.
    pub base_image: &'a str,
    /// The base image's user (`USER` is restored to it at the end).
    pub image_user: &'a str,
    /// `_CONTAINER_USER` and `_REMOTE_USER` of the builtin env file.
    pub container_user: &'a str,
    pub remote_user: &'a str,
    pub features: &'a [ResolvedFeature],
}

/// The name of the Dockerfile inside the layer's context archive.
pub const LAYER_DOCKERFILE: &str = "Dockerfile.skiff-features";

fn quote_env(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The folder name of Feature number `index` in the build, `<id>_<index>` as the reference CLI names it.
fn feature_dir(feature: &ResolvedFeature, index: usize) -> String {
    let id: String = feature
        .manifest
        .id
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || "-_.".contains(character) {
                character
            } else {
                '_'
            }
        })
        .collect();
    let id = if id.is_empty() {
        "feature".to_owned()
    } else {
        id
    };
    format!("{id}_{index}")
}

/// The option env file of a Feature: every declared option with its default, overridden by the given values.
pub fn option_env(feature: &ResolvedFeature) -> String {
    let mut values: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new();
    let text = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    for (id, option) in &feature.manifest.options {
        if let Some(default) = &option.default {
            values.insert(FeatureManifest::option_variable(id), text(default));
        }
    }
    for (id, value) in &feature.options {
        values.insert(FeatureManifest::option_variable(id), text(value));
    }
    values
        .iter()
        .map(|(name, value)| format!("{name}=\"{value}\"\n"))
        .collect()
}

fn install_wrapper(feature: &ResolvedFeature) -> String {
    let name = feature
        .manifest
        .name
        .clone()
        .unwrap_or_else(|| feature.manifest.id.clone());
    format!(
        "#!/bin/sh\nset -e\n\non_exit () {{\n\t[ $? -eq 0 ] && exit\n\techo 'ERROR: Feature \"{name}\" ({id}) failed to install!'\n}}\n\ntrap on_exit EXIT\n\n\
         echo ===========================================================================\n\
         echo 'Feature       : {name}'\necho 'Id            : {id}'\necho 'Version       : {version}'\n\
         echo ===========================================================================\n\n\
         set -a\n. ../devcontainer-features.builtin.env\n. ./devcontainer-features.env\nset +a\n\nchmod +x ./install.sh\n./install.sh\n",
        name = name.replace('\'', ""),
        id = feature.user_id.replace('\'', ""),
        version = feature.manifest.version.replace('\'', ""),
    )
}

fn user_home(user: &str) -> String {
    format!(
        "$( (getent passwd {user} 2>/dev/null || grep -E '^{user}:|^[^:]*:[^:]*:{user}:' /etc/passwd || true) | cut -d: -f6 | head -n 1)"
    )
}

/// The Dockerfile that installs the Features on `layer.base_image`.
pub fn layer_dockerfile(layer: &Layer<'_>) -> String {
    let mut dockerfile = format!(
        "FROM {base}\nUSER root\n\
         COPY devcontainer-features.builtin.env /tmp/dev-container-features/devcontainer-features.builtin.env\n\
         RUN chmod -R 0755 /tmp/dev-container-features \
         && echo \"_CONTAINER_USER_HOME={container_home}\" >> /tmp/dev-container-features/devcontainer-features.builtin.env \
         && echo \"_REMOTE_USER_HOME={remote_home}\" >> /tmp/dev-container-features/devcontainer-features.builtin.env\n",
        base = layer.base_image,
        container_home = user_home(layer.container_user),
        remote_home = user_home(layer.remote_user),
    );
    for (index, feature) in layer.features.iter().enumerate() {
        let dir = feature_dir(feature, index);
        for (key, value) in &feature.manifest.container_env {
            dockerfile.push_str(&format!("ENV {key}=\"{}\"\n", quote_env(value)));
        }
        dockerfile.push_str(&format!(
            "COPY {dir}/ /tmp/dev-container-features/{dir}/\n\
             RUN chmod -R 0755 /tmp/dev-container-features/{dir} && cd /tmp/dev-container-features/{dir} \
             && chmod +x ./devcontainer-features-install.sh && ./devcontainer-features-install.sh \
             && rm -rf /tmp/dev-container-features/{dir}\n"
        ));
    }
    let user = if layer.image_user.is_empty() {
        "root"
    } else {
        layer.image_user
    };
    dockerfile.push_str(&format!("USER {user}\n"));
    dockerfile
}

/// The context archive of the Feature layer: the Dockerfile, the builtin env file, and each Feature's folder with its option
/// env file and install wrapper.
pub fn layer_archive(layer: &Layer<'_>) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    let add = |builder: &mut tar::Builder<Vec<u8>>, name: &str, contents: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        builder.append_data(&mut header, name, contents)
    };
    add(
        &mut builder,
        LAYER_DOCKERFILE,
        layer_dockerfile(layer).as_bytes(),
        0o644,
    )?;
    let builtin = format!(
        "_CONTAINER_USER={}\n_REMOTE_USER={}\n",
        layer.container_user, layer.remote_user
    );
    add(
        &mut builder,
        "devcontainer-features.builtin.env",
        builtin.as_bytes(),
        0o644,
    )?;
    for (index, feature) in layer.features.iter().enumerate() {
        let dir = feature_dir(feature, index);
        builder.append_dir_all(&dir, &feature.folder)?;
        add(
            &mut builder,
            &format!("{dir}/devcontainer-features.env"),
            option_env(feature).as_bytes(),
            0o644,
        )?;
        add(
            &mut builder,
            &format!("{dir}/devcontainer-features-install.sh"),
            install_wrapper(feature).as_bytes(),
            0o755,
        )?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests;
