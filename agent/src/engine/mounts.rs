//! Mounts: the workspace's own mount, Docker's `--mount` syntax, and paths of the client's machine moved to
//! the files folder on this one.

use std::path::Path;

use skiff::api::UpSpec;
use skiff::devcontainer::DevContainer;

use super::{Engine, EngineError, Mount};

impl Engine {
    /// The workspace's own mount and the folder it appears at in the container.
    pub(super) fn workspace_mount(
        &self,
        config: &DevContainer,
        spec: &UpSpec,
    ) -> Result<(Option<Mount>, String), EngineError> {
        let local_folder = Path::new(&spec.local_folder);
        let workspace_folder = config.effective_workspace_folder(local_folder);
        match config.workspace_mount.as_deref() {
            // An empty workspaceMount means no workspace mount at all, as in the reference CLI.
            Some("") => Ok((None, workspace_folder)),
            Some(text) => {
                let mount = parse_mount(text).map_err(|message| EngineError::Config {
                    file: spec.config_file.clone(),
                    message: format!("\"workspaceMount\": {message}"),
                })?;
                // A bind mount of the client's folder is a bind mount of the files' folder here.
                let mount = match mount {
                    Mount::Bind {
                        source,
                        target,
                        read_only,
                    } => Mount::Bind {
                        source: relocate(
                            Path::new(&source),
                            local_folder,
                            Path::new(&spec.files_folder),
                        )
                        .to_string_lossy()
                        .into_owned(),
                        target,
                        read_only,
                    },
                    volume => volume,
                };
                Ok((Some(mount), workspace_folder))
            }
            None => Ok((
                Some(Mount::Bind {
                    source: spec.files_folder.clone(),
                    target: DevContainer::default_workspace_folder(local_folder),
                    read_only: false,
                }),
                workspace_folder,
            )),
        }
    }
}

/// Parses Docker's `--mount` syntax (`type=bind,source=/a,target=/b,readonly`).
pub fn parse_mount(text: &str) -> Result<Mount, String> {
    let mut kind = "volume";
    let mut source = None;
    let mut target = None;
    let mut read_only = false;
    for part in text.split(',') {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        match key.trim() {
            "type" => {
                kind = if value == "bind" {
                    "bind"
                } else if value == "volume" {
                    "volume"
                } else {
                    return Err(format!(
                        "{text:?}: mount type {value:?} is not supported; use bind or volume"
                    ));
                }
            }
            "source" | "src" => source = Some(value.to_owned()),
            "target" | "destination" | "dst" => target = Some(value.to_owned()),
            "readonly" | "ro" => read_only = value.is_empty() || value == "true" || value == "1",
            // Consistency only matters to Docker Desktop on macOS; Docker ignores it elsewhere.
            "consistency" | "bind-propagation" | "volume-nocopy" => {}
            other => return Err(format!("{text:?}: mount option {other:?} is not supported")),
        }
    }
    let target = target.ok_or_else(|| format!("{text:?}: a mount needs target="))?;
    Ok(if kind == "bind" {
        Mount::Bind {
            source: source.ok_or_else(|| format!("{text:?}: a bind mount needs source="))?,
            target,
            read_only,
        }
    } else {
        Mount::Volume {
            source: source.filter(|source| !source.is_empty()),
            target,
        }
    })
}

/// Moves `path` from under `from` to under `to`; paths outside `from` stay as they are.
pub(super) fn relocate(path: &Path, from: &Path, to: &Path) -> std::path::PathBuf {
    match path.strip_prefix(from) {
        Ok(relative) => to.join(relative),
        Err(_) => path.to_owned(),
    }
}
