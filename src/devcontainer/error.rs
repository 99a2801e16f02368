//! The errors of finding, reading, parsing and substituting a devcontainer.json (`ConfigError`, `KindError`).
//!
//! Every message names the file (or the property) first; causes are kept as `source` rather than repeated in the message, so print the
//! chain (`{err:#}` with anyhow) to see them.

use std::fmt;
use std::path::PathBuf;

/// Why a devcontainer.json could not be found, read, parsed or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Discovery found neither `.devcontainer/devcontainer.json` nor `.devcontainer.json`.
    #[error("no devcontainer.json in {}: looked for {}; create one or pass --config{}", folder.display(), PathList(looked_in), SubFolderHint(sub_folder_configs))]
    NotFound {
        folder: PathBuf,
        /// The paths discovery tried, in order.
        looked_in: Vec<PathBuf>,
        /// Configs in sub-folders of `.devcontainer/`, which are only used when named with `--config`.
        sub_folder_configs: Vec<PathBuf>,
    },

    /// The path given with `--config` does not exist.
    #[error("{}: no such config file; check the --config path", file.display())]
    ConfigFileMissing { file: PathBuf },

    /// The path given with `--config` is not named `devcontainer.json` or `.devcontainer.json` (the reference CLI rejects those too).
    #[error("{}: a config file must be named devcontainer.json or .devcontainer.json", file.display())]
    BadFileName { file: PathBuf },

    #[error("{}: could not read the file", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not JSONC (JSON with comments and trailing commas).
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        /// 1-based.
        line: usize,
        /// 1-based, counted in characters.
        column: usize,
        message: String,
    },

    /// The file is JSONC but its top-level value is not an object.
    #[error("{}: must contain a JSON object ({{ ... }}) at the top level", file.display())]
    NotAnObject { file: PathBuf },

    /// A property has the wrong type or value.
    #[error("{}: property \"{property}\": {message}", file.display())]
    Invalid {
        file: PathBuf,
        /// The top-level property, as written in the file.
        property: String,
        /// What is wrong, starting with the full path when the problem is inside the property (`build.args.X: ...`).
        message: String,
    },

    /// The config is none of image, Dockerfile or compose, or is two of them.
    #[error("{}: {problem}", file.display())]
    Kind { file: PathBuf, problem: KindError },

    /// A variable that needs a name has none (`${localEnv}`, `${containerEnv}`).
    #[error("{property}: {expression} names no variable; write ${{{variable}:NAME}}")]
    Variable {
        /// Where the expression is, e.g. `remoteEnv.PATH`.
        property: String,
        /// The expression as written.
        expression: String,
        /// The kind of variable (`localEnv`, `env` or `containerEnv`).
        variable: String,
    },
}

/// Why `DevContainer::kind` could not tell the kind of a config; `ConfigError::Kind` adds the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KindError {
    #[error(r#"missing one of "image", "build.dockerfile" or "dockerComposeFile""#)]
    Missing,
    #[error(r#""image" and "build" are both set; use "image" for an image config or "build" for a Dockerfile config, not both"#)]
    ImageAndBuild,
}

/// Formats paths as `A`, `A and B` or `A, B and C`.
struct PathList<'a>(&'a [PathBuf]);

impl fmt::Display for PathList<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, path) in self.0.iter().enumerate() {
            if index > 0 {
                let separator = if index + 1 == self.0.len() {
                    " and "
                } else {
                    ", "
                };
                formatter.write_str(separator)?;
            }
            write!(formatter, "{}", path.display())?;
        }
        Ok(())
    }
}

/// Points at configs in sub-folders, which discovery does not pick on its own.
struct SubFolderHint<'a>(&'a [PathBuf]);

impl fmt::Display for SubFolderHint<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [] => Ok(()),
            [one] => write!(
                formatter,
                " (found {}, which needs --config)",
                one.display()
            ),
            many => write!(
                formatter,
                " (found {}, which need --config)",
                PathList(many)
            ),
        }
    }
}
