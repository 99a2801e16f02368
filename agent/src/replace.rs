//! Replacing the agent's own executable (`ReplaceAgent`): how an upgraded client upgrades an older agent.
//!
//! The new executable is written beside the running one, checked (its announced size and SHA-256, and an ELF
//! executable of the same class and machine as the running one, so a wrong-architecture file cannot take the
//! instance's agent away) and renamed over it in one step: a failed or partial transfer leaves the running agent's
//! file as it was. The agent then answers, stops serving and `exec`s the new file in its own process (`main`), so
//! whatever supervises it (systemd, or user-data's fallback without it) sees the same process go on.
//!
//! A replacement announced as older than the running agent is refused before any byte is written, unless the
//! request says `allow_downgrade` (which the client sets only when the person asks): an older build may lack
//! fixes the running one has. The version compared is the one the request announces; a client that can replace
//! the agent is trusted with what it sends, so the check stops a stale client's mistake, not a lie.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use futures::{Stream, StreamExt};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

/// The largest executable accepted.
pub const MAX_SIZE: u64 = 512 * 1024 * 1024;

/// What a `ReplaceAgent` call announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// The size in bytes.
    pub size: u64,
    /// The SHA-256, lower-case hex.
    pub sha256: String,
    /// The version the new executable reports.
    pub version: String,
    /// Whether a version older than the running agent's is accepted.
    pub allow_downgrade: bool,
}

/// Why a replacement was refused; the running agent stays in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// What was sent is not an executable this agent can become.
    #[error("ReplaceAgent: {0}; the running agent stays")]
    Invalid(String),
    /// The replacement is older than the running agent and a downgrade was not asked for.
    #[error(
        "ReplaceAgent: {offered} is older than the running skiffd {running} (or not a version); the running agent stays; ask for a downgrade explicitly to install it"
    )]
    Downgrade { offered: String, running: String },
    /// The transfer broke off.
    #[error("ReplaceAgent: the transfer broke off ({0}); the running agent stays")]
    Transfer(String),
    /// Writing or renaming the file failed.
    #[error("ReplaceAgent: writing {path}: {source}; the running agent stays")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The SHA-256 of the file at `path`, lower-case hex.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The ELF identity that must match: magic, class, byte order (bytes 0–5) and machine (bytes 18–19).
fn elf_identity(header: &[u8]) -> Option<([u8; 6], [u8; 2])> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    Some((
        header[..6].try_into().expect("six bytes"),
        header[18..20].try_into().expect("two bytes"),
    ))
}

/// Refuses `start` when it announces a version older than `running` (or one that is no version) and does not
/// allow a downgrade.
pub fn check_version(start: &Start, running: &str) -> Result<(), ReplaceError> {
    if start.allow_downgrade {
        return Ok(());
    }
    let parse = |text: &str| semver::Version::parse(text.trim().trim_start_matches('v')).ok();
    match (parse(&start.version), parse(running)) {
        (Some(offered), Some(running)) if offered >= running => Ok(()),
        // An agent that cannot read its own version has nothing to protect.
        (Some(_), None) => Ok(()),
        _ => Err(ReplaceError::Downgrade {
            offered: format!("{:?}", start.version),
            running: running.to_owned(),
        }),
    }
}

/// Receives the executable announced by `start` from `chunks`, checks it against `start`, against `target`
/// (the running executable) and against `running_version` (see [`check_version`]), and renames it over `target`.
pub async fn receive<E: std::fmt::Display>(
    target: &Path,
    running_version: &str,
    start: &Start,
    mut chunks: impl Stream<Item = Result<Vec<u8>, E>> + Unpin,
) -> Result<(), ReplaceError> {
    check_version(start, running_version)?;
    if start.size == 0 || start.size > MAX_SIZE {
        return Err(ReplaceError::Invalid(format!(
            "a size of {} bytes is not that of an agent (at most {MAX_SIZE})",
            start.size
        )));
    }
    let wanted = start.sha256.to_ascii_lowercase();
    if wanted.len() != 64
        || !wanted
            .chars()
            .all(|character| character.is_ascii_hexdigit())
    {
        return Err(ReplaceError::Invalid(format!(
            "sha256 {:?} is not 64 hex digits",
            start.sha256
        )));
    }
    let running = {
        let mut header = [0u8; 20];
        std::fs::File::open(target)
            .and_then(|mut file| file.read_exact(&mut header))
            .map_err(|source| ReplaceError::Io {
                path: target.to_owned(),
                source,
            })?;
        elf_identity(&header)
    };
    let folder = target.parent().unwrap_or(Path::new("/"));
    let partial = folder.join(format!(".skiffd.new-{}", std::process::id()));
    let io_error = |source| ReplaceError::Io {
        path: partial.clone(),
        source,
    };
    let outcome = async {
        let mut file = tokio::fs::File::create(&partial).await.map_err(io_error)?;
        let mut hasher = sha2::Sha256::new();
        let mut header = Vec::with_capacity(20);
        let mut received = 0u64;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| ReplaceError::Transfer(error.to_string()))?;
            received += chunk.len() as u64;
            if received > start.size {
                return Err(ReplaceError::Invalid(format!(
                    "more than the announced {} bytes arrived",
                    start.size
                )));
            }
            if header.len() < 20 {
                let wanted = (20 - header.len()).min(chunk.len());
                header.extend_from_slice(&chunk[..wanted]);
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io_error)?;
        }
        if received != start.size {
            return Err(ReplaceError::Transfer(format!(
                "{received} of the announced {} bytes arrived",
                start.size
            )));
        }
        let actual = hex(&hasher.finalize());
        if actual != wanted {
            return Err(ReplaceError::Invalid(format!(
                "what arrived has SHA-256 {actual}, not the announced {wanted}"
            )));
        }
        match (elf_identity(&header), running) {
            (Some(new), Some(old)) if new == old => {}
            (Some((_, machine)), Some((_, own))) => {
                return Err(ReplaceError::Invalid(format!(
                    "the executable is for ELF machine {}, but this agent runs on {}; send the skiffd built for {}",
                    u16::from_le_bytes(machine),
                    u16::from_le_bytes(own),
                    std::env::consts::ARCH
                )));
            }
            (None, _) => {
                return Err(ReplaceError::Invalid(
                    "what arrived is not an ELF executable".into(),
                ));
            }
            (Some(_), None) => {}
        }
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
            .map_err(io_error)?;
        std::fs::rename(&partial, target).map_err(|source| ReplaceError::Io {
            path: target.to_owned(),
            source,
        })?;
        Ok(())
    }
    .await;
    if outcome.is_err() {
        let _ = std::fs::remove_file(&partial);
    } else {
        tracing::info!(
            path = %target.display(),
            version = %start.version,
            sha256 = %wanted,
            "replaced the agent's executable; restarting into it"
        );
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version the tests' running agent has.
    const RUNNING: &str = "1.4.0";

    fn start_for(bytes: &[u8]) -> Start {
        Start {
            size: bytes.len() as u64,
            sha256: hex(&sha2::Sha256::digest(bytes)),
            version: "9.9.9".into(),
            allow_downgrade: false,
        }
    }

    fn chunks(bytes: &[u8]) -> impl Stream<Item = Result<Vec<u8>, String>> + Unpin {
        futures::stream::iter(
            bytes
                .chunks(1000)
                .map(|chunk| Ok(chunk.to_vec()))
                .collect::<Vec<_>>(),
        )
    }

    /// A running "agent" (a copy of this test's own executable) in a fresh folder.
    fn running() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
        let folder = tempfile::tempdir().unwrap();
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let target = folder.path().join("skiffd");
        std::fs::write(&target, &own).unwrap();
        (folder, target, own)
    }

    #[tokio::test]
    async fn a_checked_executable_replaces_the_running_one() {
        let (folder, target, own) = running();
        let mut newer = own.clone();
        newer.extend_from_slice(b"a newer build");
        receive(&target, RUNNING, &start_for(&newer), chunks(&newer))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), newer);
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(sha256_of(&target).unwrap(), start_for(&newer).sha256);
        assert_eq!(
            std::fs::read_dir(folder.path()).unwrap().count(),
            1,
            "nothing is left beside it"
        );
    }

    #[tokio::test]
    async fn anything_wrong_leaves_the_running_agent_as_it_was() {
        let (folder, target, own) = running();
        let mut newer = own.clone();
        newer.extend_from_slice(b"newer");

        // A wrong hash.
        let mut wrong = start_for(&newer);
        wrong.sha256 = "0".repeat(64);
        let error = receive(&target, RUNNING, &wrong, chunks(&newer))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not the announced"), "{error}");

        // A transfer cut short.
        let error = receive(
            &target,
            RUNNING,
            &start_for(&newer),
            chunks(&newer[..newer.len() / 2]),
        )
        .await
        .unwrap_err();
        assert!(error.to_string().contains("bytes arrived"), "{error}");

        // A broken stream.
        let broken =
            futures::stream::iter(vec![Ok(newer[..100].to_vec()), Err("reset".to_owned())]);
        let error = receive(&target, RUNNING, &start_for(&newer), broken)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("reset"), "{error}");

        // Another machine's executable.
        let mut foreign = newer.clone();
        let other: u16 = if cfg!(target_arch = "aarch64") {
            62
        } else {
            183
        };
        foreign[18..20].copy_from_slice(&other.to_le_bytes());
        let error = receive(&target, RUNNING, &start_for(&foreign), chunks(&foreign))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("ELF machine"), "{error}");

        // Not an executable at all.
        let script = b"#!/bin/sh\necho hi\n".to_vec();
        let error = receive(&target, RUNNING, &start_for(&script), chunks(&script))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("not an ELF"), "{error}");

        assert_eq!(
            std::fs::read(&target).unwrap(),
            own,
            "the running agent stays"
        );
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1);
    }

    /// Attack (issue 13): a replacement announced as older than the running agent (a stale client, or one
    /// rolling the agent back to a build without a fix) is refused before anything is written, unless the
    /// request explicitly allows a downgrade.
    #[tokio::test]
    async fn an_older_build_is_refused_unless_a_downgrade_is_asked_for() {
        let (folder, target, own) = running();
        let mut older = own.clone();
        older.extend_from_slice(b"an older build");
        for version in ["1.3.9", "0.1.0", "1.4.0-rc.1", "", "not a version"] {
            let mut start = start_for(&older);
            start.version = version.into();
            let error = receive(&target, RUNNING, &start, chunks(&older))
                .await
                .unwrap_err();
            assert!(
                matches!(error, ReplaceError::Downgrade { .. }),
                "{version:?}: {error}"
            );
            assert!(
                error
                    .to_string()
                    .contains("older than the running skiffd 1.4.0"),
                "{error}"
            );
        }
        assert_eq!(
            std::fs::read(&target).unwrap(),
            own,
            "the running agent stays"
        );
        assert_eq!(std::fs::read_dir(folder.path()).unwrap().count(), 1);

        // The same version (another build of it) and newer ones are accepted.
        for version in ["1.4.0", "v1.4.1", "2.0.0"] {
            let mut start = start_for(&older);
            start.version = version.into();
            check_version(&start, RUNNING).unwrap();
        }
        // An explicit downgrade is.
        let mut start = start_for(&older);
        start.version = "1.3.9".into();
        start.allow_downgrade = true;
        receive(&target, RUNNING, &start, chunks(&older))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), older);
    }
}
