//! The model of a Feature's `devcontainer-feature.json` (`FeatureManifest`) and its parser, and how a `features` entry of
//! devcontainer.json is identified (`FeatureReference`).
//!
//! Only what describes a Feature lives here; resolving, ordering and installing Features is the agent's engine.
//! The spec is `docs/specs/devcontainer-features.md`; the reference CLI reads the file with a JSONC parser, so comments are
//! allowed, and so are trailing commas.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::ConfigError;
use super::model::{LifecycleCommand, Mount};
use super::parse::parse_jsonc;

/// One `devcontainer-feature.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureManifest {
    /// Must equal the name of the Feature's folder.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Options by id; each becomes an environment variable of `install.sh`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, FeatureOption>,
    /// Baked into the image as `ENV` before the Feature's installation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub container_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    /// A script the container's keep-alive runs at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customizations: Option<Map<String, Value>>,
    /// Hard dependencies: Features (with options) that must be installed first, added when missing.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub depends_on: Map<String, Value>,
    /// Soft dependencies: ids of Features that, when also installed, go first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub installs_after: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legacy_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_create_command: Option<LifecycleCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_content_command: Option<LifecycleCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_create_command: Option<LifecycleCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_start_command: Option<LifecycleCommand>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_attach_command: Option<LifecycleCommand>,
    /// Properties this model does not know (description, keywords, ...), kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// One option of a Feature.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureOption {
    /// `"boolean"` or `"string"`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// Everything else (`description`, `enum`, `proposals`), kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl FeatureManifest {
    /// The environment variable name of option `id`, as the reference CLI makes it: non-word characters become `_`, leading
    /// digits and underscores collapse into one `_`, and the result is upper-cased.
    pub fn option_variable(id: &str) -> String {
        let replaced: String = id
            .chars()
            .map(|character| {
                if character.is_ascii_alphanumeric() || character == '_' {
                    character
                } else {
                    '_'
                }
            })
            .collect();
        let trimmed = replaced
            .trim_start_matches(|character: char| character.is_ascii_digit() || character == '_');
        let prefix = if trimmed.len() < replaced.len() {
            "_"
        } else {
            ""
        };
        format!("{prefix}{trimmed}").to_uppercase()
    }

    /// The lifecycle commands the Feature contributes, with their property names, in lifecycle order.
    pub fn lifecycle_commands(&self) -> Vec<(&'static str, &LifecycleCommand)> {
        [
            ("onCreateCommand", &self.on_create_command),
            ("updateContentCommand", &self.update_content_command),
            ("postCreateCommand", &self.post_create_command),
            ("postStartCommand", &self.post_start_command),
            ("postAttachCommand", &self.post_attach_command),
        ]
        .into_iter()
        .filter_map(|(name, command)| Some((name, command.as_ref()?)))
        .collect()
    }
}

/// Parses the text of a `devcontainer-feature.json` (JSONC); an empty file is an error naming the file.
pub fn parse_feature(file: &Path, text: &str) -> Result<FeatureManifest, ConfigError> {
    let value = parse_jsonc(file, text)?;
    let Value::Object(object) = value else {
        return Err(ConfigError::NotAnObject {
            file: file.to_path_buf(),
        });
    };
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|error| {
        let property = error
            .path()
            .iter()
            .find_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .unwrap_or_default();
        ConfigError::Invalid {
            file: file.to_path_buf(),
            property,
            message: format!("{}: {}", error.path(), error.inner()),
        }
    })
}

/// Parses JSONC text (comments, trailing commas) into a JSON value; for files other than devcontainer.json.
pub fn parse_jsonc_value(file: &Path, text: &str) -> Result<Value, ConfigError> {
    parse_jsonc(file, text)
}

/// Where a `features` key points, by the reference CLI's rules (`getFeatureIdType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureReference {
    /// `./x` or `../x`: a folder next to devcontainer.json.
    Local(String),
    /// `https://…/devcontainer-feature-<id>.tgz`.
    Tarball(String),
    /// `registry/namespace/id[:tag|@digest]`; legacy short ids are mapped here too.
    Oci(String),
    /// A bare id the reference CLI does not map (or an absolute path): always an error.
    Unsupported(String),
}

/// Legacy short ids the reference CLI maps to `ghcr.io/devcontainers/features/<id>:1`.
const LEGACY_IDS: &[(&str, &str)] = &[
    ("aws-cli", "aws-cli"),
    ("azure-cli", "azure-cli"),
    ("common", "common-utils"),
    ("conda", "conda"),
    ("desktop-lite", "desktop-lite"),
    ("docker-from-docker", "docker-outside-of-docker"),
    ("docker-in-docker", "docker-in-docker"),
    ("dotnet", "dotnet"),
    ("git", "git"),
    ("git-lfs", "git-lfs"),
    ("github-cli", "github-cli"),
    ("golang", "go"),
    ("hugo", "hugo"),
    ("java", "java"),
    ("kubectl-helm-minikube", "kubectl-helm-minikube"),
    ("node", "node"),
    ("powershell", "powershell"),
    ("python", "python"),
    ("ruby", "ruby"),
    ("rust", "rust"),
    ("sshd", "sshd"),
    ("terraform", "terraform"),
];

impl FeatureReference {
    /// Classifies a `features` key.
    pub fn classify(id: &str) -> FeatureReference {
        if id.starts_with("./") || id.starts_with("../") {
            return FeatureReference::Local(id.to_string());
        }
        if id.starts_with("https://") || id.starts_with("http://") {
            return FeatureReference::Tarball(id.to_string());
        }
        if id.contains('/') && !id.starts_with('/') {
            return FeatureReference::Oci(id.to_string());
        }
        let bare = id.split(['@', ':']).next().unwrap_or(id);
        match LEGACY_IDS.iter().find(|(legacy, _)| *legacy == bare) {
            Some((_, current)) => {
                FeatureReference::Oci(format!("ghcr.io/devcontainers/features/{current}:1"))
            }
            None => FeatureReference::Unsupported(id.to_string()),
        }
    }
}
