//! Files replaced in one step, so a crash at any moment (of the process or of the machine) leaves either the old
//! contents or the new, never a mix or an empty file, and writers at once never see each other's halves.
//!
//! Each write goes to a temporary file of its own in the same folder (`tempfile`, so two writers never share one),
//! is flushed to the disk, then renamed over the target, and the folder is flushed so the rename survives a power
//! cut too.

use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Replaces `path` with `contents`, the new file having permission bits `mode`.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut file = tempfile::Builder::new()
        .prefix(".")
        .suffix(".partial")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(folder)?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|error| error.error)?;
    std::fs::File::open(folder)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The contents writer `writer` puts in its `round`th write: its own length, so a mix of two is seen.
    fn contents(writer: usize, round: usize) -> Vec<u8> {
        let length = 1 + (writer * 7919 + round * 104_729) % 200_000;
        let mut bytes = format!("{writer}:{round}:{length}:").into_bytes();
        bytes.resize(length.max(bytes.len()), b'a' + (writer % 26) as u8);
        bytes
    }

    fn is_whole(bytes: &[u8]) -> bool {
        let text = String::from_utf8_lossy(bytes);
        let mut fields = text.splitn(4, ':');
        let (Some(writer), Some(round), Some(_length)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let (Ok(writer), Ok(round)) = (writer.parse(), round.parse()) else {
            return false;
        };
        bytes == contents(writer, round).as_slice()
    }

    /// The old way (`path.with_extension("tmp")`, written then renamed) shared one temporary file between writers:
    /// one renamed the other's half-written file into place, and the other's rename then failed.
    #[test]
    fn writers_at_once_each_succeed_and_a_reader_only_ever_sees_whole_contents() {
        let folder = tempfile::tempdir().unwrap();
        let path = Arc::new(folder.path().join("state.json"));
        super::write(&path, &contents(0, 0), 0o600).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, done) = (Arc::clone(&path), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) {
                    let bytes = std::fs::read(&*path).expect("the file is always there");
                    assert!(is_whole(&bytes), "a torn read of {} bytes", bytes.len());
                    reads += 1;
                }
                reads
            })
        };
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let path = Arc::clone(&path);
                std::thread::spawn(move || {
                    for round in 0..40 {
                        super::write(&path, &contents(writer, round), 0o600).expect("every write");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().expect("a writer");
        }
        done.store(true, Ordering::Relaxed);
        assert!(reader.join().expect("the reader") > 0);
        assert!(is_whole(&std::fs::read(&*path).unwrap()));
        let leftovers: Vec<_> = std::fs::read_dir(folder.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .filter(|name| name != "state.json")
            .collect();
        assert!(
            leftovers.is_empty(),
            "no temporary file is left: {leftovers:?}"
        );
    }

    #[test]
    fn the_new_file_has_the_mode_asked_for() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("key");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        super::write(&path, b"new", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_folder_that_is_not_there_is_an_error_and_makes_nothing() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("missing/state.json");
        let error = super::write(&path, b"x", 0o600).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        assert!(!folder.path().join("missing").exists());
    }
}
