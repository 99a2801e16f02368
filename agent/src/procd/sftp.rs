//! The SFTP server of `skiff-procd --sftp`: SFTP version 3 on standard input and output, over the
//! filesystem as the process sees it. The agent's SSH server starts it in the dev container as the SSH
//! user (through the process server or `docker exec`), so files are read and written with that user's
//! rights and land where the container sees them, and relative paths start at the workspace folder.
//!
//! russh-sftp speaks the protocol; this module maps each request to `std::fs`. It is one client's server
//! in a process of its own, so blocking file calls are fine here. File names travel as UTF-8 (the protocol
//! library's choice); a name that is not UTF-8 is shown with replacement characters.

use std::collections::HashMap;
use std::fs::{File, FileTimes, OpenOptions, Permissions};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use russh_sftp::protocol::{
    Attrs, Data, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;
use tokio::io::{AsyncRead, AsyncWrite};

/// The most bytes one read returns; clients ask for 32–256 KiB.
const MAX_READ: u32 = 256 * 1024;
/// How many names one `readdir` answer carries.
const NAMES_PER_READDIR: usize = 128;

/// Serves SFTP on `stream` until the client ends it.
pub async fn serve(stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static) {
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    russh_sftp::server::run(stream, Server::new(done)).await;
    // The library serves in a task of its own and drops the handler, and with it `done`, when the stream ends.
    let _ = finished.await;
}

/// Serves SFTP on the process's standard input and output; what `skiff-procd --sftp` runs.
pub fn serve_stdio() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(tokio::io::join(
        tokio::io::stdin(),
        tokio::io::stdout(),
    )));
    Ok(())
}

/// An open file or a folder being listed.
#[derive(Debug)]
enum Open {
    File(File),
    /// The names not yet sent, or `None` once the listing was read to its end.
    Folder(Option<Vec<russh_sftp::protocol::File>>),
}

/// One client's server: its open handles.
#[derive(Debug)]
pub(crate) struct Server {
    handles: HashMap<String, Open>,
    next_handle: u64,
    /// Dropped with the server, which tells [`serve`] that the session ended.
    _done: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    pub(crate) fn new(done: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            handles: HashMap::new(),
            next_handle: 0,
            _done: done,
        }
    }

    fn insert(&mut self, open: Open) -> String {
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        handle
    }

    fn file(&self, handle: &str) -> Result<&File, StatusReply> {
        match self.handles.get(handle) {
            Some(Open::File(file)) => Ok(file),
            _ => Err(StatusCode::Failure.with_message(format!("no open file has handle {handle}"))),
        }
    }
}

/// The answer to a request that succeeded without data.
fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".to_owned(),
        language_tag: "en-US".to_owned(),
    }
}

/// A file-system error as SFTP says it, with the system's message and the path.
fn failure(path: &str) -> impl FnOnce(std::io::Error) -> StatusReply + '_ {
    move |error| {
        let code = match error.kind() {
            std::io::ErrorKind::NotFound => StatusCode::NoSuchFile,
            std::io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
            _ => StatusCode::Failure,
        };
        code.with_message(format!("{path}: {error}"))
    }
}

/// The attributes of a file, with its type and permission bits as the system reports them.
pub(crate) fn attributes(metadata: &std::fs::Metadata) -> FileAttributes {
    let seconds = |time: std::io::Result<std::time::SystemTime>| {
        time.ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| {
                u32::try_from(since.as_secs()).unwrap_or(u32::MAX)
            })
    };
    FileAttributes {
        size: Some(metadata.len()),
        uid: Some(metadata.uid()),
        user: None,
        gid: Some(metadata.gid()),
        group: None,
        permissions: Some(metadata.mode()),
        atime: Some(seconds(metadata.accessed())),
        mtime: Some(seconds(metadata.modified())),
    }
}

/// `path` made absolute against the working folder and cleaned of `.` and `..`, without touching the disk.
pub(crate) fn normalize(base: &Path, path: &str) -> PathBuf {
    let mut clean = PathBuf::from("/");
    let joined = if path.is_empty() {
        base.to_owned()
    } else {
        base.join(path)
    };
    for component in joined.components() {
        match component {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                clean.pop();
            }
            Component::Normal(part) => clean.push(part),
        }
    }
    clean
}

/// Applies the attributes a client asked for: size, owner, permissions, times.
fn set_attributes(
    path: &str,
    file: Option<&File>,
    attributes: &FileAttributes,
) -> Result<(), StatusReply> {
    let opened;
    let file = match file {
        Some(file) => Some(file),
        None if attributes.size.is_some() => {
            opened = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(failure(path))?;
            Some(&opened)
        }
        None => None,
    };
    if let Some(size) = attributes.size
        && let Some(file) = file
    {
        file.set_len(size).map_err(failure(path))?;
    }
    if attributes.uid.is_some() || attributes.gid.is_some() {
        match file {
            Some(file) => std::os::unix::fs::fchown(file, attributes.uid, attributes.gid),
            None => std::os::unix::fs::chown(path, attributes.uid, attributes.gid),
        }
        .map_err(failure(path))?;
    }
    if let Some(mode) = attributes.permissions {
        let permissions = Permissions::from_mode(mode & 0o7777);
        match file {
            Some(file) => file.set_permissions(permissions),
            None => std::fs::set_permissions(path, permissions),
        }
        .map_err(failure(path))?;
    }
    if attributes.atime.is_some() || attributes.mtime.is_some() {
        let time = |seconds: u32| UNIX_EPOCH + Duration::from_secs(seconds.into());
        let mut times = FileTimes::new();
        if let Some(atime) = attributes.atime {
            times = times.set_accessed(time(atime));
        }
        if let Some(mtime) = attributes.mtime {
            times = times.set_modified(time(mtime));
        }
        let reopened;
        let target = match file {
            Some(file) => file,
            None => {
                reopened = File::open(path).map_err(failure(path))?;
                &reopened
            }
        };
        target.set_times(times).map_err(failure(path))?;
    }
    Ok(())
}

impl russh_sftp::server::Handler for Server {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.into()
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        flags: OpenFlags,
        attributes: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        let mut options = OpenOptions::new();
        options
            .read(flags.contains(OpenFlags::READ))
            .write(flags.contains(OpenFlags::WRITE))
            .append(flags.contains(OpenFlags::APPEND))
            .truncate(flags.contains(OpenFlags::TRUNCATE));
        if flags.contains(OpenFlags::EXCLUDE) {
            options.create_new(true);
        } else {
            options.create(flags.contains(OpenFlags::CREATE));
        }
        options.mode(attributes.permissions.map_or(0o666, |mode| mode & 0o7777));
        let file = options.open(&filename).map_err(failure(&filename))?;
        Ok(Handle {
            id,
            handle: self.insert(Open::File(file)),
        })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(StatusCode::Failure.with_message(format!("no open handle {handle}"))),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        length: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        let mut data = vec![0u8; length.min(MAX_READ) as usize];
        let mut filled = 0;
        // Fill the answer as far as the file goes, so a short read means the end is near, not reached.
        while filled < data.len() {
            match file.read_at(&mut data[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(failure(&handle)(error)),
            }
        }
        if filled == 0 && length > 0 {
            return Err(StatusCode::Eof.into());
        }
        data.truncate(filled);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        self.file(&handle)?
            .write_all_at(&data, offset)
            .map_err(failure(&handle))?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let metadata = std::fs::symlink_metadata(&path).map_err(failure(&path))?;
        Ok(Attrs {
            id,
            attrs: attributes(&metadata),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let metadata = std::fs::metadata(&path).map_err(failure(&path))?;
        Ok(Attrs {
            id,
            attrs: attributes(&metadata),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let metadata = self.file(&handle)?.metadata().map_err(failure(&handle))?;
        Ok(Attrs {
            id,
            attrs: attributes(&metadata),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attributes: FileAttributes,
    ) -> Result<Status, Self::Error> {
        set_attributes(&path, None, &attributes)?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attributes: FileAttributes,
    ) -> Result<Status, Self::Error> {
        set_attributes(&handle, Some(self.file(&handle)?), &attributes)?;
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let folder = if path.is_empty() { "." } else { path.as_str() };
        let mut names = Vec::new();
        // Like readdir(3), and OpenSSH's server, the listing includes `.` and `..`.
        for name in [".", ".."] {
            if let Ok(metadata) = std::fs::symlink_metadata(Path::new(folder).join(name)) {
                names.push(russh_sftp::protocol::File::new(name, attributes(&metadata)));
            }
        }
        for entry in std::fs::read_dir(folder).map_err(failure(folder))? {
            let entry = entry.map_err(failure(folder))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // An entry removed while listing is skipped rather than failing the whole listing.
            if let Ok(metadata) = std::fs::symlink_metadata(entry.path()) {
                names.push(russh_sftp::protocol::File::new(name, attributes(&metadata)));
            }
        }
        names.reverse();
        Ok(Handle {
            id,
            handle: self.insert(Open::Folder(Some(names))),
        })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let Some(Open::Folder(listing)) = self.handles.get_mut(&handle) else {
            return Err(
                StatusCode::Failure.with_message(format!("no open folder has handle {handle}"))
            );
        };
        let Some(names) = listing else {
            return Err(StatusCode::Eof.into());
        };
        let mut files = Vec::new();
        while files.len() < NAMES_PER_READDIR
            && let Some(file) = names.pop()
        {
            files.push(file);
        }
        if names.is_empty() {
            *listing = None;
        }
        if files.is_empty() {
            return Err(StatusCode::Eof.into());
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        std::fs::remove_file(&filename).map_err(failure(&filename))?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attributes: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(
            &mut builder,
            attributes.permissions.map_or(0o777, |mode| mode & 0o7777),
        );
        builder.create(&path).map_err(failure(&path))?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        std::fs::remove_dir(&path).map_err(failure(&path))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let base = std::env::current_dir().map_err(failure("the working folder"))?;
        let lexical = normalize(&base, &path);
        // Links are resolved where the path exists; a path still to be made is cleaned up only.
        let real = std::fs::canonicalize(&lexical).unwrap_or(lexical);
        Ok(Name {
            id,
            files: vec![russh_sftp::protocol::File::dummy(
                real.to_string_lossy().into_owned(),
            )],
        })
    }

    async fn rename(
        &mut self,
        id: u32,
        old_path: String,
        new_path: String,
    ) -> Result<Status, Self::Error> {
        std::fs::rename(&old_path, &new_path).map_err(failure(&old_path))?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        let target = std::fs::read_link(&path).map_err(failure(&path))?;
        Ok(Name {
            id,
            files: vec![russh_sftp::protocol::File::dummy(
                target.to_string_lossy().into_owned(),
            )],
        })
    }

    async fn symlink(
        &mut self,
        id: u32,
        first: String,
        second: String,
    ) -> Result<Status, Self::Error> {
        // OpenSSH sends the link's target first and the new link's path second, the reverse of the draft
        // standard, and its own server reads them that way; the clients people use are OpenSSH's.
        let (target, link) = (first, second);
        std::os::unix::fs::symlink(&target, &link).map_err(failure(&link))?;
        Ok(ok(id))
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
