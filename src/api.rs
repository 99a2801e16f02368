//! The agent's vocabulary in plain Rust: what the client asks for and what the agent reports.
//!
//! These types are what `agent::service` and `client::agent_client` hand to the rest of their crates;
//! the generated protobuf types never travel further. Conversions live in `crate::proto`.

use std::collections::BTreeMap;

/// The contract version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Capability names an agent reports from `Version`; a client checks one before using the feature.
pub mod capability {
    /// `Exec` with a terminal, resize and signals.
    pub const EXEC_TTY: &str = "exec.tty";
    /// `Forward` to a port of the dev container or a host it resolves.
    pub const FORWARD_TCP: &str = "forward.tcp";
    /// `Upload` of a gzip-compressed tar archive.
    pub const UPLOAD_TAR_GZIP: &str = "upload.tar-gzip";
    /// `Up` with image and Dockerfile configurations.
    pub const UP_IMAGE_DOCKERFILE: &str = "up.image-dockerfile";
    /// `Ssh`: an SSH server for `skiff proxy`, with shell, exec, sftp and `direct-tcpip`.
    pub const SSH: &str = "ssh";
    /// `Upload` of a zstd-compressed tar archive.
    pub const UPLOAD_TAR_ZSTD: &str = "upload.tar-zstd";
    /// `Upload` in parts over several connections (`UploadStart.upload_id`), and `UploadStart.remove`.
    pub const UPLOAD_PARTS: &str = "upload.parts";
    /// `Manifest`, for `skiff sync`.
    pub const MANIFEST: &str = "files.manifest";
    /// `UploadStart.expected`: each path checked again at the moment it is written or removed.
    pub const UPLOAD_EXPECTED: &str = "upload.expected";
    /// `CloneRepository` and `ReadConfig`, for `skiff up GIT_URL`.
    pub const CLONE: &str = "files.clone";
    /// `GitState`, for `skiff delete` to warn about unsaved work.
    pub const GIT_STATE: &str = "files.git-state";
    /// `ReplaceAgent`, for an upgraded client to upgrade the agent.
    pub const REPLACE_AGENT: &str = "agent.replace";
    /// `CloneRepositoryRequest.branch`, for `skiff up URL@BRANCH`.
    pub const CLONE_BRANCH: &str = "files.clone-branch";
    /// `GitCredentials`: git in the dev container asks the connected client's git for credentials.
    pub const GIT_CREDENTIALS: &str = "git.credentials";
    /// `Start`, for a command that connects to a stopped workspace to start it.
    pub const START: &str = "start";
    /// `SshAgent`: the connected client's SSH agent, forwarded into the dev container (`skiff ssh -A`).
    pub const SSH_AGENT: &str = "ssh.agent-forwarding";
    /// `SshAgent` with `gpg`: the connected client's gpg-agent, forwarded (`skiff ssh --gpg`).
    pub const GPG_AGENT: &str = "gpg.agent-forwarding";
}

/// The state of a dev container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// There is no dev container.
    Absent,
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused by Docker.
    Paused,
    /// Restarting after a failure.
    Restarting,
    /// Stopped; its filesystem is kept.
    Stopped,
    /// Being removed, or dead.
    Removing,
}

impl std::fmt::Display for ContainerState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::Absent => "absent",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
            Self::Removing => "removing",
        };
        formatter.write_str(text)
    }
}

/// What the agent is and what it can do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VersionInfo {
    /// The agent's release version.
    pub agent_version: String,
    /// The contract version the agent speaks.
    pub protocol_version: u32,
    /// Capability names (see [`capability`]).
    pub capabilities: Vec<String>,
    /// The agent's operating system.
    pub os: String,
    /// The agent's CPU architecture.
    pub arch: String,
    /// The Docker engine's version, if it answers.
    pub docker_version: Option<String>,
    /// The SHA-256 of the agent's executable, lower-case hex, if it could be read.
    pub binary_sha256: Option<String>,
}

/// The idle countdown.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IdleStatus {
    /// The idle timeout in seconds; 0 when idle shutdown is off.
    pub timeout_seconds: u64,
    /// Seconds since the last activity.
    pub idle_seconds: u64,
    /// Seconds until the agent stops the workspace, if it will.
    pub stops_in_seconds: Option<u64>,
    /// What the last activity was.
    pub last_activity_source: String,
    /// When the last activity happened, in milliseconds since the Unix epoch.
    pub last_activity_unix_ms: i64,
    /// What keeps the workspace busy right now.
    pub busy_sources: Vec<String>,
    /// Until when a pin keeps the workspace up (milliseconds since the Unix epoch), if there is a pin.
    pub pinned_until_unix_ms: Option<i64>,
    /// The CPU threshold that keeps the workspace up, in percent, if set.
    pub busy_cpu_percent: Option<f64>,
}

/// The workspace as the agent sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Status {
    /// The workspace's name.
    pub workspace: String,
    /// The dev container's state.
    pub container_state: ContainerState,
    /// The dev container's id, if there is one.
    pub container_id: Option<String>,
    /// The image the dev container runs.
    pub image: Option<String>,
    /// Where the workspace is mounted in the dev container.
    pub workspace_folder: Option<String>,
    /// The user commands run as by default.
    pub remote_user: Option<String>,
    /// The idle countdown.
    pub idle: IdleStatus,
    /// The agent's release version.
    pub agent_version: String,
    /// Why the Docker engine is unreachable, if it is.
    pub docker_error: Option<String>,
    /// When the machine ran this month, from the agent's ledger (`None` from an agent without one).
    pub usage: Option<Usage>,
    /// What the dev container's merged metadata (its image's, its Features', devcontainer.json's) asks of VS Code.
    pub editor: EditorCustomizations,
}

/// `customizations.vscode` merged over every metadata entry, as VS Code reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct EditorCustomizations {
    /// Extensions to install, in order, each once (an entry's `-ID` removes an earlier ID).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<String>,
    /// Remote machine settings, as a JSON object's text; later entries win per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settings_json: Option<String>,
}

/// What the agent's ledger says of one calendar month (UTC); times in seconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// The month's first second.
    pub month_start_unix: i64,
    /// Seconds the machine ran this month, up to now.
    pub running_seconds: i64,
    /// Seconds the machine was off after an idle stop this month, up to its next start.
    pub idle_off_seconds: i64,
    /// Idle stops this month.
    pub idle_stops: u32,
    /// When the current up began, if the machine is up.
    pub up_since_unix: Option<i64>,
    /// The ledger's first entry: figures before it are unknown.
    pub ledger_since_unix: Option<i64>,
}

/// What `Up` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpSpec {
    /// The devcontainer.json, resolved on the client's side, as JSON.
    pub config_json: String,
    /// The path of devcontainer.json on the client's machine.
    pub config_file: String,
    /// The workspace folder on the client's machine.
    pub local_folder: String,
    /// Where the workspace's files are on the agent's machine.
    pub files_folder: String,
    /// Build afresh instead of reusing an existing container.
    pub rebuild: bool,
    /// The laptop's logins to the registries the configuration pulls from (its image, its Dockerfile's bases, its
    /// Features), for this `Up` only: the agent uses them for its pulls and keeps them nowhere.
    pub registry_logins: Vec<RegistryLogin>,
}

/// A login to one registry, from the laptop's Docker configuration (`config.json` or a credential helper).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryLogin {
    /// The registry's host (and port), as image references name it: `ghcr.io`, `127.0.0.1:5000`, `docker.io`.
    pub registry: String,
    /// The user name; empty with an identity token.
    pub username: String,
    /// The password, or the identity token when `identity_token` is set.
    pub secret: String,
    /// Whether `secret` is an identity (refresh) token rather than a password.
    pub identity_token: bool,
}

impl RegistryLogin {
    /// The registry an image or Feature reference names: its first path part when that is a host (it has a dot or
    /// a port, or is `localhost`), else Docker Hub (`docker.io`).
    pub fn registry_of(reference: &str) -> String {
        match reference.split_once('/') {
            Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => {
                first.to_ascii_lowercase()
            }
            _ => "docker.io".to_owned(),
        }
    }

    /// The server a Docker configuration and the Engine API name this registry by: Docker Hub's index URL for
    /// `docker.io`, else the registry itself.
    pub fn server_address(registry: &str) -> &str {
        if registry == "docker.io" {
            "https://index.docker.io/v1/"
        } else {
            registry
        }
    }

    /// The login of `logins` for `reference`'s registry.
    pub fn for_reference<'a>(logins: &'a [Self], reference: &str) -> Option<&'a Self> {
        let registry = Self::registry_of(reference);
        logins.iter().find(|login| login.registry == registry)
    }
}

impl std::fmt::Debug for RegistryLogin {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret must never reach a log line.
        formatter
            .debug_struct("RegistryLogin")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("identity_token", &self.identity_token)
            .finish_non_exhaustive()
    }
}

/// The steps of `Up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpPhase {
    /// Reading the configuration and looking for an existing container.
    Resolving,
    /// Pulling an image.
    Pulling,
    /// Building an image.
    Building,
    /// Creating the container.
    Creating,
    /// Starting the container.
    Starting,
    /// Running a lifecycle command.
    Lifecycle,
}

/// Which output stream bytes came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// The dev container `Up` made ready.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UpResult {
    /// The container's id.
    pub container_id: String,
    /// Whether `Up` created it (or reused one).
    pub created: bool,
    /// Where the workspace is mounted in the container.
    pub workspace_folder: String,
    /// The user commands run as by default.
    pub remote_user: String,
    /// The image it runs.
    pub image: String,
}

/// One event of `Up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpEvent {
    /// A step began.
    Progress { phase: UpPhase, message: String },
    /// Output of a build or a lifecycle command.
    Output { stream: OutputStream, data: Vec<u8> },
    /// Something the user should know.
    Warning(String),
    /// The container is ready.
    Ready(UpResult),
}

/// A terminal's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSize {
    /// Columns.
    pub columns: u16,
    /// Rows.
    pub rows: u16,
}

/// What `Exec` runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecSpec {
    /// The command and its arguments; empty means the user's login shell.
    pub command: Vec<String>,
    /// Give the process a terminal.
    pub tty: bool,
    /// Run as this user instead of the workspace's remote user.
    pub user: Option<String>,
    /// Run in this folder instead of the workspace folder.
    pub working_dir: Option<String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// The terminal's size at start.
    pub window: Option<WindowSize>,
    /// Attach standard input.
    pub stdin: bool,
}

/// Input to a running `Exec`, after its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    /// Bytes for standard input.
    Stdin(Vec<u8>),
    /// Standard input ended.
    StdinEof,
    /// The terminal changed size.
    Resize(WindowSize),
    /// A signal for the process, by number.
    Signal(i32),
}

/// Output of a running `Exec`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// Bytes from standard output.
    Stdout(Vec<u8>),
    /// Bytes from standard error.
    Stderr(Vec<u8>),
    /// The process ended with this code (128 + n for a death by signal n).
    Exit(i32),
    /// A message from the agent for the person at the terminal.
    Notice(String),
}

/// Where `Forward` connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTarget {
    /// A host as the dev container resolves it; `None` means the dev container itself.
    pub host: Option<String>,
    /// The TCP port.
    pub port: u16,
}

/// Input of one forwarded connection, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardInput {
    /// Bytes for the remote side.
    Data(Vec<u8>),
    /// The client's side closed for writing.
    Eof,
}

/// Bytes and ends of one forwarded connection, as the agent reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardEvent {
    /// Connected to this address.
    Opened(String),
    /// Bytes from the remote side.
    Data(Vec<u8>),
    /// The remote side closed for writing.
    Eof,
}

/// How an uploaded archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar archive.
    None,
    /// gzip, which every agent takes.
    Gzip,
    /// zstd (capability `upload.tar-zstd`).
    Zstd,
}

/// What one `Upload` call says about its bytes (`UploadStart` in the contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadHeader {
    /// How the archive is compressed.
    pub compression: Compression,
    /// The archive's size, if known (0 otherwise).
    pub size: u64,
    /// Which part of an upload in parts this call carries; `None` for an upload in one call.
    pub part: Option<UploadPart>,
    /// Paths to remove from the files folder before unpacking (relative, `/`-separated).
    pub remove: Vec<String>,
    /// How the paths a sync writes or removes looked when it decided (`None`: absent); the agent leaves one
    /// that changed since and reports it in [`UploadReply::conflicts`].
    pub expected: Vec<(String, Option<FileStamp>)>,
}

/// One part of an upload spread over several connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    /// Shared by the upload's parts.
    pub upload_id: String,
    /// This part, from 0.
    pub part: u32,
    /// How many parts.
    pub parts: u32,
    /// Stripe i of the archive goes to part i % parts.
    pub stripe_size: u64,
    /// How long the agent waits for a missing part, in seconds (0: its default).
    pub wait_seconds: u32,
}

/// What an `Upload` call reports once the whole upload is unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadReply {
    /// The files folder on the agent's machine.
    pub files_folder: String,
    /// Files written.
    pub files: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Paths removed.
    pub removed: u64,
    /// How many parts the upload came in.
    pub parts: u32,
    /// Paths of [`UploadHeader::expected`] that had changed on the agent's machine, left as they were.
    pub conflicts: Vec<String>,
}

/// The kinds of path the workspace's files hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Directory,
    /// A symbolic link.
    Symlink,
}

impl FileKind {
    /// The kind a file type's three tests give (std's and cap-std's `FileType` alike); `None` for anything else.
    pub fn from_type(is_file: bool, is_dir: bool, is_symlink: bool) -> Option<FileKind> {
        if is_file {
            Some(FileKind::File)
        } else if is_dir {
            Some(FileKind::Directory)
        } else if is_symlink {
            Some(FileKind::Symlink)
        } else {
            None
        }
    }
}

/// What identifies a version of a path without reading it; equal stamps mean "unchanged".
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    /// A file, folder or symbolic link.
    pub kind: FileKind,
    /// The size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// The modification time in whole seconds since the Unix epoch (files only; 0 otherwise).
    pub mtime: i64,
    /// The permission bits (files and folders; 0 for links).
    pub mode: u32,
    /// Where a symbolic link points (links only; empty otherwise).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub link_target: String,
}

impl FileStamp {
    /// Whether two stamps describe the same version of a path (a folder's time changes with its contents, so
    /// only its mode counts; a link is its target).
    pub fn same_version(&self, other: &Self) -> bool {
        self.kind == other.kind
            && match self.kind {
                FileKind::File => {
                    self.size == other.size && self.mtime == other.mtime && self.mode == other.mode
                }
                FileKind::Directory => self.mode == other.mode,
                FileKind::Symlink => self.link_target == other.link_target,
            }
    }
}

/// What a [`FileStamp`] is read from: a path's metadata, read without following a final link.
/// `std::fs::Metadata` is one; the agent's files folder reads its own through `cap-std`.
pub trait StampSource {
    /// The kind of path, or `None` for what a stamp does not describe (sockets, devices, pipes).
    fn kind(&self) -> Option<FileKind>;
    /// The size in bytes.
    fn size(&self) -> u64;
    /// The modification time in whole seconds since the Unix epoch.
    fn mtime(&self) -> i64;
    /// The mode, of which the permission bits count.
    fn mode(&self) -> u32;
}

impl StampSource for std::fs::Metadata {
    fn kind(&self) -> Option<FileKind> {
        let file_type = self.file_type();
        FileKind::from_type(
            file_type.is_file(),
            file_type.is_dir(),
            file_type.is_symlink(),
        )
    }

    fn size(&self) -> u64 {
        self.len()
    }

    fn mtime(&self) -> i64 {
        std::os::unix::fs::MetadataExt::mtime(self)
    }

    fn mode(&self) -> u32 {
        std::os::unix::fs::MetadataExt::mode(self)
    }
}

/// The one way client and agent stamp a path: how it is now, from its `metadata` (read without following a
/// final link) and, for a link, `link_target` (which gives `None` for a target the caller cannot carry).
/// `None` for what a stamp does not describe (sockets, devices, pipes) and links without a target to carry.
pub fn stamp(
    metadata: &impl StampSource,
    link_target: impl FnOnce() -> std::io::Result<Option<String>>,
) -> std::io::Result<Option<FileStamp>> {
    Ok(Some(match metadata.kind() {
        Some(FileKind::File) => FileStamp {
            kind: FileKind::File,
            size: metadata.size(),
            mtime: metadata.mtime(),
            mode: metadata.mode() & 0o7777,
            link_target: String::new(),
        },
        Some(FileKind::Directory) => FileStamp {
            kind: FileKind::Directory,
            size: 0,
            mtime: 0,
            mode: metadata.mode() & 0o7777,
            link_target: String::new(),
        },
        Some(FileKind::Symlink) => {
            let Some(target) = link_target()? else {
                return Ok(None);
            };
            FileStamp {
                kind: FileKind::Symlink,
                size: 0,
                mtime: 0,
                mode: 0,
                link_target: target,
            }
        }
        None => return Ok(None),
    }))
}

/// One path of the agent's files folder, for `skiff sync`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Relative to the files folder, `/`-separated.
    pub path: String,
    /// How it is now; `None` when an upload wrote it but it is gone since.
    pub current: Option<FileStamp>,
    /// How the last upload or sync left it; `None` when no upload wrote it.
    pub uploaded: Option<FileStamp>,
    /// The SHA-256 of its content, when it was asked for.
    pub sha256: Option<[u8; 32]>,
}

/// An event of `CloneRepository`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloneEvent {
    /// Output of `git clone`.
    Output(Vec<u8>),
    /// The clone is in place.
    Done(Cloned),
}

/// The repository `CloneRepository` put in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cloned {
    /// The files folder on the agent's machine.
    pub files_folder: String,
    /// False when a clone of the same URL was already there and was kept.
    pub cloned: bool,
    /// The commit checked out, if the repository has one.
    pub head: Option<String>,
}

/// The devcontainer.json inside the agent's files folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The files folder on the agent's machine.
    pub files_folder: String,
    /// The config file, relative to the files folder.
    pub config_path: String,
    /// Its text.
    pub text: String,
}

/// Work in the files folder's git repository that exists nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct GitState {
    /// False when the files folder is not a git repository.
    pub repository: bool,
    /// How many paths have uncommitted changes (untracked files included).
    pub uncommitted: u32,
    /// The first few of them.
    pub uncommitted_paths: Vec<String>,
    /// Branches with commits on no remote-tracking branch.
    pub unpushed: Vec<UnpushedBranch>,
    /// How many stash entries there are.
    pub stashes: u32,
}

impl GitState {
    /// True when nothing would be lost: no uncommitted change, no unpushed commit, no stash.
    pub fn is_clean(&self) -> bool {
        self.uncommitted == 0 && self.unpushed.is_empty() && self.stashes == 0
    }
}

/// A branch with commits no remote has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnpushedBranch {
    /// The branch, or `HEAD` for a detached HEAD.
    pub branch: String,
    /// How many commits are on no remote-tracking branch.
    pub commits: u32,
    /// The upstream it tracks, if any.
    pub upstream: Option<String>,
}

/// A request of git's credential helper in the dev container, passed to a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitCredentialRequest {
    /// Answers name it.
    pub id: u64,
    /// `get`, `store` or `erase`.
    pub action: String,
    /// The helper protocol's attributes git gave.
    pub attributes: BTreeMap<String, String>,
}

/// One message of an `SshAgent` call, which forwards the client's SSH agent into the dev container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshAgentMessage {
    /// Client to agent, first: forward the agent for commands run as `user` (none: the workspace's remote user);
    /// with `gpg`, the client's gpg-agent (its extra socket) at the socket gpg uses in the container, instead of its
    /// SSH agent.
    Start { user: Option<String>, gpg: bool },
    /// Agent to client, first: the socket inside the dev container, for `SSH_AUTH_SOCK`.
    Ready { socket: String },
    /// Agent to client: a program in the dev container connected to the socket; its bytes follow as `Data`.
    Open { connection: u64 },
    /// Either way: bytes of one connection.
    Data { connection: u64, data: Vec<u8> },
    /// Either way: the sender's side of one connection ended (or could not be opened).
    Close { connection: u64 },
}

/// A client's answer to a [`GitCredentialRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitCredentialAnswer {
    /// The request answered (0 opens the call).
    pub id: u64,
    /// For `get`: the credential's attributes; empty when the client has none.
    pub attributes: BTreeMap<String, String>,
    /// Why the client could not answer.
    pub error: Option<String>,
}
