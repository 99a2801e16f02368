//! The agent's configuration file (`skiffd.toml`): which workspace it serves, where it listens,
//! whom it trusts, and when it stops an idle workspace.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the agent does when the workspace has been idle for the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdleAction {
    /// Stop the dev container and exit the agent (the local provider: the laptop is the machine).
    #[default]
    StopContainer,
    /// Power the machine off (an EC2 instance launched with `InstanceInitiatedShutdownBehavior=stop`).
    Poweroff,
}

/// The agent's configuration, read from TOML.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The workspace's name.
    pub workspace: String,
    /// Where to listen; port 0 picks a free port, which the agent writes to `<state_dir>/listen-address`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Allow `listen` to be an address other than loopback. skiffd is meant to be reached only through
    /// the tunnel, so this is refused unless said explicitly.
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// Stop the workspace after this long without activity (`"30m"`, `"2h"`; `"off"` or `"0"` disables it).
    #[serde(default = "default_idle_timeout", with = "idle_timeout_text")]
    pub idle_timeout: Option<Duration>,
    /// What stopping an idle workspace means.
    #[serde(default)]
    pub idle_action: IdleAction,
    /// Keep the workspace up while the dev container's CPU use is above this percentage (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy_cpu_percent: Option<f64>,
    /// The command that powers the machine off (`idle_action = "poweroff"`).
    #[serde(default = "default_poweroff_command")]
    pub poweroff_command: Vec<String>,
    /// The client certificate (PEM) the agent trusts; more can be added as `*.pem` in `<state_dir>/trusted-clients`.
    pub client_certificate: String,
    /// Where the agent keeps its key, its record of the workspace and its activity.
    pub state_dir: PathBuf,
    /// How long a connection may take from its accept to a completed TLS handshake (`"15s"`); a peer that
    /// has not authenticated by then is closed.
    #[serde(
        default = "default_handshake_timeout",
        with = "duration_text",
        skip_serializing_if = "is_default_handshake_timeout"
    )]
    pub handshake_timeout: Duration,
    /// How many connections may be in their TLS handshake at once; more are closed as they arrive.
    #[serde(
        default = "default_max_handshakes",
        skip_serializing_if = "is_default_max_handshakes"
    )]
    pub max_handshakes: usize,
    /// Registries whose logins this machine has itself, each with the Docker credential helper that gives it
    /// (`"123456789012.dkr.ecr.eu-west-1.amazonaws.com" = "ecr-login"`), for those the client sends none for
    /// (see `registry_helpers`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub registry_helpers: std::collections::BTreeMap<String, String>,
}

fn default_handshake_timeout() -> Duration {
    crate::server::DEFAULT_HANDSHAKE_TIMEOUT
}

fn is_default_handshake_timeout(timeout: &Duration) -> bool {
    *timeout == crate::server::DEFAULT_HANDSHAKE_TIMEOUT
}

fn default_max_handshakes() -> usize {
    crate::server::DEFAULT_MAX_HANDSHAKES
}

fn is_default_max_handshakes(max: &usize) -> bool {
    *max == crate::server::DEFAULT_MAX_HANDSHAKES
}

/// A duration as people write it (`"15s"`, `"500ms"`) or a number of seconds.
mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text {
            Seconds(u64),
            Words(String),
        }
        let duration = match <Text as serde::Deserialize>::deserialize(deserializer)? {
            Text::Seconds(seconds) => Duration::from_secs(seconds),
            Text::Words(text) => humantime::parse_duration(text.trim()).map_err(|error| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a duration like \"15s\": {error}"
                ))
            })?,
        };
        if duration.is_zero() {
            return Err(serde::de::Error::custom(
                "a duration of zero allows nothing",
            ));
        }
        Ok(duration)
    }
}

fn default_poweroff_command() -> Vec<String> {
    vec!["systemctl".into(), "poweroff".into()]
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The idle timeout when the configuration does not give one.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[expect(
    clippy::unnecessary_wraps,
    reason = "serde's default functions must return the field's type"
)]
fn default_idle_timeout() -> Option<Duration> {
    Some(DEFAULT_IDLE_TIMEOUT)
}

/// Parses an idle timeout as people write it: `"45m"`, `"2h"`, `"90s"`, `"off"`, `"0"`.
pub fn parse_idle_timeout(text: &str) -> Result<Option<Duration>, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("off") || text == "0" {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("{text:?} is not a duration like \"30m\" or \"off\": {error}"))?;
    Ok(if duration.is_zero() {
        None
    } else {
        Some(duration)
    })
}

/// Writes an idle timeout back in the form [`parse_idle_timeout`] reads.
pub fn format_idle_timeout(timeout: Option<Duration>) -> String {
    match timeout {
        None => "off".into(),
        Some(duration) => humantime::format_duration(duration).to_string(),
    }
}

mod idle_timeout_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(
        timeout: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_idle_timeout(*timeout))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Text {
            Seconds(u64),
            Words(String),
        }
        match <Text as serde::Deserialize>::deserialize(deserializer)? {
            Text::Seconds(0) => Ok(None),
            Text::Seconds(seconds) => Ok(Some(Duration::from_secs(seconds))),
            Text::Words(text) => super::parse_idle_timeout(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading agent configuration {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("agent configuration {path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// The listen address is not loopback and that was not allowed.
    #[error(
        "agent configuration {path}: listen = {listen} is not a loopback address; skiffd is reached only \
         through the tunnel, so it binds 127.0.0.1; set allow_non_loopback = true to bind {listen} anyway"
    )]
    NotLoopback { path: PathBuf, listen: SocketAddr },
    /// The workspace name is empty.
    #[error("agent configuration {path}: workspace is empty; give the workspace's name")]
    NoWorkspace { path: PathBuf },
}

impl AgentConfig {
    /// A configuration with every default: loopback on a free port, a 30-minute idle timeout.
    pub fn new(workspace: &str, client_certificate: &str, state_dir: &Path) -> Self {
        Self {
            workspace: workspace.to_owned(),
            listen: default_listen(),
            allow_non_loopback: false,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            idle_action: IdleAction::default(),
            busy_cpu_percent: None,
            poweroff_command: default_poweroff_command(),
            client_certificate: client_certificate.to_owned(),
            state_dir: state_dir.to_owned(),
            handshake_timeout: default_handshake_timeout(),
            max_handshakes: default_max_handshakes(),
            registry_helpers: std::collections::BTreeMap::new(),
        }
    }

    /// Reads and checks the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks configuration text; `path` names it in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().replace('\n', " "),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Checks what TOML alone cannot.
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        if self.workspace.trim().is_empty() {
            return Err(ConfigError::NoWorkspace {
                path: path.to_owned(),
            });
        }
        if !self.listen.ip().is_loopback() && !self.allow_non_loopback {
            return Err(ConfigError::NotLoopback {
                path: path.to_owned(),
                listen: self.listen,
            });
        }
        crate::registry_helpers::check(&self.registry_helpers).map_err(|message| {
            ConfigError::Parse {
                path: path.to_owned(),
                message,
            }
        })?;
        Ok(())
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("the agent configuration always serialises")
    }
}

#[cfg(test)]
mod tests;
