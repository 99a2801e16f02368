//! The local record of workspaces: which exist, where their files and keys are, and which provider
//! holds each. A command that names a workspace finds it here.
//!
//! Layout, under the data folder (`$SKIFF_HOME`, or the platform's data folder such as
//! `~/.local/share/skiff`): `workspaces/<name>/workspace.toml` (the record), `client.key` (0600) and
//! `client.crt` (the workspace's client identity), `agent.crt` (the pinned agent certificate), and
//! whatever the provider keeps beside them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use skiff::tls::Identity;

/// Which provider holds a workspace.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The agent runs on this machine against the local Docker engine.
    Local,
    /// The agent runs on an EC2 instance of the user's AWS account (`provider::aws`).
    Aws,
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::Local => "local",
            Self::Aws => "aws",
        })
    }
}

/// The record of one workspace.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceRecord {
    /// The workspace's name.
    pub name: String,
    /// Which provider holds it.
    pub provider: ProviderKind,
    /// The workspace folder on this machine.
    pub local_folder: PathBuf,
    /// Its devcontainer.json.
    pub config_file: PathBuf,
    /// The idle timeout the agent was configured with (`"30m"`, `"off"`).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: String,
    /// Where an AWS workspace lives; absent for other providers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsPlacement>,
    /// Whether a command that connects (`exec`, `ssh`, `proxy`…) starts the workspace when it is stopped
    /// (`skiff config NAME auto-start=off` turns it off; `--no-start` for one command).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub auto_start: bool,
    /// Whether sessions answer git's credential requests from the dev container (`skiff config NAME
    /// git-credentials=off` turns it off; `--no-git-credentials` for one session).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub git_credentials: bool,
    /// The dotfiles repository `up --dotfiles` last named, installed in each new dev container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dotfiles: Option<String>,
}

fn yes() -> bool {
    true
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_yes(value: &bool) -> bool {
    *value
}

/// The AWS side of a workspace's record. AWS's tags are the truth; this remembers where to look.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsPlacement {
    /// The region of the instance.
    pub region: String,
    /// The instance, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// The `skiff:owner` tag (an `aws:userid`): the caller's own, or another person's for an enrolled workspace.
    pub owner: String,
    /// The AWS profile used, if one was named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Where the workspace's files are on the instance, once `up` sent them: later `up`s reuse them (work done
    /// on the instance stays) and `skiff sync` sends changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_folder: Option<String>,
}

fn default_idle_timeout() -> String {
    "30m".into()
}

/// A failure of the workspace record.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    /// No workspace has that name.
    #[error("no workspace named {name}; {}", known_list(.known))]
    Unknown { name: String, known: Vec<String> },
    /// The name is taken by another folder.
    #[error(
        "workspace {name} already exists for {existing}; pass --name to give {requested} another name"
    )]
    NameTaken {
        name: String,
        existing: PathBuf,
        requested: PathBuf,
    },
    /// The name cannot be used.
    #[error(
        "{name:?} is not a valid workspace name: use letters, digits, '-', '_' and '.', starting with a letter or digit"
    )]
    BadName { name: String },
    /// Reading or writing the record failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The record is unreadable.
    #[error(
        "workspace record {path} is broken: {message}; remove the folder to forget the workspace"
    )]
    Broken { path: PathBuf, message: String },
    /// Making the workspace's keys failed.
    #[error("making the workspace's client key: {0}")]
    Keys(#[from] skiff::tls::TlsError),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "there are no workspaces yet; create one with `skiff up PATH`".to_owned()
    } else {
        format!(
            "the workspaces are: {} (`skiff list` shows them)",
            known.join(", ")
        )
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WorkspaceError {
    let path = path.to_owned();
    move |source| WorkspaceError::Io {
        action,
        path,
        source,
    }
}

/// The folder of all workspace records.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store under `$SKIFF_HOME`, or the platform's data folder.
    pub fn open_default() -> Result<Self, WorkspaceError> {
        let root = match std::env::var_os("SKIFF_HOME") {
            Some(home) => PathBuf::from(home),
            None => directories::ProjectDirs::from("dev", "skiff", "skiff")
                .map(|dirs| dirs.data_dir().to_owned())
                .ok_or_else(|| WorkspaceError::Io {
                    action: "finding",
                    path: PathBuf::from("the home folder"),
                    source: std::io::Error::other("no home folder; set SKIFF_HOME"),
                })?,
        };
        Ok(Self::at(root))
    }

    /// The store at `root`.
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    /// The skiff home this store lives in (provider settings sit beside the workspaces).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn workspaces_dir(&self) -> PathBuf {
        self.root.join("workspaces")
    }

    /// The folder a workspace named `name` has (or would have) in the store.
    pub fn folder_for(&self, name: &str) -> PathBuf {
        self.workspaces_dir().join(name)
    }

    /// The names of every workspace, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.workspaces_dir())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|entry| entry.path().join("workspace.toml").is_file())
            .filter_map(|entry| entry.file_name().into_string().ok())
            // A workspace being made (`.NAME.partial-…`) is not one yet.
            .filter(|name| valid_name(name))
            .collect();
        names.sort();
        names
    }

    /// Every workspace's record, sorted by name.
    pub fn all(&self) -> Result<Vec<Workspace>, WorkspaceError> {
        self.names().iter().map(|name| self.get(name)).collect()
    }

    /// The workspace called `name`, or an error that lists the ones that exist.
    pub fn get(&self, name: &str) -> Result<Workspace, WorkspaceError> {
        let folder = self.workspaces_dir().join(name);
        let path = folder.join("workspace.toml");
        if !valid_name(name) || !path.is_file() {
            return Err(WorkspaceError::Unknown {
                name: name.to_owned(),
                known: self.names(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(io_error("reading", &path))?;
        let record: WorkspaceRecord =
            toml::from_str(&text).map_err(|error| WorkspaceError::Broken {
                path: path.clone(),
                message: error.to_string().trim().replace('\n', " "),
            })?;
        Ok(Workspace { folder, record })
    }

    /// The workspace whose folder is `local_folder`, if there is one.
    pub fn find_by_folder(&self, local_folder: &Path) -> Result<Option<Workspace>, WorkspaceError> {
        Ok(self
            .all()?
            .into_iter()
            .find(|workspace| workspace.record.local_folder == local_folder))
    }

    /// Records a new workspace and makes its client key pair.
    pub fn create(&self, record: WorkspaceRecord) -> Result<Workspace, WorkspaceError> {
        if !valid_name(&record.name) {
            return Err(WorkspaceError::BadName { name: record.name });
        }
        if let Ok(existing) = self.get(&record.name) {
            return Err(WorkspaceError::NameTaken {
                name: record.name,
                existing: existing.record.local_folder,
                requested: record.local_folder,
            });
        }
        // Made whole in a folder of its own, then renamed into place in one step: of two commands creating the
        // same workspace at once one wins, and nobody ever sees one's key beside the other's certificate.
        let workspaces = self.workspaces_dir();
        std::fs::create_dir_all(&workspaces).map_err(io_error("creating", &workspaces))?;
        let partial = tempfile::Builder::new()
            .prefix(&format!(".{}.partial-", record.name))
            .tempdir_in(&workspaces)
            .map_err(io_error("creating", &workspaces))?;
        std::fs::set_permissions(partial.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(io_error("protecting", partial.path()))?;
        let staged = Workspace {
            folder: partial.path().to_owned(),
            record,
        };
        let identity = Identity::generate("skiff-client")?;
        write_file(
            &staged.folder.join("client.key"),
            identity.private_key_pem.as_bytes(),
            0o600,
        )?;
        write_file(
            &staged.folder.join("client.crt"),
            identity.certificate_pem.as_bytes(),
            0o644,
        )?;
        staged.save()?;
        let folder = self.folder_for(&staged.record.name);
        match std::fs::rename(partial.path(), &folder) {
            Ok(()) => {
                // Renamed away: nothing is left for the temporary folder to remove.
                let _ = partial.keep();
                Ok(Workspace {
                    folder,
                    record: staged.record,
                })
            }
            Err(_) if folder.join("workspace.toml").is_file() => {
                let existing = self.get(&staged.record.name)?;
                Err(WorkspaceError::NameTaken {
                    name: staged.record.name,
                    existing: existing.record.local_folder,
                    requested: staged.record.local_folder,
                })
            }
            Err(error) => Err(io_error("creating", &folder)(error)),
        }
    }
}

/// Whether `name` can name a workspace (it becomes a folder and a Docker label).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|character: char| character.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character))
}

/// A name for a workspace made from a folder's name.
pub fn name_from_folder(folder: &Path) -> String {
    let base: String = folder
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || "-_.".contains(character) {
                character
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = base.trim_start_matches(|character: char| !character.is_ascii_alphanumeric());
    let mut name: String = trimmed.chars().take(63).collect();
    if name.is_empty() {
        name = "workspace".into();
    }
    name
}

/// One workspace's record and folder.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The workspace's folder in the store.
    pub folder: PathBuf,
    /// Its record.
    pub record: WorkspaceRecord,
}

impl Workspace {
    /// The workspace's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// Writes the record.
    pub fn save(&self) -> Result<(), WorkspaceError> {
        let text = toml::to_string(&self.record).expect("a workspace record always serialises");
        write_file(&self.folder.join("workspace.toml"), text.as_bytes(), 0o600)
    }

    /// The client identity of this workspace.
    pub fn identity(&self) -> Result<Identity, WorkspaceError> {
        let key = self.folder.join("client.key");
        let certificate = self.folder.join("client.crt");
        Ok(Identity {
            private_key_pem: std::fs::read_to_string(&key).map_err(io_error("reading", &key))?,
            certificate_pem: std::fs::read_to_string(&certificate)
                .map_err(io_error("reading", &certificate))?,
        })
    }

    /// Forgets the workspace: removes its folder with keys and state.
    pub fn remove(self) -> Result<(), WorkspaceError> {
        std::fs::remove_dir_all(&self.folder).map_err(io_error("removing", &self.folder))
    }
}

/// Writes a file with the given permissions, replacing it whole.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), WorkspaceError> {
    skiff::atomic::write(path, contents, mode).map_err(io_error("writing", path))
}

#[cfg(test)]
mod tests;

/// A local port this process forwards to a workspace, marked by a file `forwards/PID-PORT` in the workspace's folder
/// while the mark lives, so `skiff ui` can link to it. Dropping the mark removes the file; a process that died
/// leaves one that [`forwarded_ports`] sees through and removes.
#[derive(Debug)]
pub struct ForwardMark {
    path: PathBuf,
}

impl ForwardMark {
    /// Marks `port` as forwarded to the workspace whose folder is `folder`; `None` when the mark cannot be written
    /// (it only feeds a display).
    pub fn new(folder: &Path, port: u16) -> Option<Self> {
        let marks = folder.join("forwards");
        std::fs::create_dir_all(&marks).ok()?;
        let path = marks.join(format!("{}-{port}", std::process::id()));
        std::fs::write(&path, b"").ok()?;
        Some(Self { path })
    }
}

impl Drop for ForwardMark {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The local ports forwarded to the workspace called `name` right now, by processes that still run, in order.
pub fn forwarded_ports(name: &str) -> Vec<u16> {
    let Ok(workspace) = Store::open_default().and_then(|store| store.get(name)) else {
        return Vec::new();
    };
    let marks = workspace.folder.join("forwards");
    let Ok(entries) = std::fs::read_dir(&marks) else {
        return Vec::new();
    };
    let mut ports = std::collections::BTreeSet::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some((pid, port)) = file_name
            .to_str()
            .and_then(|text| text.split_once('-'))
            .and_then(|(pid, port)| Some((pid.parse::<i32>().ok()?, port.parse::<u16>().ok()?)))
        else {
            continue;
        };
        let alive = matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Ok(()) | Err(nix::errno::Errno::EPERM)
        );
        if alive && pid > 0 {
            ports.insert(port);
        } else {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    ports.into_iter().collect()
}
