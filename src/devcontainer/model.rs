//! The serde model of devcontainer.json (`DevContainer` and the types of its properties) and the path helpers the engine needs.
//!
//! The model is what the parser produces after legacy migration, and it is also what the client sends to the agent as JSON, so every type
//! serialises back to the shape it was read from.
//! Parsing, migration and error mapping live in `parse.rs`; variable substitution lives in `substitute.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::error::KindError;

/// One devcontainer.json, after legacy properties were migrated (see `parse`).
///
/// Every property is optional because which ones are required depends on the kind of config (`DevContainer::kind`).
/// Property names are the camelCase names of the spec; unknown properties are kept in `other` so they survive a round trip.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevContainer {
    /// The JSON schema the file claims to follow; only kept so the file round-trips.
    #[serde(rename = "$schema", skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// Image-based config: the image to run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Dockerfile-based config (the legacy top-level `dockerFile` and `context` are migrated here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,

    /// Compose-based config: compose file(s) relative to the config file's folder; later files override earlier ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub docker_compose_file: Option<StringOrList>,
    /// The compose service that is the dev container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The compose services to start; all of them when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_services: Option<Vec<String>>,

    /// The folder in the container that tools open and lifecycle commands run in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_folder: Option<String>,
    /// The `--mount` spec of the workspace; `""` means no workspace mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_mount: Option<String>,
    /// Extra mounts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<Mount>>,

    /// Environment of the container itself, fixed at create time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_env: Option<BTreeMap<String, String>>,
    /// Environment of processes that tools start in the container; `None` (JSON `null`) unsets a variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_env: Option<BTreeMap<String, Option<String>>>,
    /// The user the container runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_user: Option<String>,
    /// The user lifecycle commands and tool processes run as; defaults to `containerUser`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_user: Option<String>,
    /// Whether to rewrite the remote user's UID/GID to the host's (Linux hosts only).
    #[serde(
        rename = "updateRemoteUserUID",
        skip_serializing_if = "Option::is_none"
    )]
    pub update_remote_user_uid: Option<bool>,
    /// The shell used to probe the environment for tool processes.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_env_probe: Option<UserEnvProbe>,

    /// Whether to replace the image's command with a keep-alive loop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_command: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_add: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_opt: Option<Vec<String>>,
    /// Raw `docker run` flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_args: Option<Vec<String>>,

    /// Ports published when the container is created (image and Dockerfile configs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_port: Option<AppPort>,
    /// Ports the tool forwards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_ports: Option<Vec<ForwardPort>>,
    /// Per-port forwarding options, keyed by port, `host:port`, range or regular expression.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports_attributes: Option<BTreeMap<String, PortAttributes>>,
    /// Forwarding options for ports not named in `portsAttributes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_ports_attributes: Option<PortAttributes>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub shutdown_action: Option<ShutdownAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_requirements: Option<HostRequirements>,

    /// Tool-specific settings (`vscode`, `codespaces`, ...); legacy `extensions`, `settings` and `devPort` end up in `vscode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customizations: Option<Map<String, Value>>,
    /// Recommended secrets (metadata only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<BTreeMap<String, SecretDescription>>,
    /// Features to install, keyed by feature id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<BTreeMap<String, FeatureValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_feature_install_order: Option<Vec<String>>,

    /// Runs on the host (where the source is) before the container is built or started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initialize_command: Option<LifecycleCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_create_command: Option<LifecycleCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_content_command: Option<LifecycleCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_create_command: Option<LifecycleCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start_command: Option<LifecycleCommand>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_attach_command: Option<LifecycleCommand>,
    /// The lifecycle command the tool blocks on before the container counts as ready.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub wait_for: Option<WaitFor>,

    /// A property literally named `additionalProperties`, which the spec's schema declares by mistake; kept so it is not reported as unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additional_properties: Option<Map<String, Value>>,

    /// Properties this model does not know, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `build`: how to build the image of a Dockerfile config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Build {
    /// Dockerfile path relative to the config file's folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build context relative to the config file's folder; see `DevContainer::context_dir` for the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_from: Option<StringOrList>,
    /// Raw extra `docker build` flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// Properties of `build` this model does not know, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A property that is either one string or a list of strings (`dockerComposeFile`, `build.cacheFrom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "expected a string or an array of strings")]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    /// The strings, in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            StringOrList::One(one) => std::slice::from_ref(one),
            StringOrList::Many(many) => many,
        }
    }
}

/// One entry of `mounts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a --mount string or an object with \"type\" (bind or volume), \"target\" and optionally \"source\""
)]
pub enum Mount {
    /// Docker `--mount` syntax, passed through.
    Spec(String),
    Object(MountObject),
}

impl Mount {
    /// The mount in Docker `--mount` syntax (objects become `type=X,src=Y,dst=Z` as the reference CLI writes them).
    pub fn to_mount_spec(&self) -> String {
        match self {
            Mount::Spec(spec) => spec.clone(),
            Mount::Object(object) => {
                let mut spec = format!("type={}", object.kind.as_str());
                if let Some(source) = &object.source {
                    spec.push_str(&format!(",src={source}"));
                }
                spec.push_str(&format!(",dst={}", object.target));
                spec
            }
        }
    }
}

/// The object form of a mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountObject {
    #[serde(rename = "type")]
    pub kind: MountType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub target: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MountType {
    Bind,
    Volume,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
        }
    }
}

/// `appPort`: one port or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a port number, a string, or an array of them"
)]
pub enum AppPort {
    One(PortSpec),
    Many(Vec<PortSpec>),
}

impl AppPort {
    /// The ports, in order.
    pub fn as_slice(&self) -> &[PortSpec] {
        match self {
            AppPort::One(one) => std::slice::from_ref(one),
            AppPort::Many(many) => many,
        }
    }
}

/// One `appPort` entry: a number N publishes `127.0.0.1:N:N`; a string is passed to `docker run -p` unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, expecting = "expected a port number (0-65535) or a string")]
pub enum PortSpec {
    Number(u16),
    Text(String),
}

/// One `forwardPorts` entry: a port number, or `"host:port"` for a port of another host (usually a compose service).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardPort {
    Port(u16),
    HostPort { host: String, port: u16 },
}

impl ForwardPort {
    /// Parses the string form `host:port`, where the host is `[a-z0-9-]+` as the schema says.
    pub fn parse_host_port(text: &str) -> Option<ForwardPort> {
        let (host, port) = text.rsplit_once(':')?;
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        let port_ok =
            (1..=5).contains(&port.len()) && port.bytes().all(|byte| byte.is_ascii_digit());
        if !host_ok || !port_ok {
            return None;
        }
        Some(ForwardPort::HostPort {
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

impl fmt::Display for ForwardPort {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardPort::Port(port) => write!(formatter, "{port}"),
            ForwardPort::HostPort { host, port } => write!(formatter, "{host}:{port}"),
        }
    }
}

impl Serialize for ForwardPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ForwardPort::Port(port) => serializer.serialize_u16(*port),
            ForwardPort::HostPort { .. } => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for ForwardPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ForwardPortVisitor;

        impl Visitor<'_> for ForwardPortVisitor {
            type Value = ForwardPort;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a port number (0-65535) or a \"host:port\" string")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ForwardPort, E> {
                u16::try_from(value)
                    .map(ForwardPort::Port)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ForwardPort, E> {
                u16::try_from(value)
                    .map(ForwardPort::Port)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<ForwardPort, E> {
                ForwardPort::parse_host_port(value)
                    .ok_or_else(|| E::invalid_value(de::Unexpected::Str(value), &self))
            }
        }

        deserializer.deserialize_any(ForwardPortVisitor)
    }
}

/// Forwarding options of one port (`portsAttributes` values and `otherPortsAttributes`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocol: Option<PortProtocol>,
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub on_auto_forward: Option<OnAutoForward>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_local_port: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub elevate_if_needed: Option<bool>,
    /// Attributes this model does not know, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Reads an enumerated property leniently: a value outside its enumeration is left out, so the property's
/// default applies, as the reference CLI runs such a file; `schema::enum_warnings` reports it.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(value.and_then(|value| serde_json::from_value(value).ok()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PortProtocol {
    Http,
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnAutoForward {
    Notify,
    OpenBrowser,
    OpenBrowserOnce,
    OpenPreview,
    Silent,
    Ignore,
}

/// `userEnvProbe`: which shell probes the environment for tool processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UserEnvProbe {
    None,
    LoginShell,
    /// The reference CLI's default.
    #[default]
    LoginInteractiveShell,
    InteractiveShell,
}

/// `shutdownAction`: what to stop when the tool's window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ShutdownAction {
    None,
    StopContainer,
    StopCompose,
}

/// `waitFor`: the lifecycle command to block on; later ones may run in the background.
///
/// Variants are in lifecycle order, so `Ord` compares positions in the sequence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WaitFor {
    InitializeCommand,
    OnCreateCommand,
    /// The spec's default.
    #[default]
    UpdateContentCommand,
    PostCreateCommand,
    PostStartCommand,
}

/// `hostRequirements`: minimum resources of the host.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRequirements {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Bytes, or a number with a `tb`, `gb`, `mb` or `kb` suffix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// Same format as `memory`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuRequirement>,
    /// Requirements this model does not know, kept verbatim.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// `hostRequirements.gpu`: `true`, `false`, `"optional"` or detailed requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuRequirement {
    Required(bool),
    Optional,
    Detailed(GpuDetails),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

impl Serialize for GpuRequirement {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuRequirement::Required(required) => serializer.serialize_bool(*required),
            GpuRequirement::Optional => serializer.serialize_str("optional"),
            GpuRequirement::Detailed(details) => details.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for GpuRequirement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let expected = "true, false, \"optional\" or an object with \"cores\" and \"memory\"";
        match Value::deserialize(deserializer)? {
            Value::Bool(required) => Ok(GpuRequirement::Required(required)),
            Value::String(text) if text == "optional" => Ok(GpuRequirement::Optional),
            value @ Value::Object(_) => GpuDetails::deserialize(value)
                .map(GpuRequirement::Detailed)
                .map_err(de::Error::custom),
            other => Err(de::Error::custom(format!(
                "expected {expected}, found {other}"
            ))),
        }
    }
}

/// One `secrets` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretDescription {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation_url: Option<String>,
}

/// The value of one `features` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected an object of feature options, a version string, or a boolean"
)]
pub enum FeatureValue {
    /// `true` or `false`.
    Enabled(bool),
    /// Shorthand for the option `version`.
    Version(String),
    /// Option values by option id.
    Options(Map<String, Value>),
}

/// A lifecycle command (`initializeCommand`, `onCreateCommand`, ...) in one of its three forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a command string, an array of strings, or an object of named commands"
)]
pub enum LifecycleCommand {
    /// Run with `/bin/sh -c`.
    Shell(String),
    /// Run directly, without a shell.
    Exec(Vec<String>),
    /// Every named command runs in parallel; the step fails if any of them fails.
    Parallel(BTreeMap<String, SimpleCommand>),
}

impl LifecycleCommand {
    /// Whether there is nothing to run; the reference CLI skips an empty string, array or object.
    pub fn is_empty(&self) -> bool {
        match self {
            LifecycleCommand::Shell(command) => command.is_empty(),
            LifecycleCommand::Exec(argv) => argv.is_empty(),
            LifecycleCommand::Parallel(commands) => commands.is_empty(),
        }
    }
}

/// One named command of the parallel form of a lifecycle command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a command string or an array of strings"
)]
pub enum SimpleCommand {
    Shell(String),
    Exec(Vec<String>),
}

/// How the container is made: from an image, from a Dockerfile, or by Docker Compose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    Image,
    Dockerfile,
    Compose,
}

impl fmt::Display for ConfigKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            ConfigKind::Image => "image",
            ConfigKind::Dockerfile => "Dockerfile",
            ConfigKind::Compose => "compose",
        })
    }
}

impl DevContainer {
    /// The kind of config, dispatched as the reference CLI does: a Dockerfile first, then an image, then compose.
    pub fn kind(&self) -> Result<ConfigKind, KindError> {
        if self.image.is_some() && self.build.is_some() {
            return Err(KindError::ImageAndBuild);
        }
        if self.dockerfile().is_some() {
            Ok(ConfigKind::Dockerfile)
        } else if self.image.is_some() {
            Ok(ConfigKind::Image)
        } else if self.docker_compose_file.is_some() {
            Ok(ConfigKind::Compose)
        } else {
            Err(KindError::Missing)
        }
    }

    /// `build.dockerfile` as written.
    pub fn dockerfile(&self) -> Option<&str> {
        self.build.as_ref()?.dockerfile.as_deref()
    }

    /// The Dockerfile, resolved against the config file's folder; `None` when this is not a Dockerfile config.
    pub fn dockerfile_path(&self, config_file: &Path) -> Option<PathBuf> {
        Some(resolve_relative(
            config_folder(config_file),
            self.dockerfile()?,
        ))
    }

    /// The build context, resolved against the config file's folder; `None` when this is not a Dockerfile config.
    ///
    /// Without `build.context` this is the folder containing the Dockerfile, as in the reference CLI.
    /// (The spec says `"."`, which differs when the Dockerfile is elsewhere, e.g. `../Dockerfile`.)
    pub fn context_dir(&self, config_file: &Path) -> Option<PathBuf> {
        let dockerfile = self.dockerfile_path(config_file)?;
        match self
            .build
            .as_ref()
            .and_then(|build| build.context.as_deref())
        {
            Some(context) if !context.is_empty() => {
                Some(resolve_relative(config_folder(config_file), context))
            }
            _ => Some(
                dockerfile
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            ),
        }
    }

    /// The compose files, resolved against the config file's folder, in order.
    ///
    /// Empty when `dockerComposeFile` is absent or an empty list; the reference CLI then falls back to `COMPOSE_FILE` and
    /// `docker-compose.yml`, which is the caller's business.
    pub fn compose_files(&self, config_file: &Path) -> Vec<PathBuf> {
        let Some(files) = &self.docker_compose_file else {
            return Vec::new();
        };
        files
            .as_slice()
            .iter()
            .map(|file| resolve_relative(config_folder(config_file), file))
            .collect()
    }

    /// The default workspace folder of image and Dockerfile configs: `/workspaces/<basename of the local folder>`.
    ///
    /// The reference CLI uses the basename of the git root and appends the sub-path when the local folder is inside a repository;
    /// we mount the local folder itself.
    pub fn default_workspace_folder(local_folder: &Path) -> String {
        let basename = local_folder
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("/workspaces/{basename}")
    }

    /// `workspaceFolder`, or its default: `/` for compose configs (as in the reference CLI), `default_workspace_folder` otherwise.
    pub fn effective_workspace_folder(&self, local_folder: &Path) -> String {
        if let Some(folder) = &self.workspace_folder {
            return folder.clone();
        }
        if self.kind() == Ok(ConfigKind::Compose) {
            "/".to_string()
        } else {
            Self::default_workspace_folder(local_folder)
        }
    }

    /// The six lifecycle commands in the order they run, with their property names; absent ones are skipped.
    pub fn lifecycle_commands(&self) -> Vec<(&'static str, &LifecycleCommand)> {
        [
            ("initializeCommand", &self.initialize_command),
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

/// The folder containing the config file, which relative paths in it are resolved against.
pub(crate) fn config_folder(config_file: &Path) -> &Path {
    config_file.parent().unwrap_or(Path::new(""))
}

/// Joins `relative` onto `base` and removes `.` and `..` lexically, as the reference CLI's `path.posix.resolve` does.
///
/// The file system is not consulted, so symbolic links are not followed; an absolute `relative` replaces `base`.
pub(crate) fn resolve_relative(base: &Path, relative: &str) -> PathBuf {
    let mut resolved = PathBuf::new();
    for component in base.join(relative).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match resolved.components().next_back() {
                Some(Component::Normal(_)) => {
                    resolved.pop();
                }
                // Going above the root stays at the root, like `path.resolve`.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                // A relative path keeps its leading `..`s.
                _ => resolved.push(".."),
            },
            other => resolved.push(other.as_os_str()),
        }
    }
    resolved
}
