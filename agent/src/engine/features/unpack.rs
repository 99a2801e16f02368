//! Unpacking a fetched Feature archive (an OCI layer or a tarball: a tar, gzip-compressed or not) into a cache folder
//! named by its content, in the layout a local Feature has (`devcontainer-feature.json` and `install.sh` at the top).
//!
//! The folder is made under a temporary name and renamed into place, so a cache folder that exists is always whole, and
//! two agents unpacking the same content at once both end up with it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Unpacks `archive` into `target` unless `target` is there already.
pub async fn unpack(archive: Vec<u8>, target: PathBuf) -> Result<(), String> {
    tokio::task::spawn_blocking(move || unpack_blocking(&archive, &target))
        .await
        .map_err(|error| format!("unpacking was interrupted: {error}"))?
}

fn unpack_blocking(archive: &[u8], target: &Path) -> Result<(), String> {
    if target.is_dir() {
        return Ok(());
    }
    let parent = target
        .parent()
        .ok_or_else(|| format!("{} has no parent folder", target.display()))?;
    std::fs::create_dir_all(parent)
        .map_err(|error| format!("cannot make {}: {error}", parent.display()))?;
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let partial = parent.join(format!(".unpacking-{}-{unique}", std::process::id()));
    let result = extract(archive, &partial).and_then(|()| {
        if partial.join("devcontainer-feature.json").is_file() {
            Ok(())
        } else {
            Err(
                "the archive has no devcontainer-feature.json at its top, so it is not a Dev Container Feature"
                    .to_owned(),
            )
        }
    });
    if let Err(error) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(error);
    }
    if let Err(error) = std::fs::rename(&partial, target) {
        let _ = std::fs::remove_dir_all(&partial);
        // Another `up` unpacked the same content first; its copy is as good as ours.
        if !target.is_dir() {
            return Err(format!(
                "cannot move the Feature into {}: {error}",
                target.display()
            ));
        }
    }
    Ok(())
}

/// Extracts regular files and folders; dotfiles are skipped as the reference CLI skips them, and links and devices are
/// skipped too (a Feature needs neither, and a link could point out of the folder).
fn extract(archive: &[u8], folder: &Path) -> Result<(), String> {
    std::fs::create_dir_all(folder)
        .map_err(|error| format!("cannot make {}: {error}", folder.display()))?;
    let reader: Box<dyn Read> = if archive.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(archive))
    } else {
        Box::new(archive)
    };
    let mut tar = tar::Archive::new(reader);
    let entries = tar
        .entries()
        .map_err(|error| format!("the archive is not a tar file: {error}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| format!("the archive is damaged: {error}"))?;
        let path = entry
            .path()
            .map_err(|error| format!("the archive has an unreadable path: {error}"))?
            .into_owned();
        let dotfile = path.components().any(|component| {
            matches!(component, Component::Normal(name) if name.to_string_lossy().starts_with('.'))
        });
        let kind = entry.header().entry_type();
        if dotfile || !(kind.is_file() || kind.is_dir()) {
            tracing::debug!(path = %path.display(), "skipping an archive entry");
            continue;
        }
        // `unpack_in` refuses paths that leave the folder (`..`, absolute paths).
        entry
            .unpack_in(folder)
            .map_err(|error| format!("cannot unpack {}: {error}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
