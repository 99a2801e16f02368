//! One `Upload`: unpacks a compressed tar stream of the workspace's files into the agent's files folder, refusing
//! entries that would land outside it. Before unpacking it removes the paths a sync asks to remove; after, it
//! records what it wrote (`crate::files::record`), which `Manifest` reports so `skiff sync` sends only changes.
//! An upload in parts (several connections at once) is put back together by `crate::files::parts`, then comes here.

use std::io::Read;
use std::path::{Path, PathBuf};

use skiff::api::{FileKind, FileStamp};
use tokio::sync::mpsc;

use crate::files::record::Record;

/// How an uploaded archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

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
}

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
        unpack_reader(&folder, None, compression, reader, &[])
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
        )
    })
    .await
    .expect("the unpack task does not panic")
}

/// Removes `remove` from `folder`, then unpacks the archive `reader` gives into it; with `record`, notes in that
/// record file what was removed and written. Blocking.
pub fn unpack_reader(
    folder: &Path,
    record: Option<&Path>,
    compression: Compression,
    reader: impl Read,
    remove: &[String],
) -> Result<Unpacked, UploadError> {
    let error = |source| UploadError::Unpack {
        folder: folder.to_owned(),
        source,
    };
    std::fs::create_dir_all(folder).map_err(error)?;
    let mut written = record.map(Record::load);
    let removed = remove_paths(folder, remove)?;
    if let Some(written) = &mut written {
        for path in remove {
            written.remove(path);
        }
    }
    let reader: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader).map_err(error)?),
        Compression::None => Box::new(reader),
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_overwrite(true);
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
            // `unpack_in` refuses absolute paths and `..` (and parents that are links out), so nothing lands outside.
            if entry.unpack_in(folder).map_err(error)? {
                if let Some(stamp) = &stamp
                    && stamp.kind == FileKind::File
                {
                    files += 1;
                    bytes += stamp.size;
                }
                if let (Some(written), Some(path), Some(stamp)) = (&mut written, path, stamp) {
                    written.insert(path, stamp);
                }
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
    })
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
            mode: header.mode().ok()? & 0o7777,
            link_target: String::new(),
        },
        FileKind::Directory => FileStamp {
            kind,
            size: 0,
            mtime: 0,
            mode: header.mode().ok()? & 0o7777,
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

/// Removes each of `paths` (relative to `folder`), deepest first: files and links as they are, folders only
/// when empty, and nothing reached through a link. Returns how many were removed.
fn remove_paths(folder: &Path, paths: &[String]) -> Result<u64, UploadError> {
    let mut checked = Vec::with_capacity(paths.len());
    for text in paths {
        let relative = crate::files::relative_path(text).ok_or_else(|| {
            UploadError::Invalid(format!(
                "UploadStart: field remove has invalid path {text:?}; paths are relative, inside the files folder"
            ))
        })?;
        checked.push(relative);
    }
    checked.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
    let mut removed = 0;
    for relative in checked {
        if crate::files::through_link(folder, &relative) {
            tracing::warn!(path = %relative.display(), "not removing a path reached through a link");
            continue;
        }
        let path = folder.join(&relative);
        let Ok(metadata) = path.symlink_metadata() else {
            continue;
        };
        let result = if metadata.is_dir() {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed += 1,
            // A folder that still holds something (made on this machine) stays.
            Err(error) => tracing::info!(path = %path.display(), "kept: {error}"),
        }
    }
    Ok(removed)
}
