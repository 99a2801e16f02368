//! A private view of a repository the dev container can write, so git reads it as root without running
//! anything the container planted.
//!
//! The files folder is bind-mounted read-write into the dev container, so its `.git/config` (and everything it
//! includes), its hooks and its `info/attributes` are the container's to write, and several of those make git
//! run a program (`core.fsmonitor`, `filter.*.clean` and `.process`, `core.hooksPath`, `diff.external`, …).
//! A view is a temporary git folder that only the agent writes: a config made of an allow-list of inert keys
//! copied as values (repository format, line endings, remotes and upstreams), `HEAD`, the refs, the index, the
//! stash's reflog, `info/exclude` and `shallow` copied as bytes, and the objects reached through `objects/info/alternates`;
//! git then runs with `GIT_DIR` on the view, `GIT_WORK_TREE` on the folder, no system or global config, an
//! empty environment and no hooks folder. What the view copies is read through descriptors opened beneath
//! `.git` without following links, as regular files of bounded size, so a link or a FIFO planted there is
//! refused rather than followed. Objects and the work tree are still read by path: a link there makes git read
//! other data (which only reaches the client that asked), never run a program.

use std::ffi::OsStr;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::{Mode, SFlag};

use super::GitError;

/// The largest file the view copies (`index`, `packed-refs`, the stash reflog, the config).
const MAX_FILE: u64 = 256 * 1024 * 1024;
/// The most files the view copies out of `refs/` (and `reftable/`).
const MAX_REFS: usize = 200_000;
/// How long one git command of a read may take.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Configuration keys copied from the container's config, as `git config --list` names them (lowercase
/// section and key; `*` a subsection). None of them names a program or a file.
const INERT_KEYS: &[&str] = &[
    "core.repositoryformatversion",
    "core.filemode",
    "core.ignorecase",
    "core.precomposeunicode",
    "core.symlinks",
    "core.autocrlf",
    "core.eol",
    "core.checkstat",
    "core.trustctime",
    "extensions.objectformat",
    "extensions.refstorage",
    "remote.*.url",
    "remote.*.fetch",
    "branch.*.remote",
    "branch.*.merge",
];

/// A temporary git folder standing in for `folder/.git`; removed when dropped.
#[derive(Debug)]
pub struct View {
    git_dir: tempfile::TempDir,
    work_tree: PathBuf,
}

impl View {
    /// Makes the view of the repository at the top of `folder`; `None` when `folder` has no `.git`.
    pub async fn of(folder: &Path) -> Result<Option<View>, GitError> {
        let folder = folder.to_owned();
        let view = tokio::task::spawn_blocking(move || View::copy(&folder))
            .await
            .map_err(std::io::Error::other)??;
        let Some(view) = view else {
            return Ok(None);
        };
        // The container's config is parsed by git from the view's copy, with includes off, then only the inert
        // keys are written back as values.
        let copied = view.git_dir.path().join("config.container");
        if copied.exists() {
            let listed = view
                .command()
                .args(["config", "--no-includes", "--null", "--list", "--file"])
                .arg(&copied)
                .output()
                .await
                .map_err(super::spawn_error)?;
            std::fs::remove_file(&copied)?;
            if !listed.status.success() {
                return Err(GitError::Unreadable {
                    reason: format!(
                        "its .git/config does not parse: {}",
                        String::from_utf8_lossy(&listed.stderr).trim()
                    ),
                });
            }
            std::fs::write(
                view.git_dir.path().join("config"),
                inert_config(&listed.stdout),
            )?;
        } else {
            std::fs::write(view.git_dir.path().join("config"), inert_config(b""))?;
        }
        Ok(Some(view))
    }

    /// A git command reading the folder through the view: an empty environment but `PATH`, no system or
    /// global config, no hooks, no fsmonitor, no replace refs, no prompt, no optional locks.
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("git");
        command.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        command
            .env("GIT_DIR", self.git_dir.path())
            .env("GIT_WORK_TREE", &self.work_tree)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1")
            .env("GIT_NO_REPLACE_OBJECTS", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("HOME", self.git_dir.path())
            .env("XDG_CONFIG_HOME", self.git_dir.path())
            .env("LC_ALL", "C")
            .args([
                "-c",
                "safe.directory=*",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "core.hooksPath=/dev/null",
            ])
            .arg("-C")
            .arg(&self.work_tree)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    fn copy(folder: &Path) -> Result<Option<View>, GitError> {
        let dot_git = match nix::fcntl::open(
            &folder.join(".git"),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(GitError::Unreadable {
                    reason: "its .git is a link or a file, not a folder; skiff reads only a plain repository there".into(),
                });
            }
            Err(error) => return Err(std::io::Error::from(error).into()),
        };
        let git_dir = tempfile::Builder::new()
            .prefix("skiff-git-view")
            .tempdir()?;
        let view = View {
            git_dir,
            work_tree: folder.to_owned(),
        };
        let root = view.git_dir.path();
        for (name, required) in [
            ("HEAD", true),
            ("packed-refs", false),
            ("index", false),
            ("shallow", false),
        ] {
            match read_beneath(&dot_git, name)? {
                Some(contents) => std::fs::write(root.join(name), contents)?,
                None if required => {
                    return Err(GitError::Unreadable {
                        reason: "its .git has no HEAD".into(),
                    });
                }
                None => {}
            }
        }
        if let Some(config) = read_beneath(&dot_git, "config")? {
            std::fs::write(root.join("config.container"), config)?;
        }
        // A split index keeps its shared part beside it.
        let mut entries = Dir::from_fd(dup(&dot_git)?).map_err(std::io::Error::from)?;
        for entry in entries.iter() {
            let entry = entry.map_err(std::io::Error::from)?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name.as_bytes().starts_with(b"sharedindex.")
                && let Some(contents) = read_beneath(&dot_git, name)?
            {
                std::fs::write(root.join(name), contents)?;
            }
        }
        let mut budget = MAX_REFS;
        for tree in ["refs", "reftable"] {
            copy_tree_beneath(&dot_git, tree, &root.join(tree), &mut budget)?;
        }
        std::fs::create_dir_all(root.join("refs/heads"))?;
        std::fs::create_dir_all(root.join("refs/tags"))?;
        // Patterns in `info/exclude` are data (which untracked files to ignore), unlike `info/attributes`.
        if let Some(exclude) = read_path_beneath(&dot_git, &["info", "exclude"])? {
            std::fs::create_dir_all(root.join("info"))?;
            std::fs::write(root.join("info/exclude"), exclude)?;
        }
        if let Some(stash_log) = read_path_beneath(&dot_git, &["logs", "refs", "stash"])? {
            std::fs::create_dir_all(root.join("logs/refs"))?;
            std::fs::write(root.join("logs/refs/stash"), stash_log)?;
        }
        std::fs::create_dir_all(root.join("objects/info"))?;
        let mut alternates = folder.join(".git/objects").into_os_string().into_vec();
        alternates.push(b'\n');
        std::fs::write(root.join("objects/info/alternates"), alternates)?;
        Ok(Some(view))
    }
}

fn dup(fd: &impl AsFd) -> std::io::Result<OwnedFd> {
    fd.as_fd().try_clone_to_owned()
}

/// Opens `name` beneath `directory` without following a link; `None` when it is absent.
fn open_beneath(
    directory: &impl AsFd,
    name: &OsStr,
    flags: OFlag,
) -> std::io::Result<Option<OwnedFd>> {
    match nix::fcntl::openat(
        directory.as_fd(),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The bytes of the regular file `name` beneath `directory`, at most [`MAX_FILE`]; `None` when absent.
fn read_beneath(
    directory: &impl AsFd,
    name: impl AsRef<OsStr>,
) -> Result<Option<Vec<u8>>, GitError> {
    let name = name.as_ref();
    let Some(fd) =
        open_beneath(directory, name, OFlag::O_RDONLY).map_err(|error| refused(name, error))?
    else {
        return Ok(None);
    };
    let stat = nix::sys::stat::fstat(&fd).map_err(std::io::Error::from)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(GitError::Unreadable {
            reason: format!(".git/{} is not a regular file", name.to_string_lossy()),
        });
    }
    let mut contents = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_FILE + 1)
        .read_to_end(&mut contents)?;
    if contents.len() as u64 > MAX_FILE {
        return Err(GitError::Unreadable {
            reason: format!(
                ".git/{} is larger than {MAX_FILE} bytes",
                name.to_string_lossy()
            ),
        });
    }
    Ok(Some(contents))
}

/// [`read_beneath`] through folders `path[..n-1]`, none of them followed if a link.
fn read_path_beneath(directory: &OwnedFd, path: &[&str]) -> Result<Option<Vec<u8>>, GitError> {
    let (name, folders) = path.split_last().expect("a path has a name");
    let mut current = dup(directory)?;
    for folder in folders {
        match open_beneath(
            &current,
            OsStr::new(folder),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        )
        .map_err(|error| refused(OsStr::new(folder), error))?
        {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    read_beneath(&current, name)
}

/// Copies the regular files under `name` beneath `directory` to `destination`, skipping links and anything
/// else that is neither a file nor a folder, and failing after `budget` files.
fn copy_tree_beneath(
    directory: &impl AsFd,
    name: &str,
    destination: &Path,
    budget: &mut usize,
) -> Result<(), GitError> {
    let Some(fd) = open_beneath(
        directory,
        OsStr::new(name),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
    )
    .map_err(|error| refused(OsStr::new(name), error))?
    else {
        return Ok(());
    };
    std::fs::create_dir_all(destination)?;
    let mut entries = Dir::from_fd(dup(&fd)?).map_err(std::io::Error::from)?;
    let mut names = Vec::new();
    for entry in entries.iter() {
        let entry = entry.map_err(std::io::Error::from)?;
        let bytes = entry.file_name().to_bytes();
        if bytes == b"." || bytes == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(bytes).to_owned());
    }
    for child in names {
        let stat = match nix::sys::stat::fstatat(
            fd.as_fd(),
            child.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(stat) => stat,
            Err(Errno::ENOENT) => continue,
            Err(error) => return Err(std::io::Error::from(error).into()),
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        if kind == SFlag::S_IFDIR {
            // Ref folders have UTF-8 names; anything else holds no ref git would have written.
            let Some(child_name) = child.to_str() else {
                continue;
            };
            copy_tree_beneath(&fd, child_name, &destination.join(child_name), budget)?;
        } else if kind == SFlag::S_IFREG {
            if *budget == 0 {
                return Err(GitError::Unreadable {
                    reason: format!("its .git holds more than {MAX_REFS} refs"),
                });
            }
            *budget -= 1;
            if let Some(contents) = read_beneath(&fd, &child)? {
                std::fs::write(destination.join(&child), contents)?;
            }
        }
    }
    Ok(())
}

fn refused(name: &OsStr, error: std::io::Error) -> GitError {
    if error.raw_os_error() == Some(libc::ELOOP) || error.raw_os_error() == Some(libc::ENOTDIR) {
        GitError::Unreadable {
            reason: format!(
                ".git/{} is a link or not what git writes there",
                name.to_string_lossy()
            ),
        }
    } else {
        GitError::Io(error)
    }
}

/// One section of a config: its name, its subsection, and its `name = value` entries in order.
type Section = (String, Option<String>, Vec<(String, String)>);

/// The config the view uses: the inert keys of `listed` (`git config --null --list` output) as quoted values.
pub fn inert_config(listed: &[u8]) -> Vec<u8> {
    let mut sections: Vec<Section> = vec![(
        "core".into(),
        None,
        vec![
            ("repositoryformatversion".into(), "0".into()),
            ("bare".into(), "false".into()),
        ],
    )];
    for item in listed.split(|byte| *byte == 0) {
        let item = String::from_utf8_lossy(item);
        let (key, value) = item.split_once('\n').unwrap_or((&item, "true"));
        let Some((section, subsection, name)) = split_key(key) else {
            continue;
        };
        let pattern = match &subsection {
            Some(_) => format!("{section}.*.{name}"),
            None => format!("{section}.{name}"),
        };
        if !INERT_KEYS.contains(&pattern.as_str()) {
            continue;
        }
        let entry = (name.to_owned(), value.to_owned());
        match sections
            .iter_mut()
            .find(|(known, known_sub, _)| *known == section && *known_sub == subsection)
        {
            Some((_, _, entries)) => {
                // A later value of a single-valued key wins, as in git; `fetch` keeps them all.
                if name != "fetch" {
                    entries.retain(|(known, _)| *known != name);
                }
                entries.push(entry);
            }
            None => sections.push((section.to_owned(), subsection, vec![entry])),
        }
    }
    let mut config = String::new();
    for (section, subsection, entries) in sections {
        match subsection {
            Some(subsection) => {
                config.push_str(&format!("[{section} {}]\n", quote_subsection(&subsection)))
            }
            None => config.push_str(&format!("[{section}]\n")),
        }
        for (name, value) in entries {
            config.push_str(&format!("\t{name} = {}\n", quote(&value)));
        }
    }
    config.into_bytes()
}

/// Splits `section.subsection.name` (the subsection may hold dots) and checks each part is what git
/// allows; the subsection must hold no newline or NUL.
fn split_key(key: &str) -> Option<(&str, Option<String>, &str)> {
    let (section, rest) = key.split_once('.')?;
    let (subsection, name) = match rest.rsplit_once('.') {
        Some((subsection, name)) => (Some(subsection.to_owned()), name),
        None => (None, rest),
    };
    let word = |text: &str| {
        !text.is_empty()
            && text.starts_with(|character: char| character.is_ascii_alphabetic())
            && text
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || character == '-')
    };
    let plain_subsection = subsection
        .as_deref()
        .is_none_or(|subsection| !subsection.contains(['\n', '\0']));
    (word(section) && word(name) && plain_subsection).then_some((section, subsection, name))
}

/// A double-quoted git config string: backslash, quote, newline and tab escaped.
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    for character in text.chars() {
        match character {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// A double-quoted subsection name, in which git reads only `\\` and `\"` as escapes.
fn quote_subsection(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
