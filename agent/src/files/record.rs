//! The record of what uploads and syncs wrote into the files folder: for each path, the stamp (kind, size,
//! modification time, mode, link target) the archive gave it. `Manifest` reports it beside each path's current
//! stamp, so the client can tell a change made on its machine since the last sync from one made here.
//!
//! It lives in the state folder (`uploaded.json`), not in the files folder, so nothing in the dev container sees it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use skiff::api::FileStamp;

/// Paths (relative, `/`-separated) and how the last upload left them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    entries: BTreeMap<String, FileStamp>,
}

impl Record {
    /// The record's file in the state folder `state`.
    pub fn file_in(state: &Path) -> PathBuf {
        state.join("uploaded.json")
    }

    /// Reads the record at `file`; a missing or unreadable one is empty (a sync then sends more, never less).
    pub fn load(file: &Path) -> Self {
        match std::fs::read(file) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(file = %file.display(), "ignoring an unreadable upload record: {error}");
                Self::default()
            }),
            Err(_) => Self::default(),
        }
    }

    /// Writes the record to `file`, replaced in one step.
    pub fn save(&self, file: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        skiff::atomic::write(file, &text, 0o600)
    }

    /// Notes that an upload left `path` as `stamp`.
    pub fn insert(&mut self, path: String, stamp: FileStamp) {
        self.entries.insert(path, stamp);
    }

    /// Forgets `path` (it was removed).
    pub fn remove(&mut self, path: &str) {
        self.entries.remove(path);
    }

    /// How the last upload left `path`.
    pub fn get(&self, path: &str) -> Option<&FileStamp> {
        self.entries.get(path)
    }

    /// Every recorded path and stamp.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &FileStamp)> {
        self.entries.iter()
    }

    /// Forgets everything (the files folder was replaced, as by a clone).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// How `path` is now, read without following a link; `None` for what uploads never write (sockets, devices).
pub fn stamp(path: &Path) -> std::io::Result<Option<FileStamp>> {
    let metadata = path.symlink_metadata()?;
    skiff::api::stamp(&metadata, || {
        Ok(Some(
            std::fs::read_link(path)?.to_string_lossy().into_owned(),
        ))
    })
}
