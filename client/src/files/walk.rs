//! Listing a workspace folder as git sees it: `.gitignore` files (in the folder and above it), `.git/info/exclude`
//! and the global excludes file rule out what they name, whether or not the folder is a repository yet. The `.git`
//! folder itself is listed whole, without those rules, because work on the instance needs the repository.
//! Links are listed as links, never followed; sockets and devices are left out, as are names that are not UTF-8
//! (paths travel as text on the wire).

use std::path::{Path, PathBuf};

use skiff::api::{FileKind, FileStamp};

use super::FilesError;

/// One path to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Relative to the folder, `/`-separated; the name it has in the archive and on the wire.
    pub relative: String,
    /// Where it is on this machine.
    pub path: PathBuf,
    /// How it is now.
    pub stamp: FileStamp,
}

/// The folder's entries (the folder itself aside), in a stable order: sorted by relative path.
pub fn walk(folder: &Path) -> Result<Vec<Entry>, FilesError> {
    let walk_error = |detail: String| FilesError::Walk {
        folder: folder.display().to_string(),
        detail,
    };
    let mut entries = Vec::new();
    let mut repositories = Vec::new();
    let walker = ignore::WalkBuilder::new(folder)
        .hidden(false)
        .ignore(false)
        .git_ignore(true)
        .git_exclude(true)
        .git_global(true)
        .parents(true)
        .require_git(false)
        .follow_links(false)
        .filter_entry(|entry| entry.file_name() != ".git")
        .build();
    for item in walker {
        let item = item.map_err(|error| walk_error(error.to_string()))?;
        let path = item.path();
        if item.depth() == 0 {
            if path.join(".git").symlink_metadata().is_ok() {
                repositories.push(path.join(".git"));
            }
            continue;
        }
        let Some(entry) = entry_of(folder, path)? else {
            continue;
        };
        if entry.stamp.kind == FileKind::Directory && path.join(".git").symlink_metadata().is_ok() {
            repositories.push(path.join(".git"));
        }
        entries.push(entry);
    }
    for git in repositories {
        walk_all(folder, &git, &mut entries)?;
    }
    entries.sort_by(|left, right| left.relative.cmp(&right.relative));
    Ok(entries)
}

/// Lists `path` and everything under it with no rule applied.
fn walk_all(folder: &Path, path: &Path, entries: &mut Vec<Entry>) -> Result<(), FilesError> {
    let Some(entry) = entry_of(folder, path)? else {
        return Ok(());
    };
    let is_directory = entry.stamp.kind == FileKind::Directory;
    entries.push(entry);
    if is_directory {
        let children = std::fs::read_dir(path).map_err(|error| FilesError::Walk {
            folder: path.display().to_string(),
            detail: error.to_string(),
        })?;
        for child in children {
            let child = child.map_err(|error| FilesError::Walk {
                folder: path.display().to_string(),
                detail: error.to_string(),
            })?;
            walk_all(folder, &child.path(), entries)?;
        }
    }
    Ok(())
}

/// The entry of `path` inside `folder`, or `None` for what is not sent.
fn entry_of(folder: &Path, path: &Path) -> Result<Option<Entry>, FilesError> {
    let Ok(relative) = path.strip_prefix(folder) else {
        return Ok(None);
    };
    let Some(relative) = relative
        .components()
        .map(|component| component.as_os_str().to_str())
        .collect::<Option<Vec<_>>>()
        .map(|parts| parts.join("/"))
    else {
        tracing::warn!(path = %path.display(), "left out: the name is not UTF-8");
        return Ok(None);
    };
    let stamp = match stamp(path) {
        Ok(Some(stamp)) => stamp,
        Ok(None) => return Ok(None),
        // Gone between listing and looking: nothing to send.
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FilesError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    Ok(Some(Entry {
        relative,
        path: path.to_owned(),
        stamp,
    }))
}

/// How `path` is now, read without following a link, as the agent's record would hold it: stamped by
/// `skiff::api::stamp`, with a time before 1970 as tar carries it (0), and no stamp for a link whose target
/// is not UTF-8 (an archive cannot carry it).
pub fn stamp(path: &Path) -> std::io::Result<Option<FileStamp>> {
    let metadata = path.symlink_metadata()?;
    let link_target = || Ok(std::fs::read_link(path)?.to_str().map(str::to_owned));
    Ok(skiff::api::stamp(&metadata, link_target)?.map(|mut stamp| {
        stamp.mtime = stamp.mtime.max(0);
        stamp
    }))
}
