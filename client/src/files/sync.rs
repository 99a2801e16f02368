//! `skiff sync`: sends what changed in the folder on this machine since the last upload or sync, and removes on the
//! agent what was deleted here, without losing work done on the instance.
//!
//! The agent keeps a record of the stamp (kind, size, modification time in seconds, mode, link target) each upload
//! left on each path, and `Manifest` reports it beside the path's stamp now. A path changed here is one whose stamp
//! differs from the record; a path changed there is one whose stamp now differs from the record. So:
//!
//! - changed here only: sent (or, deleted here, removed there);
//! - changed there only, or made there (build output, new files): kept, never overwritten or removed;
//! - changed on both sides: kept as the workspace has it and reported, unless `--force` says this machine wins;
//! - a file whose size matches but whose time differs (touched, checked out again) is compared by SHA-256 of its
//!   content on both sides before it counts as changed: a second `Manifest` call asks for those hashes only,
//!   so the agent never reads the whole tree, and a `git checkout` that rewrote times does not resend everything.
//!
//! A path that is only ignored here now (a new `.gitignore` line) but still exists is left alone there.
//!
//! The decision is made from a manifest, but a sync can take minutes while people keep working on the instance:
//! the upload carries how each path it writes or removes looked in the manifest, the agent compares each again at
//! the moment it writes or removes it, and a path that changed in between is kept and reported as a conflict.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use skiff::api::{FileKind, FileStamp, ManifestEntry, capability};

use super::upload::{Transfer, UploadOutcome, send};
use super::{Entry, FilesError, walk};
use crate::agent_client::AgentClient;

/// How `sync` treats changes made on both sides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Send this machine's version of a path changed on both sides (and remove one deleted here but changed there).
    pub force: bool,
}

/// What a sync will do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncPlan {
    /// Paths to send.
    pub send: Vec<String>,
    /// Paths to remove on the agent before unpacking (deleted here, or replaced by another kind of path).
    pub remove: Vec<String>,
    /// Paths changed on both sides, kept as the agent has them.
    pub conflicts: Vec<String>,
    /// Paths whose content must be compared before deciding (only from a plan made without hashes).
    pub hash: Vec<String>,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Files sent.
    pub files: u64,
    /// Paths sent (files, folders, links).
    pub entries: u64,
    /// Bytes of file content sent.
    pub bytes: u64,
    /// Paths removed on the agent.
    pub removed: u64,
    /// Paths changed on both sides and kept as the agent has them.
    pub conflicts: Vec<String>,
    /// The upload, when anything was sent or removed.
    pub upload: Option<UploadOutcome>,
}

impl SyncOutcome {
    /// One line for people: `3 files sent, 1 removed, 12 KiB`.
    pub fn summary(&self) -> String {
        if self.upload.is_none() {
            return "nothing changed".into();
        }
        format!(
            "{} file{} sent, {} removed, {}",
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.removed,
            super::human_bytes(self.bytes)
        )
    }
}

/// Whether two stamps describe the same version of a path (a folder's time changes with its contents, so only
/// its mode counts; a link is its target).
pub fn same(left: &FileStamp, right: &FileStamp) -> bool {
    left.same_version(right)
}

/// Decides what to send and remove. `equal_content` holds the paths whose content (and mode) is known to be the
/// same on both sides; `None` means hashes were not asked yet, and files that need them go to `hash` instead of
/// being decided. `exists_here` tells whether a path the walk did not list still exists on this machine.
pub fn plan_sync(
    local: &[Entry],
    remote: &[ManifestEntry],
    equal_content: Option<&HashSet<String>>,
    force: bool,
    exists_here: impl Fn(&str) -> bool,
) -> SyncPlan {
    let remote: BTreeMap<&str, &ManifestEntry> = remote
        .iter()
        .map(|entry| (entry.path.as_str(), entry))
        .collect();
    let mut plan = SyncPlan::default();
    let mut listed = HashSet::new();
    for entry in local {
        listed.insert(entry.relative.as_str());
        let here = &entry.stamp;
        let (current, uploaded) = remote
            .get(entry.relative.as_str())
            .map_or((None, None), |remote| {
                (remote.current.as_ref(), remote.uploaded.as_ref())
            });
        if current.is_some_and(|current| same(current, here)) {
            continue;
        }
        let changed_here = uploaded.is_none_or(|uploaded| !same(uploaded, here));
        if !changed_here {
            continue;
        }
        let untouched_there = match (current, uploaded) {
            (None, _) => true,
            (Some(current), Some(uploaded)) => same(current, uploaded),
            (Some(_), None) => false,
        };
        let comparable = current.is_some_and(|current| {
            current.kind == FileKind::File
                && here.kind == FileKind::File
                && current.size == here.size
                && current.mode == here.mode
        });
        if comparable {
            match equal_content {
                None => {
                    plan.hash.push(entry.relative.clone());
                    continue;
                }
                Some(equal) if equal.contains(&entry.relative) => continue,
                Some(_) => {}
            }
        }
        if untouched_there || force {
            if current.is_some_and(|current| current.kind != here.kind) {
                plan.remove.push(entry.relative.clone());
            }
            plan.send.push(entry.relative.clone());
        } else {
            plan.conflicts.push(entry.relative.clone());
        }
    }
    for (path, entry) in &remote {
        if listed.contains(path) {
            continue;
        }
        let (Some(current), Some(uploaded)) = (&entry.current, &entry.uploaded) else {
            // Made there, or already gone there.
            continue;
        };
        if exists_here(path) {
            continue;
        }
        if same(current, uploaded) || force {
            plan.remove.push((*path).to_owned());
        } else {
            plan.conflicts.push((*path).to_owned());
        }
    }
    plan
}

/// Sends the changes in `folder` since the last upload or sync to the agent behind `clients` (several clients carry
/// the archive in parts, as `upload` does).
pub async fn sync(
    clients: &mut [AgentClient],
    folder: &Path,
    options: &SyncOptions,
    progress: &(dyn Fn(&Transfer) + Sync),
) -> Result<SyncOutcome, FilesError> {
    let Some(first) = clients.first_mut() else {
        return Err(FilesError::Other(
            "a sync needs at least one connection to the agent".into(),
        ));
    };
    let version = first.version().await?;
    if !version
        .capabilities
        .iter()
        .any(|have| have == capability::MANIFEST)
    {
        return Err(FilesError::Unsupported {
            agent_version: version.agent_version,
            what: "sync",
        });
    }
    let owned = folder.to_owned();
    let local = tokio::task::spawn_blocking(move || walk(&owned))
        .await
        .expect("the walk does not panic")?;
    let remote = first.manifest(Vec::new()).await?;
    let exists_here = |path: &str| folder.join(path).symlink_metadata().is_ok();
    let mut plan = plan_sync(&local, &remote, None, options.force, exists_here);
    if !plan.hash.is_empty() {
        let hashed = first.manifest(plan.hash.clone()).await?;
        let by_path: BTreeMap<&str, &Entry> = local
            .iter()
            .map(|entry| (entry.relative.as_str(), entry))
            .collect();
        let to_hash: Vec<(String, std::path::PathBuf, Option<[u8; 32]>)> = hashed
            .iter()
            .filter_map(|entry| {
                let here = by_path.get(entry.path.as_str())?;
                Some((entry.path.clone(), here.path.clone(), entry.sha256))
            })
            .collect();
        let equal = tokio::task::spawn_blocking(move || {
            to_hash
                .into_iter()
                .filter(|(_, path, there)| there.is_some() && hash_file(path).ok() == *there)
                .map(|(relative, _, _)| relative)
                .collect::<HashSet<String>>()
        })
        .await
        .expect("hashing does not panic");
        plan = plan_sync(&local, &remote, Some(&equal), options.force, exists_here);
    }
    let send_set: BTreeSet<&str> = plan.send.iter().map(String::as_str).collect();
    let entries: Vec<Entry> = local
        .iter()
        .filter(|entry| send_set.contains(entry.relative.as_str()))
        .cloned()
        .collect();
    let conflicts = plan.conflicts.clone();
    if entries.is_empty() && plan.remove.is_empty() {
        return Ok(SyncOutcome {
            files: 0,
            entries: 0,
            bytes: 0,
            removed: 0,
            conflicts,
            upload: None,
        });
    }
    let files = entries
        .iter()
        .filter(|entry| entry.stamp.kind == FileKind::File)
        .count() as u64;
    // Each path written or removed is checked again on the agent at that moment against how the manifest saw
    // it, so work done there while this sync ran is kept and reported, not lost. `--force` means this machine
    // wins, so it sends no expectations.
    let expected = if options.force
        || !version
            .capabilities
            .iter()
            .any(|have| have == capability::UPLOAD_EXPECTED)
    {
        Vec::new()
    } else {
        expectations(&plan, &remote)
    };
    let upload = send(clients, entries, plan.remove, expected, progress).await?;
    let mut conflicts = conflicts;
    conflicts.extend(upload.conflicts.iter().cloned());
    conflicts.sort();
    conflicts.dedup();
    Ok(SyncOutcome {
        files,
        entries: upload.entries,
        bytes: upload.bytes,
        removed: upload.removed,
        conflicts,
        upload: Some(upload),
    })
}

/// How each path `plan` sends or removes looked in the manifest (`None`: absent there).
pub fn expectations(plan: &SyncPlan, remote: &[ManifestEntry]) -> Vec<(String, Option<FileStamp>)> {
    let current: BTreeMap<&str, Option<&FileStamp>> = remote
        .iter()
        .map(|entry| (entry.path.as_str(), entry.current.as_ref()))
        .collect();
    let paths: BTreeSet<&str> = plan
        .send
        .iter()
        .chain(&plan.remove)
        .map(String::as_str)
        .collect();
    paths
        .into_iter()
        .map(|path| {
            (
                path.to_owned(),
                current.get(path).copied().flatten().cloned(),
            )
        })
        .collect()
}

/// The SHA-256 of a file's content.
fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
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
