//! Unpacking a fetched Feature archive (an OCI layer or a tarball: a tar, gzip-compressed or not) into a cache folder
//! named by its content, in the layout a local Feature has (`devcontainer-feature.json` and `install.sh` at the top).
//!
//! The folder is made under a temporary name and renamed into place, so a cache folder that exists is always whole, and
//! two agents unpacking the same content at once both end up with it.
//!
//! Archives come from registries and URLs a repository names, so their size is capped twice: what is downloaded
//! ([`Limits::download`]) and what the tar holds once decompressed ([`Limits::unpacked`], every entry counted, skipped
//! ones too, so a small gzip bomb is refused before it fills the disk or keeps a core busy).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The most a Feature archive may download.
pub const MAX_DOWNLOAD: u64 = 512 * 1024 * 1024;
/// The most a Feature archive may hold once decompressed.
pub const MAX_UNPACKED: u64 = 1024 * 1024 * 1024;

/// How large a Feature archive may be; [`Limits::DEFAULT`] outside tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes downloaded (the archive as it travels, compressed or not).
    pub download: u64,
    /// Bytes of the tar's entries once decompressed.
    pub unpacked: u64,
}

impl Limits {
    /// [`MAX_DOWNLOAD`] and [`MAX_UNPACKED`].
    pub const DEFAULT: Self = Self {
        download: MAX_DOWNLOAD,
        unpacked: MAX_UNPACKED,
    };

    /// The error for a download larger than [`Limits::download`].
    pub fn too_large_download(&self, size: u64) -> String {
        format!(
            "the archive is {} or more, larger than the {} a Feature may download",
            human(size),
            human(self.download)
        )
    }
}

/// Bytes for people: bytes below one KiB, KiB below one MiB, else MiB with one decimal.
fn human(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if bytes < 1024 * 1024 {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    }
}

/// Unpacks `archive` into `target` unless `target` is there already.
pub async fn unpack(archive: Vec<u8>, target: PathBuf, limits: Limits) -> Result<(), String> {
    tokio::task::spawn_blocking(move || unpack_blocking(&archive, &target, limits))
        .await
        .map_err(|error| format!("unpacking was interrupted: {error}"))?
}

fn unpack_blocking(archive: &[u8], target: &Path, limits: Limits) -> Result<(), String> {
    if archive.len() as u64 > limits.download {
        return Err(limits.too_large_download(archive.len() as u64));
    }
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
    let result = extract(archive, &partial, limits).and_then(|()| {
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
fn extract(archive: &[u8], folder: &Path, limits: Limits) -> Result<(), String> {
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
    let mut unpacked: u64 = 0;
    for entry in entries {
        let mut entry = entry.map_err(|error| format!("the archive is damaged: {error}"))?;
        // Counted before anything is read or written, from the header: a skipped entry costs decompression too.
        unpacked = unpacked.saturating_add(entry.header().entry_size().unwrap_or(u64::MAX));
        if unpacked > limits.unpacked {
            return Err(format!(
                "the archive holds more than the {} a Feature may unpack to",
                human(limits.unpacked)
            ));
        }
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
