//! `ReadConfig`: the devcontainer.json inside the files folder, found as `skiff::devcontainer::find_config` finds a
//! local one, and returned as text for the client to parse and resolve. Nothing outside the files folder is read,
//! even through a link.

use std::path::Path;

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
    // The file (or a link on its way) may point anywhere; only what resolves inside the folder is read.
    let real_folder = folder.canonicalize().map_err(read_error)?;
    let real_file = found.canonicalize().map_err(read_error)?;
    if !real_file.starts_with(&real_folder) {
        return Err(outside(&found.display().to_string()));
    }
    let file = std::fs::File::open(&real_file).map_err(read_error)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_CONFIG_BYTES), &mut text)
        .map_err(read_error)?;
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
