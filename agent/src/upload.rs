//! One `Upload` call: unpacks a (gzip-compressed) tar stream of the workspace's files into the agent's
//! files folder, refusing entries that would land outside it.

use std::io::Read;
use std::path::{Path, PathBuf};

use skiff::proto::v1::Compression;
use tokio::sync::mpsc;

/// What an upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The folder holding the files.
    pub folder: PathBuf,
    /// Files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
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

/// Unpacks what arrives on `chunks` into `folder` (created if needed), as it arrives.
pub async fn unpack(
    folder: &Path,
    compression: Compression,
    chunks: mpsc::Receiver<Vec<u8>>,
) -> Result<Unpacked, UploadError> {
    let folder = folder.to_owned();
    tokio::task::spawn_blocking(move || {
        let error = |source| UploadError::Unpack {
            folder: folder.clone(),
            source,
        };
        std::fs::create_dir_all(&folder).map_err(error)?;
        let reader = ChannelReader {
            chunks,
            current: std::io::Cursor::new(Vec::new()),
        };
        let reader: Box<dyn Read> = match compression {
            Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
            _ => Box::new(reader),
        };
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_overwrite(true);
        let mut files = 0;
        let mut bytes = 0;
        for entry in archive.entries().map_err(error)? {
            let mut entry = entry.map_err(error)?;
            let is_file = entry.header().entry_type().is_file();
            let size = entry.header().size().unwrap_or(0);
            // `unpack_in` refuses absolute paths and `..`, so nothing lands outside the folder.
            if entry.unpack_in(&folder).map_err(error)? && is_file {
                files += 1;
                bytes += size;
            }
        }
        Ok(Unpacked {
            folder: folder.clone(),
            files,
            bytes,
        })
    })
    .await
    .expect("the unpack task does not panic")
}
