//! Finding a workspace's devcontainer.json (`find_config`) and reading it (`load`) into a `LoadedConfig`.

use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::model::{ConfigKind, DevContainer};
use super::parse::parse;

/// A config file read, parsed and dispatched, with the folder it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// Absolute path of the devcontainer.json.
    pub config_file: PathBuf,
    /// Absolute path of the local workspace folder.
    pub workspace_folder: PathBuf,
    pub config: DevContainer,
    /// How the container is made; loading fails when the config does not say.
    pub kind: ConfigKind,
    /// Legacy and unknown properties, one line each, without the file name.
    pub warnings: Vec<String>,
}

impl LoadedConfig {
    /// `workspaceFolder`, or its default for this workspace (see `DevContainer::effective_workspace_folder`).
    pub fn effective_workspace_folder(&self) -> String {
        self.config
            .effective_workspace_folder(&self.workspace_folder)
    }
}

/// The config file of `workspace_folder`: `explicit` when given, else `.devcontainer/devcontainer.json`, else `.devcontainer.json`.
///
/// A relative `explicit` path is relative to the current directory, not to the workspace, as with `--config` in the reference CLI.
/// It must exist and be named `devcontainer.json` or `.devcontainer.json`.
/// Configs in sub-folders (`.devcontainer/<name>/devcontainer.json`) are never picked on their own, but `NotFound` mentions them.
/// The returned path is absolute (without resolving symbolic links).
pub fn find_config(
    workspace_folder: &Path,
    explicit: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    if let Some(explicit) = explicit {
        let file = absolute(explicit)?;
        let name = file.file_name().and_then(|name| name.to_str());
        if !matches!(name, Some("devcontainer.json" | ".devcontainer.json")) {
            return Err(ConfigError::BadFileName { file });
        }
        if !file.is_file() {
            return Err(ConfigError::ConfigFileMissing { file });
        }
        return Ok(file);
    }

    let folder = absolute(workspace_folder)?;
    let looked_in = vec![
        folder.join(".devcontainer").join("devcontainer.json"),
        folder.join(".devcontainer.json"),
    ];
    if let Some(found) = looked_in.iter().find(|candidate| candidate.is_file()) {
        return Ok(found.clone());
    }
    Err(ConfigError::NotFound {
        sub_folder_configs: sub_folder_configs(&folder.join(".devcontainer")),
        folder,
        looked_in,
    })
}

/// Finds, reads and parses the config of `workspace_folder` (see `find_config` and `parse`) and checks that its kind is known.
///
/// Variables are not substituted; that is `substitute_local`'s job.
pub fn load(workspace_folder: &Path, explicit: Option<&Path>) -> Result<LoadedConfig, ConfigError> {
    let config_file = find_config(workspace_folder, explicit)?;
    let text = std::fs::read_to_string(&config_file).map_err(|source| ConfigError::Io {
        file: config_file.clone(),
        source,
    })?;
    let (config, warnings) = parse(&config_file, &text)?;
    let kind = config.kind().map_err(|problem| ConfigError::Kind {
        file: config_file.clone(),
        problem,
    })?;
    Ok(LoadedConfig {
        workspace_folder: absolute(workspace_folder)?,
        config_file,
        config,
        kind,
        warnings,
    })
}

fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|source| ConfigError::Io {
        file: path.to_path_buf(),
        source,
    })
}

/// `<folder>/<name>/devcontainer.json` files, sorted.
fn sub_folder_configs(folder: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut configs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("devcontainer.json"))
        .filter(|candidate| candidate.is_file())
        .collect();
    configs.sort();
    configs
}
