//! One `Upload`: unpacks a compressed tar stream of the workspace's files into the agent's files folder, refusing
//! entries that would land outside it; every write and removal goes through `crate::files::beneath` (the folder
//! is container-writable), and modes keep only their permission bits. Before unpacking it removes the paths a sync asks to remove; after, it
//! records what it wrote (`crate::files::record`), which `Manifest` reports so `skiff sync` sends only changes.
//! An upload in parts (several connections at once) is put back together by `crate::files::parts`, then comes here.

use std::io::Read;
use std::path::{Path, PathBuf};

use skiff::api::{Compression, FileKind, FileStamp};
use tokio::sync::mpsc;

use crate::files::beneath::{Folder, MODE_BITS};
use crate::files::record::Record;

/// What an upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The folder holding the files.
    pub folder: PathBuf,
    /// Files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Paths removed before unpacking.
    pub removed: u64,
    /// Paths of the [`Expected`] that had changed when their turn came, left as they were.
    pub conflicts: Vec<String>,
}

/// `skiff sync`'s view of the paths it writes or removes: how each looked when it decided (`None`: absent).
/// Each is compared again right before it is written or removed; one that changed is left alone and reported.
pub type Expected = std::collections::BTreeMap<String, Option<FileStamp>>;

/// An upload that failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The archive is broken or holds an entry outside the folder.
    #[error("unpacking the uploaded archive into {folder}: {source}")]
    Unpack {
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The request is malformed (a bad part number, a path to remove outside the folder).
    #[error("{0}")]
    Invalid(String),
    /// An upload in parts could not be completed; the parts that came were removed.
    #[error("upload {upload_id}: {reason}")]
    Parts { upload_id: String, reason: String },
    /// The disk under the folder filled up; the file being written was removed, the ones before it stay.
    #[error(
        "{}; the files written before it stay and the one being written was removed: free space there and run the command again",
        disk_full_message(folder)
    )]
    DiskFull { folder: PathBuf },
}

/// "the disk holding FOLDER is full (N MiB free)", with the free space as the file system reports it now.
pub fn disk_full_message(folder: &Path) -> String {
    let free = nix::sys::statvfs::statvfs(folder).map_or_else(
        |_| "its free space unknown".to_owned(),
        |stats| {
            let bytes = stats.blocks_available() * stats.fragment_size();
            format!("{:.1} MiB free", bytes as f64 / (1024.0 * 1024.0))
        },
    );
    format!("the disk holding {} is full ({free})", folder.display())
}

/// Where an upload goes: the files folder and the record of what uploads wrote.
#[derive(Debug, Clone)]
pub struct Target {
    /// The files folder.
    pub folder: PathBuf,
    /// The record file (`Record::file_in`).
    pub record: PathBuf,
}

/// Reads chunks from a channel as a blocking `Read`, for the tar reader on a blocking thread.
struct ChannelReader {
    chunks: mpsc::Receiver<Vec<u8>>,
    current: std::io::Cursor<Vec<u8>>,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let read = self.current.read(buffer)?;
            if read > 0 || buffer.is_empty() {
                return Ok(read);
            }
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = std::io::Cursor::new(chunk),
                None => return Ok(0),
            }
        }
    }
}

/// Unpacks what arrives on `chunks` into `folder` (created if needed), as it arrives, without a record.
pub async fn unpack(
    folder: &Path,
    compression: Compression,
    chunks: mpsc::Receiver<Vec<u8>>,
) -> Result<Unpacked, UploadError> {
    let folder = folder.to_owned();
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            chunks,
            current: std::io::Cursor::new(Vec::new()),
        };
        unpack_reader(&folder, None, compression, reader, &[], &Expected::new())
    })
    .await
    .expect("the unpack task does not panic")
}

/// Removes `remove`, then unpacks what arrives on `chunks` into the target, as it arrives, and records it.
pub async fn unpack_into(
    target: &Target,
    compression: Compression,
    chunks: mpsc::Receiver<Vec<u8>>,
    remove: Vec<String>,
    expected: Expected,
) -> Result<Unpacked, UploadError> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            chunks,
            current: std::io::Cursor::new(Vec::new()),
        };
        unpack_reader(
            &target.folder,
            Some(&target.record),
            compression,
            reader,
            &remove,
            &expected,
        )
    })
    .await
    .expect("the unpack task does not panic")
}

/// Removes `remove` from `folder`, then unpacks the archive `reader` gives into it; with `record`, notes in that
/// record file what was removed and written. A path in `expected` is written or removed only while it still
/// looks as expected. Blocking.
pub fn unpack_reader(
    folder: &Path,
    record: Option<&Path>,
    compression: Compression,
    reader: impl Read,
    remove: &[String],
    expected: &Expected,
) -> Result<Unpacked, UploadError> {
    let error = |source| UploadError::Unpack {
        folder: folder.to_owned(),
        source,
    };
    let beneath = Folder::open(folder).map_err(error)?;
    let mut written = record.map(Record::load);
    let mut expected: Expected = expected
        .iter()
        .filter_map(|(path, stamp)| {
            Some((crate::files::relative_key(Path::new(path))?, stamp.clone()))
        })
        .collect();
    let mut conflicts = Vec::new();
    let removed_paths = remove_paths(&beneath, remove, &mut expected, &mut conflicts)?;
    if let Some(written) = &mut written {
        for path in &removed_paths {
            written.remove(path);
        }
    }
    let removed = removed_paths.len() as u64;
    let reader: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(error)?),
        Compression::None => Box::new(reader),
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = 0;
    let mut bytes = 0;
    // The record is kept even when a later entry fails: what was written is on disk either way.
    let result = (|| -> Result<(), UploadError> {
        for entry in archive.entries().map_err(error)? {
            let mut entry = entry.map_err(error)?;
            let stamp = stamp_of_header(&entry);
            let path = entry
                .path()
                .ok()
                .and_then(|path| crate::files::relative_key(&path));
            // Absolute paths and `..` never get here; what does is written beneath the folder (`Folder`).
            let (Some(path), Some(stamp)) = (path, stamp) else {
                tracing::info!(
                    "upload: skipped an entry that is not a file, folder or link inside the folder"
                );
                continue;
            };
            let relative = Path::new(&path);
            if let Some(before) = expected.get(&path)
                && changed_since(&beneath, relative, before.as_ref())
            {
                conflicts.push(path);
                continue;
            }
            let entry_error = |source: std::io::Error| {
                if source.kind() == std::io::ErrorKind::StorageFull {
                    return UploadError::DiskFull {
                        folder: folder.to_owned(),
                    };
                }
                UploadError::Unpack {
                    folder: folder.to_owned(),
                    source: std::io::Error::new(source.kind(), format!("{path}: {source}")),
                }
            };
            match stamp.kind {
                FileKind::File => {
                    beneath
                        .write_file(relative, &mut entry, stamp.mode, Some(stamp.mtime))
                        .map_err(entry_error)?;
                    files += 1;
                    bytes += stamp.size;
                }
                FileKind::Directory => beneath
                    .make_dir(relative, stamp.mode)
                    .map_err(entry_error)?,
                FileKind::Symlink => beneath
                    .symlink(relative, Path::new(&stamp.link_target))
                    .map_err(entry_error)?,
            }
            if let Some(written) = &mut written {
                written.insert(path, stamp);
            }
        }
        Ok(())
    })();
    if let (Some(written), Some(record)) = (&written, record)
        && let Err(source) = written.save(record)
    {
        tracing::warn!("could not keep the record of uploaded files: {source}");
    }
    result?;
    Ok(Unpacked {
        folder: folder.to_owned(),
        files,
        bytes,
        removed,
        conflicts,
    })
}

/// Whether `relative` no longer looks as `before` says (`None`: absent); a path that cannot be read counts as
/// changed, so it is left alone.
fn changed_since(folder: &Folder, relative: &Path, before: Option<&FileStamp>) -> bool {
    match (folder.stamp(relative), before) {
        (Ok(None), None) => false,
        (Ok(Some(now)), Some(before)) => !now.same_version(before),
        _ => true,
    }
}

/// How a tar entry leaves its path, as `crate::files::record::stamp` would read it back.
fn stamp_of_header<R: Read>(entry: &tar::Entry<'_, R>) -> Option<FileStamp> {
    let header = entry.header();
    let kind = match header.entry_type() {
        tar::EntryType::Regular | tar::EntryType::Continuous => FileKind::File,
        tar::EntryType::Directory => FileKind::Directory,
        tar::EntryType::Symlink => FileKind::Symlink,
        _ => return None,
    };
    Some(match kind {
        FileKind::File => FileStamp {
            kind,
            size: header.size().ok()?,
            mtime: i64::try_from(header.mtime().ok()?).ok()?,
            mode: header.mode().ok()? & MODE_BITS,
            link_target: String::new(),
        },
        FileKind::Directory => FileStamp {
            kind,
            size: 0,
            mtime: 0,
            mode: header.mode().ok()? & MODE_BITS,
            link_target: String::new(),
        },
        FileKind::Symlink => FileStamp {
            kind,
            size: 0,
            mtime: 0,
            mode: 0,
            link_target: entry.link_name().ok()??.to_str()?.to_owned(),
        },
    })
}

/// Removes each of `paths` (relative to the folder), deepest first: files and links as they are, folders only
/// when empty, never a path that changed since `expected` said how it looked (that one goes to `conflicts`).
/// Returns the paths removed (as wire keys); `expected` then says they are absent.
fn remove_paths(
    folder: &Folder,
    paths: &[String],
    expected: &mut Expected,
    conflicts: &mut Vec<String>,
) -> Result<Vec<String>, UploadError> {
    let mut checked = Vec::with_capacity(paths.len());
    for text in paths {
        let key = crate::files::relative_path(text)
            .as_deref()
            .and_then(crate::files::relative_key)
            .ok_or_else(|| {
                UploadError::Invalid(format!(
                    "UploadStart: field remove has invalid path {text:?}; paths are relative, inside the files folder"
                ))
            })?;
        checked.push(key);
    }
    checked.sort_by_key(|key| std::cmp::Reverse(key.split('/').count()));
    let mut removed = Vec::new();
    for key in checked {
        let relative = Path::new(&key);
        if let Some(before) = expected.get(&key)
            && changed_since(folder, relative, before.as_ref())
        {
            conflicts.push(key);
            continue;
        }
        match folder.remove(relative) {
            Ok(true) => {
                expected.insert(key.clone(), None);
                removed.push(key);
            }
            Ok(false) => {}
            // A folder that still holds something (made on this machine) stays, as does a path whose folder
            // is a link out of the files folder.
            Err(error) => tracing::info!(path = %key, "kept: {error}"),
        }
    }
    Ok(removed)
}
