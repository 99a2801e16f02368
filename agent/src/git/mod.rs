//! git on the agent's machine: cloning a repository into the files folder (`skiff up GIT_URL`, so the bytes come
//! from the git server to the instance and not through the tunnel), and reading what a delete would lose
//! (uncommitted changes, commits on no remote-tracking branch, stashes).
//!
//! Every command runs with prompts off (no terminal is there to answer them), `safe.directory=*` (the files may
//! belong to the dev container's user, not the agent's), and never with an option taken from the client.
//! The files folder is the dev container's to write, so every read of a repository there goes through a
//! [`view::View`]: git as root never sees a config, hook or attribute file the container wrote.

use std::path::Path;
use std::process::Stdio;

use skiff::api::{Cloned, GitState, UnpushedBranch};
use tokio::io::AsyncReadExt;

mod view;

use view::View;

/// How many uncommitted paths `state` names.
pub const UNCOMMITTED_PATHS: usize = 5;

/// A git command that failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git is not installed where the agent runs.
    #[error(
        "git is not installed on the agent's machine; install it there (on Debian or Ubuntu: `sudo apt-get install -y git`), or upload a local folder with `skiff up PATH`"
    )]
    Missing,
    /// The URL cannot be a repository's.
    #[error("{url:?} is not a git URL: {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// The branch cannot be a branch's or tag's name.
    #[error("{branch:?} is not a branch or tag name: {reason}")]
    BadBranch {
        branch: String,
        reason: &'static str,
    },
    /// The files folder holds something other than a clone of this URL.
    #[error(
        "the workspace's files folder {folder} already holds files{}; delete the workspace to clone another repository into it",
        origin.as_ref().map(|origin| format!(" (a clone of {origin})")).unwrap_or_default()
    )]
    NotEmpty {
        folder: String,
        origin: Option<String>,
    },
    /// git ran and failed.
    #[error("{what} failed ({status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },
    /// The repository in the files folder is not one skiff reads safely (a link where git keeps a file, a
    /// `.git` file instead of a folder, a file too large).
    #[error("the repository in the workspace's files folder cannot be read: {reason}")]
    Unreadable { reason: String },
    /// git could not be run.
    #[error("running git: {0}")]
    Io(#[from] std::io::Error),
}

/// A git command for `clone`, which writes into a folder but reads no repository there.
fn git() -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .args(["-c", "safe.directory=*", "-c", "protocol.ext.allow=never"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    // ssh would ask about an unknown host key on a terminal that is not there; fail instead.
    if std::env::var_os("GIT_SSH_COMMAND").is_none() {
        command.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    command
}

pub(crate) fn spawn_error(error: std::io::Error) -> GitError {
    if error.kind() == std::io::ErrorKind::NotFound {
        GitError::Missing
    } else {
        GitError::Io(error)
    }
}

/// Runs git on the repository `view` shows and returns its standard output, or why it failed.
async fn output(view: &View, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let output = tokio::time::timeout(view::READ_TIMEOUT, view.command().args(args).output())
        .await
        .map_err(|_| GitError::Failed {
            what: format!("git {}", args.join(" ")),
            status: format!("no answer within {} s", view::READ_TIMEOUT.as_secs()),
            stderr: String::new(),
        })?
        .map_err(spawn_error)?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(GitError::Failed {
            what: format!("git {}", args.join(" ")),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// Trimmed standard output of git on `view`, or `None` when it fails.
async fn line(view: &View, args: &[&str]) -> Result<Option<String>, GitError> {
    match output(view, args).await {
        Ok(stdout) => Ok(Some(String::from_utf8_lossy(&stdout).trim().to_owned())),
        Err(GitError::Failed { .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Checks a URL before it reaches `git clone` (which gets it after `--`, so it can never be an option).
pub fn check_url(url: &str) -> Result<(), GitError> {
    let bad = |reason| {
        Err(GitError::BadUrl {
            url: url.to_owned(),
            reason,
        })
    };
    if url.trim().is_empty() {
        return bad("it is empty");
    }
    if url.starts_with('-') {
        return bad("it begins with -");
    }
    if url.chars().any(char::is_control) {
        return bad("it holds a control character");
    }
    Ok(())
}

/// Checks a branch or tag name before it reaches `git clone --branch` (it is also a separate argument after
/// `--branch`, so it can never be an option).
pub fn check_branch(branch: &str) -> Result<(), GitError> {
    skiff::git_ref::check(branch).map_err(|reason| GitError::BadBranch {
        branch: branch.to_owned(),
        reason,
    })
}

/// Clones `url` into `folder` (absent or empty), at `branch` when given, handing git's progress output to `output`
/// as it comes. A folder that already holds a clone of `url` is kept as it is.
pub async fn clone(
    url: &str,
    branch: Option<&str>,
    folder: &Path,
    mut output: impl FnMut(Vec<u8>),
) -> Result<Cloned, GitError> {
    check_url(url)?;
    let not_empty = folder
        .read_dir()
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    if not_empty {
        let view = View::of(folder).await?;
        let origin = match &view {
            Some(view) => line(view, &["config", "--get", "remote.origin.url"]).await?,
            None => None,
        };
        if let Some(view) = &view
            && origin.as_deref() == Some(url)
        {
            return Ok(Cloned {
                files_folder: folder.display().to_string(),
                cloned: false,
                head: head(view).await?,
            });
        }
        return Err(GitError::NotEmpty {
            folder: folder.display().to_string(),
            origin,
        });
    }
    if let Some(parent) = folder.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut command = git();
    command.args(["clone", "--progress"]);
    if let Some(branch) = branch {
        command.arg("--branch").arg(branch);
    }
    let mut child = command
        .arg("--")
        .arg(url)
        .arg(folder)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut tail = Vec::new();
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = stderr.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        tail.extend_from_slice(&buffer[..read]);
        if tail.len() > 4096 {
            tail.drain(..tail.len() - 4096);
        }
        output(buffer[..read].to_vec());
    }
    let status = child.wait().await?;
    if !status.success() {
        let text = String::from_utf8_lossy(&tail);
        // Progress lines end in carriage returns; the last real lines say why.
        let reason: Vec<&str> = text
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .collect();
        let reason = reason[reason.len().saturating_sub(3)..].join("; ");
        return Err(GitError::Failed {
            what: format!("git clone {url}"),
            status: status.to_string(),
            stderr: reason,
        });
    }
    let head = match View::of(folder).await? {
        Some(view) => head(&view).await?,
        None => None,
    };
    Ok(Cloned {
        files_folder: folder.display().to_string(),
        cloned: true,
        head,
    })
}

/// The commit checked out in `folder`, if there is one.
async fn head(view: &View) -> Result<Option<String>, GitError> {
    Ok(line(view, &["rev-parse", "--verify", "-q", "HEAD"])
        .await?
        .filter(|head| !head.is_empty()))
}

/// What a delete of `folder` would lose: uncommitted changes, commits on no remote-tracking branch, stashes.
/// A folder that is not the top of a repository has nothing to lose to git.
/// Submodules are not looked into (their own configs are the container's too, and git would run with them), so
/// each one counts as a change that may hold work: a delete asks before it can lose what is inside.
pub async fn state(folder: &Path) -> Result<GitState, GitError> {
    let Some(view) = View::of(folder).await? else {
        return Ok(GitState::default());
    };
    let status = output(
        &view,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=normal",
            "--ignore-submodules=all",
        ],
    )
    .await?;
    let mut changed = porcelain_paths(&status);
    let index = output(&view, &["ls-files", "--stage", "-z"]).await?;
    for submodule in gitlinks(&index) {
        if !changed.contains(&submodule) {
            changed.push(format!(
                "{submodule} (a submodule: changes inside it are not checked)"
            ));
        }
    }
    let mut unpushed = Vec::new();
    let branches = output(
        &view,
        &[
            "for-each-ref",
            "--format=%(refname)%00%(refname:short)%00%(upstream:short)",
            "refs/heads",
        ],
    )
    .await?;
    for line in String::from_utf8_lossy(&branches).lines() {
        let mut fields = line.split('\0');
        let (Some(reference), Some(name)) = (fields.next(), fields.next()) else {
            continue;
        };
        let upstream = fields.next().filter(|upstream| !upstream.is_empty());
        let count = count(
            &view,
            &["rev-list", "--count", reference, "--not", "--remotes"],
        )
        .await?;
        if count > 0 {
            unpushed.push(UnpushedBranch {
                branch: name.to_owned(),
                commits: count,
                upstream: upstream.map(str::to_owned),
            });
        }
    }
    // Commits only a detached HEAD reaches are on no branch at all.
    if line(&view, &["symbolic-ref", "-q", "HEAD"])
        .await?
        .is_none()
    {
        let count = count(
            &view,
            &[
                "rev-list",
                "--count",
                "HEAD",
                "--not",
                "--branches",
                "--remotes",
            ],
        )
        .await?;
        if count > 0 {
            unpushed.push(UnpushedBranch {
                branch: "HEAD".into(),
                commits: count,
                upstream: None,
            });
        }
    }
    let stashes = line(&view, &["stash", "list"]).await?.map_or(0, |list| {
        list.lines().filter(|line| !line.is_empty()).count()
    });
    Ok(GitState {
        repository: true,
        uncommitted: u32::try_from(changed.len()).unwrap_or(u32::MAX),
        uncommitted_paths: changed.into_iter().take(UNCOMMITTED_PATHS).collect(),
        unpushed,
        stashes: u32::try_from(stashes).unwrap_or(u32::MAX),
    })
}

async fn count(view: &View, args: &[&str]) -> Result<u32, GitError> {
    Ok(line(view, args)
        .await?
        .and_then(|count| count.parse().ok())
        .unwrap_or(0))
}

/// The paths of the submodules (gitlinks, mode 160000) in `git ls-files --stage -z` output.
pub fn gitlinks(staged: &[u8]) -> Vec<String> {
    staged
        .split(|byte| *byte == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            let (fields, path) = entry.split_once('\t')?;
            fields.starts_with("160000 ").then(|| path.to_owned())
        })
        .collect()
}

/// The paths of `git status --porcelain=v1 -z` output (a rename's or copy's source is skipped).
pub fn porcelain_paths(status: &[u8]) -> Vec<String> {
    let mut paths = Vec::new();
    let mut fields = status.split(|byte| *byte == 0);
    while let Some(field) = fields.next() {
        if field.len() < 4 {
            continue;
        }
        let code = &field[..2];
        paths.push(String::from_utf8_lossy(&field[3..]).into_owned());
        if code.contains(&b'R') || code.contains(&b'C') {
            fields.next();
        }
    }
    paths
}

#[cfg(test)]
mod tests;
