//! `skiff up GIT_URL`: the agent clones the repository on its own machine (bulk bytes never cross the tunnel), and
//! the client reads the devcontainer.json inside the clone through the agent and resolves it as a local one.
//!
//! What counts as a git URL: `https://`, `http://`, `ssh://`, `git://`, `git+ssh://`, `ssh+git://` and `file://`
//! URLs, and scp-like `user@host:path` (as `git@github.com:org/repo.git`) unless a local path of that name exists.
//! Everything else is a local folder, so `skiff up host:folder` or `skiff up ./a:b` stay folders.
//!
//! A URL may end in `@BRANCH` (the first `@` of its path, so the user of `git@host:repo` is not read as one) to check out that
//! branch or tag, and in `#PATH` to use that folder of the repository (a monorepo's project) as the workspace: its
//! devcontainer.json is found there, and it is the folder mounted in the dev container.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use skiff::api::{CloneEvent, Cloned, capability};
use skiff::devcontainer::{self, ConfigError, LoadedConfig};

use super::FilesError;
use crate::agent_client::AgentClient;

const URL_SCHEMES: [&str; 7] = [
    "https://",
    "http://",
    "ssh://",
    "git://",
    "git+ssh://",
    "ssh+git://",
    "file://",
];

/// The git URL `argument` names, or `None` when it is a local folder.
pub fn git_url(argument: &Path) -> Option<String> {
    let text = argument.to_str()?;
    if URL_SCHEMES.iter().any(|scheme| {
        text.len() > scheme.len()
            && text
                .get(..scheme.len())
                .is_some_and(|prefix| prefix.eq_ignore_ascii_case(scheme))
    }) {
        return Some(text.to_owned());
    }
    if is_scp_like(text) && argument.symlink_metadata().is_err() {
        return Some(text.to_owned());
    }
    None
}

/// A repository `skiff up` clones: `URL[@BRANCH][#PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// The URL, as git takes it.
    pub url: String,
    /// The branch or tag to check out; the default branch when `None`.
    pub branch: Option<String>,
    /// The folder of the repository that is the workspace; its top when `None`.
    pub subfolder: Option<PathBuf>,
}

impl Repository {
    /// Splits a git URL argument into the URL, `@BRANCH` and `#PATH`, checking the last two.
    pub fn parse(text: &str) -> Result<Self, FilesError> {
        let bad = |reason: String| FilesError::Other(format!("{text}: {reason}"));
        let (rest, subfolder) = match text.rsplit_once('#') {
            Some((rest, path)) => {
                let path = Path::new(path);
                let plain = !path.as_os_str().is_empty()
                    && path
                        .components()
                        .all(|part| matches!(part, std::path::Component::Normal(_)));
                if !plain {
                    return Err(bad(format!(
                        "#{} is not a folder inside the repository; write a relative path such as #services/api",
                        path.display()
                    )));
                }
                (rest, Some(path.to_owned()))
            }
            None => (text, None),
        };
        // The branch follows the first `@` of the path: after the host of a URL (whose user may hold an `@`), after
        // the `:` of an scp-like `user@host:path`. A branch may hold `/` (release/2026); a repository path an `@`
        // rarely does.
        let path_start = match rest.find("://") {
            Some(scheme_end) => {
                let authority = scheme_end + 3;
                rest[authority..]
                    .find('/')
                    .map_or(rest.len(), |slash| authority + slash)
            }
            None => rest.find(':').map_or(0, |colon| colon + 1),
        };
        let (url, branch) = match rest[path_start..].find('@') {
            Some(at) => {
                let at = path_start + at;
                let branch = &rest[at + 1..];
                if branch.is_empty() {
                    return Err(bad("nothing follows @; write URL@BRANCH".to_owned()));
                }
                skiff::git_ref::check(branch).map_err(|reason| {
                    bad(format!("@{branch} is not a branch or tag name: {reason}"))
                })?;
                (&rest[..at], Some(branch.to_owned()))
            }
            None => (rest, None),
        };
        Ok(Self {
            url: url.to_owned(),
            branch,
            subfolder,
        })
    }

    /// The workspace's default name: the subfolder's last part, else the repository's.
    pub fn name(&self) -> String {
        match self.subfolder.as_ref().and_then(|path| path.file_name()) {
            Some(last) => crate::workspace::name_from_folder(Path::new(last)),
            None => name_from_url(&self.url),
        }
    }
}

/// `user@host:path`: a user and host without `/`, then a colon and a non-empty path.
fn is_scp_like(text: &str) -> bool {
    let Some((user_host, path)) = text.split_once(':') else {
        return false;
    };
    let Some((user, host)) = user_host.split_once('@') else {
        return false;
    };
    let word = |part: &str, extra: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || extra.contains(character))
    };
    word(user, "._-") && word(host, ".-") && !path.is_empty() && !path.starts_with(':')
}

/// A workspace name for `url`: its last path segment without `.git`, as `workspace::name_from_folder` makes one.
pub fn name_from_url(url: &str) -> String {
    let path = url
        .split_once("://")
        .map_or_else(|| url.rsplit(':').next().unwrap_or(url), |(_, rest)| rest);
    let last = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let last = last.strip_suffix(".git").unwrap_or(last);
    crate::workspace::name_from_folder(Path::new(last))
}

/// Has the agent clone `repository` (at its branch) into its (empty) files folder, handing git's progress output
/// to `output`. A files folder that already holds a clone of its URL is kept (`Cloned::cloned` is then false).
pub async fn clone_remote(
    client: &mut AgentClient,
    repository: &Repository,
    output: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<Cloned, FilesError> {
    let version = client.version().await?;
    let can = |name: &str| version.capabilities.iter().any(|have| have == name);
    if !can(capability::CLONE) {
        return Err(FilesError::Unsupported {
            agent_version: version.agent_version,
            what: "clone a repository",
        });
    }
    if repository.branch.is_some() && !can(capability::CLONE_BRANCH) {
        return Err(FilesError::Unsupported {
            agent_version: version.agent_version,
            what: "clone a branch (URL@BRANCH)",
        });
    }
    let url = &repository.url;
    let mut events = client
        .clone_repository(url, repository.branch.as_deref())
        .await?;
    while let Some(event) = events.next().await {
        match event? {
            CloneEvent::Output(data) => output(&data),
            CloneEvent::Done(cloned) => return Ok(cloned),
        }
    }
    Err(FilesError::Other(format!(
        "the agent ended the clone of {url} without saying it is done"
    )))
}

/// Reads the devcontainer.json inside the agent's files folder (`config_path` relative to it, or discovery) and
/// parses it as `devcontainer::load` does a local one. Its paths (`config_file`, `workspace_folder`) are the
/// agent's; variables are not substituted yet (`devcontainer::substitute_local`, with the files folder as the
/// workspace folder).
///
/// The agent answers with the copy it pinned at clone time (the clone is writable from the dev container);
/// `refresh` (`skiff up --rebuild`) has it read the clone's file again and pin that.
pub async fn fetch_config(
    client: &mut AgentClient,
    config_path: Option<&str>,
    refresh: bool,
) -> Result<LoadedConfig, FilesError> {
    let remote = client.read_config(config_path, refresh).await?;
    let workspace_folder = PathBuf::from(&remote.files_folder);
    let config_file = workspace_folder.join(&remote.config_path);
    let (config, warnings) = devcontainer::parse(&config_file, &remote.text)?;
    let kind = config.kind().map_err(|problem| ConfigError::Kind {
        file: config_file.clone(),
        problem,
    })?;
    Ok(LoadedConfig {
        config_file,
        workspace_folder,
        config,
        kind,
        warnings,
    })
}
