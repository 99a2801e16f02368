//! Packing entries into a compressed tar stream, written to any `Write` as it is made, so a gigabyte never sits
//! in memory. Modes, modification times (whole seconds, as tar keeps them), links and empty folders are kept;
//! names are relative (the agent refuses anything else). A file that changes size while it is read is cut or
//! padded to the size it was listed with, so the archive stays well formed.

use std::io::{Read, Write};

use skiff::api::FileKind;

use super::{Entry, FilesError};
use crate::agent_client::ArchiveCompression;

/// What `pack` put in the archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packed {
    /// Entries written (files, folders, links).
    pub entries: u64,
    /// Files written.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// The zstd level: zstd's default, about a third fewer bytes than gzip's fastest at a similar speed.
pub const ZSTD_LEVEL: i32 = 3;

/// Writes `entries` as a tar archive compressed with `compression` to `sink`, calling `packed` after each entry.
/// Blocking.
pub fn pack<W: Write>(
    entries: &[Entry],
    compression: ArchiveCompression,
    sink: W,
    packed: impl FnMut(&Packed),
) -> Result<Packed, FilesError> {
    let (mut sink, totals) = match compression {
        ArchiveCompression::None => append_all(sink, entries, packed)?,
        ArchiveCompression::Gzip => {
            let encoder = flate2::write::GzEncoder::new(sink, flate2::Compression::new(3));
            let (encoder, totals) = append_all(encoder, entries, packed)?;
            (encoder.finish().map_err(FilesError::Write)?, totals)
        }
        ArchiveCompression::Zstd => {
            let mut encoder =
                zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL).map_err(FilesError::Write)?;
            encoder.include_checksum(true).map_err(FilesError::Write)?;
            let (encoder, totals) = append_all(encoder, entries, packed)?;
            (encoder.finish().map_err(FilesError::Write)?, totals)
        }
    };
    sink.flush().map_err(FilesError::Write)?;
    Ok(totals)
}

/// Appends every entry to a tar archive written to `encoder`, and returns the encoder to be finished.
fn append_all<E: Write>(
    encoder: E,
    entries: &[Entry],
    mut packed: impl FnMut(&Packed),
) -> Result<(E, Packed), FilesError> {
    let write_error = FilesError::Write;
    let mut builder = tar::Builder::new(encoder);
    builder.mode(tar::HeaderMode::Complete);
    builder.follow_symlinks(false);
    let mut totals = Packed::default();
    for entry in entries {
        let read_error = |source| FilesError::Read {
            path: entry.path.display().to_string(),
            source,
        };
        let metadata = match entry.path.symlink_metadata() {
            Ok(metadata) => metadata,
            // Gone since it was listed: nothing to send.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(read_error(source)),
        };
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
        match entry.stamp.kind {
            FileKind::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(entry.stamp.mode);
                header.set_size(0);
                builder
                    .append_data(&mut header, &entry.relative, std::io::empty())
                    .map_err(write_error)?;
            }
            FileKind::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder
                    .append_link(&mut header, &entry.relative, &entry.stamp.link_target)
                    .map_err(write_error)?;
            }
            FileKind::File => {
                let file = match std::fs::File::open(&entry.path) {
                    Ok(file) => file,
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(source) => return Err(read_error(source)),
                };
                let size = metadata.len();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(entry.stamp.mode);
                header.set_size(size);
                let mut reader = Exact {
                    file: file.take(size),
                    left: size,
                    error: None,
                };
                let appended = builder.append_data(&mut header, &entry.relative, &mut reader);
                if let Some(source) = reader.error.take() {
                    return Err(read_error(source));
                }
                appended.map_err(write_error)?;
                totals.files += 1;
                totals.bytes += size;
            }
        }
        totals.entries += 1;
        packed(&totals);
    }
    let encoder = builder.into_inner().map_err(write_error)?;
    Ok((encoder, totals))
}

/// A file read as exactly `left` bytes: cut when it grew, padded with zeros when it shrank. A read error is kept
/// aside (tar would only say "failed to fill whole buffer") so the caller can name the file.
struct Exact {
    file: std::io::Take<std::fs::File>,
    left: u64,
    error: Option<std::io::Error>,
}

impl Read for Exact {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buffer.is_empty() {
            return Ok(0);
        }
        let wanted = buffer
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let read = loop {
            match self.file.read(&mut buffer[..wanted]) {
                Ok(0) => {
                    buffer[..wanted].fill(0);
                    break wanted;
                }
                Ok(read) => break read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let message = error.to_string();
                    self.error = Some(error);
                    return Err(std::io::Error::other(message));
                }
            }
        };
        self.left -= read as u64;
        Ok(read)
    }
}
