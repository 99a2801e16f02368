//! File operations beneath the files folder, which the dev container can write (it is bind-mounted there):
//! whatever the agent (root on the instance) writes, removes or stats there is resolved beneath the folder's
//! open descriptor with `cap-std` (`openat2` with `RESOLVE_BENEATH` where the kernel has it, a checked walk
//! with `O_NOFOLLOW` otherwise), never by a path string checked first and used after. A container process
//! that swaps a folder for a symbolic link at the wrong moment gets an error or a write inside the folder,
//! never one outside it.
//!
//! Files are written under a new name in their folder (`O_EXCL`, so never through a link) and renamed into
//! place, which replaces a link planted at the final name instead of following it; modes keep only the
//! permission bits (no setuid, setgid or sticky bit: the container must not gain a root program from an
//! upload).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use cap_std::fs::{Dir, MetadataExt as _, OpenOptions, OpenOptionsExt as _};
use skiff::api::{FileKind, FileStamp, StampSource};

/// The bits of a mode an upload keeps: read, write and execute for owner, group and others.
pub const MODE_BITS: u32 = 0o777;

/// What the name of a file being written by an upload holds, before the writer's process id: `.NAME` then this.
const UPLOAD_MARK: &str = ".skiff-upload-";

/// The files folder, opened once; every path given to it is relative to it.
#[derive(Debug)]
pub struct Folder {
    dir: Dir,
}

impl Folder {
    /// Opens `path` (creating it first if needed). The folder itself is the agent's: its parents are not
    /// container-writable, so the path is trusted up to here and nothing beyond it is.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(Self { dir })
    }

    /// How `relative` is now, as `crate::files::record::stamp` would say (both through `skiff::api::stamp`),
    /// without following a final link; `None` when nothing (or something that is not a file, folder or link)
    /// is there.
    pub fn stamp(&self, relative: &Path) -> std::io::Result<Option<FileStamp>> {
        let metadata = match self.dir.symlink_metadata(relative) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        skiff::api::stamp(&Seen(metadata), || {
            Ok(Some(
                self.dir
                    .read_link_contents(relative)?
                    .to_string_lossy()
                    .into_owned(),
            ))
        })
    }

    /// Writes `contents` to `relative` with `mode` (permission bits only) and modification time `mtime`
    /// (seconds since the epoch), making its folders as needed.
    pub fn write_file(
        &self,
        relative: &Path,
        mut contents: impl Read,
        mode: u32,
        mtime: Option<i64>,
    ) -> std::io::Result<()> {
        let parent = self.make_parent(relative)?;
        let name = relative
            .file_name()
            .ok_or_else(|| std::io::Error::other("a file needs a name"))?;
        let temporary = parent.join(format!(
            ".{}{UPLOAD_MARK}{}",
            name.to_string_lossy(),
            unique()
        ));
        let file = self
            .dir
            .open_with(&temporary, OpenOptions::new().write(true).create_new(true))?;
        let written = (|| {
            let mut file = file.into_std();
            std::io::copy(&mut contents, &mut file)?;
            file.flush()?;
            file.set_permissions(std::fs::Permissions::from_mode(mode & MODE_BITS))?;
            if let Some(mtime) = mtime.and_then(|mtime| u64::try_from(mtime).ok()) {
                file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))?;
            }
            self.dir.rename(&temporary, &self.dir, relative)
        })();
        if written.is_err() {
            let _ = self.dir.remove_file(&temporary);
        }
        written
    }

    /// Makes the folder `relative` (and its parents) and gives it `mode` (permission bits only).
    pub fn make_dir(&self, relative: &Path, mode: u32) -> std::io::Result<()> {
        self.dir.create_dir_all(relative)?;
        // Opened without following a final link, so the mode lands on the folder, not on what a link names.
        let opened = self.dir.open_with(
            relative,
            OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW),
        )?;
        opened
            .into_std()
            .set_permissions(std::fs::Permissions::from_mode(mode & MODE_BITS))
    }

    /// Makes `relative` a symbolic link to `target` (which may point anywhere: it is only ever read, never
    /// followed, by the agent), replacing a file or link already there.
    pub fn symlink(&self, relative: &Path, target: &Path) -> std::io::Result<()> {
        let parent = self.make_parent(relative)?;
        let temporary = parent.join(format!(".skiff-link-{}", unique()));
        self.dir.symlink_contents(target, &temporary)?;
        let renamed = self.dir.rename(&temporary, &self.dir, relative);
        if renamed.is_err() {
            let _ = self.dir.remove_file(&temporary);
        }
        renamed
    }

    /// Removes `relative`: a file or link as it is, a folder only when empty. `Ok(false)` when nothing was
    /// there.
    pub fn remove(&self, relative: &Path) -> std::io::Result<bool> {
        let metadata = match self.dir.symlink_metadata(relative) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        // Whatever stands there by the time of the call is what is removed; both calls act on the name in
        // its folder (`unlinkat`), never through it.
        if metadata.is_dir() {
            self.dir.remove_dir(relative)?;
        } else {
            self.dir.remove_file(relative)?;
        }
        Ok(true)
    }

    /// Reads the text of the file `relative` (following links only while they stay inside), at most `limit`
    /// bytes. A link that leads out is `PermissionDenied` (cap-std's "a path led outside of the filesystem").
    pub fn read_text(&self, relative: &Path, limit: u64) -> std::io::Result<String> {
        let file = self.dir.open(relative)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file.into_std(), limit), &mut text)?;
        Ok(text)
    }

    /// Opens `relative` for reading if it is a regular file: never through a final link, and never blocking on
    /// a FIFO put in its place.
    pub fn open_regular(&self, relative: &Path) -> std::io::Result<std::fs::File> {
        let file = self
            .dir
            .open_with(
                relative,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK),
            )?
            .into_std();
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        Ok(file)
    }

    /// Removes the temporary files of uploads that another process was writing (an agent killed, or a machine
    /// rebooted, in the middle of an upload): their final names were never touched, so only these are left.
    /// Walks the folder without following links, at most `MAX_DEPTH` deep; returns how many it removed.
    pub fn remove_stale_uploads(&self) -> std::io::Result<usize> {
        const MAX_DEPTH: usize = 64;
        let own = format!("{}{}-", UPLOAD_MARK, std::process::id());
        let mut removed = 0;
        let mut pending = vec![(self.dir.try_clone()?, 0)];
        while let Some((dir, depth)) = pending.pop() {
            for entry in dir.entries()? {
                let entry = entry?;
                let kind = entry.file_type()?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if kind.is_dir() && depth < MAX_DEPTH {
                    // A folder swapped for a link since is refused by `open_dir` (it stays beneath `dir`).
                    if let Ok(child) = entry.open_dir() {
                        pending.push((child, depth + 1));
                    }
                } else if kind.is_file()
                    && name.starts_with('.')
                    && name.contains(UPLOAD_MARK)
                    && !name.contains(&own)
                    && entry.remove_file().is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Makes the folder `relative` sits in; returns its path (empty for the top).
    fn make_parent<'path>(&self, relative: &'path Path) -> std::io::Result<&'path Path> {
        let parent = relative.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() {
            self.dir.create_dir_all(parent)?;
        }
        Ok(parent)
    }
}

/// A name part no other writer picks at the same moment: the process, a counter and the time.
fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    format!("{}-{count}-{nanos}", std::process::id())
}

/// cap-std's metadata of a path in the folder, as a stamp reads it.
struct Seen(cap_std::fs::Metadata);

impl StampSource for Seen {
    fn kind(&self) -> Option<FileKind> {
        let file_type = self.0.file_type();
        FileKind::from_type(
            file_type.is_file(),
            file_type.is_dir(),
            file_type.is_symlink(),
        )
    }

    fn size(&self) -> u64 {
        self.0.len()
    }

    fn mtime(&self) -> i64 {
        self.0.mtime()
    }

    fn mode(&self) -> u32 {
        self.0.mode()
    }
}
