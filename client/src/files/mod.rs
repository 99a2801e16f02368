//! The workspace's files, from this machine to the agent's (an AWS workspace; the local provider mounts the folder
//! and needs none of this): `walk` lists the folder as git sees it (its ignore rules, plus the `.git` folder itself),
//! `pack` makes a zstd-compressed tar of it as a stream, `upload` sends that over one connection or deals it in
//! stripes to several (a Session Manager session moves about 1 MB/s, so a pool of them is faster), `sync` sends
//! only what changed since the last upload or sync, `remote` has the agent clone a git URL instead and reads the
//! devcontainer.json inside the clone, and `unsaved` warns before a delete loses uncommitted or unpushed work.

mod pack;
mod remote;
mod sync;
mod unsaved;
mod upload;
mod walk;

#[cfg(test)]
mod tests;

pub use pack::{Packed, pack};
pub use remote::{Repository, clone_remote, fetch_config, git_url, name_from_url};
pub use sync::{SyncOptions, SyncOutcome, SyncPlan, plan_sync, sync};
pub use unsaved::{DeleteDecision, check_before_delete, describe_unsaved};
pub use upload::{STRIPE_SIZE, Transfer, UploadOutcome, upload};
pub use walk::{Entry, walk};

use crate::agent_client::AgentError;

/// A failure moving the workspace's files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The folder could not be listed.
    #[error("listing {folder}: {detail}")]
    Walk { folder: String, detail: String },
    /// A file could not be read into the archive.
    #[error("packing {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The archive could not be written (its connection closed).
    #[error("writing the archive: {0}")]
    Write(#[source] std::io::Error),
    /// The agent refused or the connection failed.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The agent is older than this client and cannot do what was asked.
    #[error(
        "the workspace's agent (version {agent_version}) cannot {what}; recreate the workspace with this skiff's agent"
    )]
    Unsupported {
        agent_version: String,
        what: &'static str,
    },
    /// The devcontainer.json in the agent's files is broken.
    #[error(transparent)]
    Config(#[from] skiff::devcontainer::ConfigError),
    /// Something else went wrong, said in words.
    #[error("{0}")]
    Other(String),
}

/// Human-readable bytes: `12 KiB`, `3.4 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}
