//! `ReadConfig`: the devcontainer.json inside the files folder, found as `skiff::devcontainer::find_config` finds a
//! local one, and returned as text for the client to parse and resolve. Nothing outside the files folder is read,
//! even through a link (the read goes through `super::beneath`).
//!
//! The files folder of a cloned repository is writable from the dev container, so what `ReadConfig` answers is the
//! copy pinned in the agent's state folder when the repository was cloned (or the config first read): a container
//! that writes `"privileged": true` into the clone's devcontainer.json changes nothing for the next `up`. Only a
//! request with `refresh` (`skiff up --rebuild`, asked on the laptop) reads the clone again and pins that.

use std::path::{Path, PathBuf};

use skiff::api::RemoteConfig;
use skiff::devcontainer::{self, ConfigError};

/// The largest config file returned; a devcontainer.json is a few kilobytes.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// A config that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadConfigError {
    /// No config file was found, or the one named is not there or misnamed.
    #[error("in the workspace's files: {0}")]
    NotFound(ConfigError),
    /// The path named, or the file found, is outside the files folder.
    #[error("config file {path}: outside the files folder {folder}")]
    Outside { path: String, folder: String },
    /// The file could not be read.
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Finds and reads the config of `folder`: `config_path` (relative to it) when given, else discovery.
pub fn read(folder: &Path, config_path: Option<&str>) -> Result<RemoteConfig, ReadConfigError> {
    let outside = |path: &str| ReadConfigError::Outside {
        path: path.to_owned(),
        folder: folder.display().to_string(),
    };
    let explicit = match config_path {
        Some(text) => Some(folder.join(super::relative_path(text).ok_or_else(|| outside(text))?)),
        None => None,
    };
    let found = devcontainer::find_config(folder, explicit.as_deref())
        .map_err(ReadConfigError::NotFound)?;
    let read_error = |source| ReadConfigError::Read {
        path: found.display().to_string(),
        source,
    };
    let relative_found = found
        .strip_prefix(folder)
        .map_err(|_| outside(&found.display().to_string()))?;
    // The file (or a link on its way) may point anywhere; it is opened beneath the folder, so only what resolves
    // inside it is read, whatever the dev container swaps in meanwhile.
    let beneath = super::beneath::Folder::open(folder).map_err(read_error)?;
    let text = beneath
        .read_text(relative_found, MAX_CONFIG_BYTES)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                outside(&found.display().to_string())
            } else {
                read_error(source)
            }
        })?;
    let relative = found
        .strip_prefix(folder)
        .ok()
        .and_then(super::relative_key)
        .ok_or_else(|| outside(&found.display().to_string()))?;
    Ok(RemoteConfig {
        files_folder: folder.display().to_string(),
        config_path: relative,
        text,
    })
}

/// The pinned copy of the config, in the agent's state folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Pinned {
    /// The `config_path` it was read for (`None`: discovery).
    requested: Option<String>,
    /// The config file found, relative to the files folder.
    config_path: String,
    /// Its text.
    text: String,
}

/// Where the pinned copy is kept: the state folder, which the dev container cannot write.
pub fn pin_file(state: &Path) -> PathBuf {
    state.join("pinned-config.json")
}

/// `ReadConfig`: the copy pinned for `config_path`, or (none pinned for it, or `refresh`) the file read from `folder`
/// and pinned in `pin`.
pub fn read_pinned(
    folder: &Path,
    pin: &Path,
    config_path: Option<&str>,
    refresh: bool,
) -> Result<RemoteConfig, ReadConfigError> {
    let requested = config_path.map(str::to_owned);
    if !refresh
        && let Some(pinned) = std::fs::read(pin)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Pinned>(&bytes).ok())
            .filter(|pinned| pinned.requested == requested)
    {
        return Ok(RemoteConfig {
            files_folder: folder.display().to_string(),
            config_path: pinned.config_path,
            text: pinned.text,
        });
    }
    let config = read(folder, config_path)?;
    let pinned = Pinned {
        requested,
        config_path: config.config_path.clone(),
        text: config.text.clone(),
    };
    let write_error = |source| ReadConfigError::Read {
        path: pin.display().to_string(),
        source,
    };
    let bytes =
        serde_json::to_vec(&pinned).map_err(|error| write_error(std::io::Error::other(error)))?;
    skiff::atomic::write(pin, &bytes, 0o600).map_err(write_error)?;
    Ok(config)
}

/// Drops the pinned copy (the files folder holds a new clone).
pub fn unpin(pin: &Path) {
    let _ = std::fs::remove_file(pin);
}
