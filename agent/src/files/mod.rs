//! The workspace's files on the agent's machine, beyond unpacking an archive (`crate::upload`): the record of
//! what uploads wrote (`record`), uploads in parts over several connections (`parts`), the listing `skiff sync`
//! compares against (`manifest`), and the devcontainer.json inside the files (`config`).
//! Cloning a repository and reading its state is `crate::git`.
//!
//! Paths on the wire are relative to the files folder and `/`-separated; `relative_path` is the one check that
//! keeps each of them inside the folder.

pub mod beneath;
pub mod config;
pub mod manifest;
pub mod parts;
pub mod record;

#[cfg(test)]
mod tests;

use std::path::{Component, Path, PathBuf};

/// `text` as a path inside the files folder, or `None` when it is empty, absolute, or climbs out with `..`.
pub fn relative_path(text: &str) -> Option<PathBuf> {
    if text.is_empty() || text.contains('\0') {
        return None;
    }
    let path = Path::new(text);
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!relative.as_os_str().is_empty()).then_some(relative)
}

/// The wire form of a relative path (`/`-separated, no `.`), or `None` when it is not UTF-8 or not inside.
pub fn relative_key(path: &Path) -> Option<String> {
    let relative = relative_path(path.to_str()?)?;
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|component| component.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

/// Whether reaching `relative` inside `folder` passes through a symbolic link (its last component aside).
pub fn through_link(folder: &Path, relative: &Path) -> bool {
    let mut path = folder.to_owned();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        if components.peek().is_none() {
            return false;
        }
        path.push(component);
        match path.symlink_metadata() {
            Ok(metadata) if metadata.file_type().is_symlink() => return true,
            Ok(_) => {}
            // A missing parent: nothing is there to reach, so nothing is reached through a link.
            Err(_) => return false,
        }
    }
    false
}
