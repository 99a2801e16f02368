//! The agent's state folder: its TLS identity, the address it listens on, the client certificates it
//! trusts, and its record of the workspace's dev container. Everything here survives an agent restart.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use skiff::tls::Identity;

/// The agent's record of the workspace, written after every successful `Up`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkspaceRecord {
    /// The dev container's id.
    pub container_id: String,
    /// The image the container runs.
    pub image: String,
    /// The image the agent built for the workspace, if it built one (removed by `Delete`).
    pub built_image: Option<String>,
    /// Where the workspace is mounted in the container.
    pub workspace_folder: String,
    /// The user commands run as by default.
    pub remote_user: String,
    /// `remoteEnv` from the configuration; `None` values unset a variable.
    pub remote_env: std::collections::BTreeMap<String, Option<String>>,
    /// `shutdownAction` from the configuration, if given.
    pub shutdown_action: Option<String>,
}

/// Settings changed at run time (`skiff config`), which override the configuration file.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// The idle timeout in seconds (0 = off), if changed.
    pub idle_timeout_seconds: Option<u64>,
    /// The CPU threshold in percent (0 = off), if changed.
    pub busy_cpu_percent: Option<f64>,
}

/// The state folder.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (and creates, readable by its owner only) the state folder.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))?;
        std::fs::create_dir_all(root.join("trusted-clients"))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The folder itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The agent's key pair, made at first start and kept (the key readable by its owner only).
    pub fn identity(&self) -> std::io::Result<Identity> {
        let key_path = self.root.join("agent.key");
        let certificate_path = self.root.join("agent.crt");
        if key_path.exists() && certificate_path.exists() {
            return Ok(Identity {
                certificate_pem: std::fs::read_to_string(&certificate_path)?,
                private_key_pem: std::fs::read_to_string(&key_path)?,
            });
        }
        let identity = Identity::generate(skiff::tls::AGENT_SERVER_NAME)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        skiff::atomic::write(&key_path, identity.private_key_pem.as_bytes(), 0o600)?;
        skiff::atomic::write(
            &certificate_path,
            identity.certificate_pem.as_bytes(),
            0o644,
        )?;
        tracing::info!(path = %certificate_path.display(), "made the agent's key pair");
        Ok(identity)
    }

    /// Where the agent's certificate is; the local provider's client pins it from here.
    pub fn certificate_path(&self) -> PathBuf {
        self.root.join("agent.crt")
    }

    /// Records the address the agent listens on, for a client on the same machine.
    pub fn write_listen_address(&self, address: std::net::SocketAddr) -> std::io::Result<()> {
        skiff::atomic::write(
            &self.listen_address_path(),
            address.to_string().as_bytes(),
            0o644,
        )
    }

    /// Where the listen address is recorded.
    pub fn listen_address_path(&self) -> PathBuf {
        self.root.join("listen-address")
    }

    /// Removes the listen address record (on a clean exit).
    pub fn clear_listen_address(&self) {
        let _ = std::fs::remove_file(self.listen_address_path());
    }

    /// The folder of extra trusted client certificates (`*.pem`).
    pub fn trusted_clients_dir(&self) -> PathBuf {
        self.root.join("trusted-clients")
    }

    /// Where uploaded workspace files are unpacked.
    pub fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }

    /// Where the last activity is kept.
    pub fn activity_path(&self) -> PathBuf {
        self.root.join("activity.json")
    }

    /// Settings changed at run time, if any.
    pub fn load_settings(&self) -> Settings {
        std::fs::read_to_string(self.root.join("settings.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Keeps settings changed at run time.
    pub fn save_settings(&self, settings: &Settings) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
        skiff::atomic::write(&self.root.join("settings.json"), &text, 0o600)
    }

    /// The workspace record, if `Up` has written one.
    pub fn load_record(&self) -> Option<WorkspaceRecord> {
        let text = std::fs::read_to_string(self.root.join("workspace.json")).ok()?;
        match serde_json::from_str(&text) {
            Ok(record) => Some(record),
            Err(error) => {
                tracing::warn!("ignoring unreadable workspace record: {error}");
                None
            }
        }
    }

    /// Writes the workspace record.
    pub fn save_record(&self, record: &WorkspaceRecord) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        skiff::atomic::write(&self.root.join("workspace.json"), &text, 0o600)
    }

    /// Removes the workspace record.
    pub fn remove_record(&self) -> std::io::Result<()> {
        match std::fs::remove_file(self.root.join("workspace.json")) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}
