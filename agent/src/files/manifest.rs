//! `Manifest`: every path of the files folder with its current stamp and the stamp the last upload left it with,
//! in batches, plus the recorded paths that are gone since. Asked about some paths only, it lists those with the
//! hash of their content (hashing reads the files, so the client asks only where stamps cannot tell).

use std::collections::{HashSet, VecDeque};
use std::io::Read;
use std::path::Path;

use sha2::Digest;
use skiff::api::{FileKind, ManifestEntry};

use super::record::{self, Record};

/// How many entries go in one message.
pub const BATCH: usize = 1000;

/// Lists `folder` (with the record at `record_file`), handing batches to `send` until it returns false.
/// Blocking. A missing folder lists only what the record remembers.
pub fn list(
    folder: &Path,
    record_file: &Path,
    hash_paths: &HashSet<String>,
    mut send: impl FnMut(Vec<ManifestEntry>) -> bool,
) -> std::io::Result<()> {
    let record = Record::load(record_file);
    if !hash_paths.is_empty() {
        return list_only(folder, &record, hash_paths, send);
    }
    let mut seen = HashSet::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut folders = VecDeque::new();
    if folder.is_dir() {
        folders.push_back(String::new());
    }
    while let Some(relative) = folders.pop_front() {
        let absolute = if relative.is_empty() {
            folder.to_owned()
        } else {
            folder.join(&relative)
        };
        let entries = match std::fs::read_dir(&absolute) {
            Ok(entries) => entries,
            // A folder made unreadable inside the container is left out rather than failing the whole listing.
            Err(error) => {
                tracing::info!(folder = %absolute.display(), "not listed: {error}");
                continue;
            }
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let path = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let Ok(Some(current)) = record::stamp(&entry.path()) else {
                continue;
            };
            if current.kind == FileKind::Directory {
                folders.push_back(path.clone());
            }
            let sha256 = if current.kind == FileKind::File && hash_paths.contains(&path) {
                hash(&entry.path()).ok()
            } else {
                None
            };
            seen.insert(path.clone());
            batch.push(ManifestEntry {
                uploaded: record.get(&path).cloned(),
                path,
                current: Some(current),
                sha256,
            });
            if batch.len() == BATCH && !send(std::mem::take(&mut batch)) {
                return Ok(());
            }
        }
    }
    for (path, stamp) in record.iter() {
        if !seen.contains(path) {
            batch.push(ManifestEntry {
                path: path.clone(),
                current: None,
                uploaded: Some(stamp.clone()),
                sha256: None,
            });
            if batch.len() == BATCH && !send(std::mem::take(&mut batch)) {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
    Ok(())
}

/// Lists only `paths`, each file with its content's hash.
fn list_only(
    folder: &Path,
    record: &Record,
    paths: &HashSet<String>,
    mut send: impl FnMut(Vec<ManifestEntry>) -> bool,
) -> std::io::Result<()> {
    let mut batch = Vec::new();
    // Stamped and read beneath the folder: a link the dev container swaps in meanwhile leads nowhere else, and
    // what is hashed is opened as a regular file only (never a FIFO that would hold the agent).
    let beneath = super::beneath::Folder::open(folder)?;
    for path in paths {
        let Some(relative) = super::relative_path(path) else {
            continue;
        };
        if super::through_link(folder, &relative) {
            continue;
        }
        let current = beneath.stamp(&relative).ok().flatten();
        let sha256 = match &current {
            Some(stamp) if stamp.kind == FileKind::File => {
                beneath.open_regular(&relative).and_then(hash_reader).ok()
            }
            _ => None,
        };
        batch.push(ManifestEntry {
            path: path.clone(),
            current,
            uploaded: record.get(path).cloned(),
            sha256,
        });
        if batch.len() == BATCH && !send(std::mem::take(&mut batch)) {
            return Ok(());
        }
    }
    if !batch.is_empty() {
        send(batch);
    }
    Ok(())
}

/// The SHA-256 of a file's content.
pub fn hash(path: &Path) -> std::io::Result<[u8; 32]> {
    hash_reader(std::fs::File::open(path)?)
}

/// The SHA-256 of what `file` reads.
fn hash_reader(mut file: impl Read) -> std::io::Result<[u8; 32]> {
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buffer[..read]);
    }
}
