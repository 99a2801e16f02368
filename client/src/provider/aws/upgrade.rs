//! An upgraded client upgrades an older agent: once `up` reaches an instance's agent, its version and the SHA-256
//! of its executable (`Version`) are compared with this client's version and the `skiffd` this client would push
//! (`--agent-binary`), and the agent is replaced in place (`ReplaceAgent`) when it is older, or when the user
//! named another build of the same version, or (only with `--allow-agent-downgrade`) when it is newer and the
//! user named the older build to run. The agent checks what it receives and restarts into it; a refused
//! or failed replacement leaves the running agent, and `up` goes on with it after saying why.

use std::path::Path;
use std::time::Duration;

use sha2::Digest;
use skiff::api::{self, capability};

use crate::agent_client::AgentClient;
use crate::cli::TunnelChoice;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// How long the replaced agent has to answer again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(60);

/// What to do about the running agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It is the one wanted.
    Keep,
    /// Replace it with the local binary, for this reason.
    Replace(String),
    /// Leave it, and tell the user this.
    Warn(String),
}

/// The `skiffd` this client can offer the agent (`L`: its path, or its SHA-256 once read), and what the person
/// allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offer<L> {
    /// The binary, when the client has one for the instance.
    pub local: Option<L>,
    /// Whether the person named that binary (`--agent-binary`).
    pub explicit: bool,
    /// Whether the person allowed it to replace a newer agent (`--allow-agent-downgrade`).
    pub allow_downgrade: bool,
}

/// A version's numbers; a version that does not parse compares as unknown.
fn version(text: &str) -> Option<semver::Version> {
    semver::Version::parse(text.trim().trim_start_matches('v')).ok()
}

/// Decides what to do about `agent`, given this client's version and what it can `offer`.
pub fn plan(client_version: &str, agent: &api::VersionInfo, offer: Offer<&str>) -> Plan {
    let Offer {
        local,
        explicit,
        allow_downgrade,
    } = offer;
    if local.is_some() && agent.binary_sha256.as_deref() == local {
        return Plan::Keep;
    }
    let (Some(ours), Some(theirs)) = (version(client_version), version(&agent.agent_version))
    else {
        return Plan::Warn(format!(
            "cannot compare the agent's version {:?} with this client's {client_version:?}; it is left as it is",
            agent.agent_version
        ));
    };
    let replaceable = agent
        .capabilities
        .iter()
        .any(|name| name == capability::REPLACE_AGENT);
    let reason = match theirs.cmp(&ours) {
        std::cmp::Ordering::Less => {
            format!("skiffd {theirs} on the instance is older than this client ({ours})")
        }
        std::cmp::Ordering::Equal if explicit => {
            format!("--agent-binary is another build of skiffd {theirs} than the one running")
        }
        std::cmp::Ordering::Equal => return Plan::Keep,
        std::cmp::Ordering::Greater if explicit && allow_downgrade => {
            format!(
                "skiffd {theirs} on the instance is newer than this client ({ours}), and --allow-agent-downgrade asks for the named build"
            )
        }
        std::cmp::Ordering::Greater => {
            return Plan::Warn(format!(
                "skiffd {theirs} on the instance is newer than this client ({ours}); upgrade skiff"
            ));
        }
    };
    if local.is_none() {
        return Plan::Warn(format!(
            "{reason}; pass --agent-binary PATH (a static skiffd for {}, from `cargo xtask dist`) to upgrade it",
            agent.arch
        ));
    }
    if !replaceable {
        return Plan::Warn(format!(
            "{reason}, and too old to be replaced in place; `skiff delete` and `skiff up` make a new instance with this version"
        ));
    }
    Plan::Replace(reason)
}

/// Brings the agent of `workspace` up to date if it needs it (see [`plan`]); returns a client of the agent that
/// runs afterwards.
pub async fn ensure_current(
    workspace: &Workspace,
    mut client: AgentClient,
    offer: Offer<&Path>,
    tunnel: TunnelChoice,
    progress: &Progress,
) -> anyhow::Result<AgentClient> {
    let agent = client.version().await?;
    let local = offer.local;
    let executable = match local {
        Some(path) => Some(bytes::Bytes::from(tokio::fs::read(path).await.map_err(
            |error| anyhow::anyhow!("reading skiffd {}: {error}", path.display()),
        )?)),
        None => None,
    };
    let sha256 = executable.as_ref().map(|bytes| {
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    });
    let reason = match plan(
        env!("CARGO_PKG_VERSION"),
        &agent,
        Offer {
            local: sha256.as_deref(),
            explicit: offer.explicit,
            allow_downgrade: offer.allow_downgrade,
        },
    ) {
        Plan::Keep => return Ok(client),
        Plan::Warn(message) => {
            progress.warn(&message);
            return Ok(client);
        }
        Plan::Replace(reason) => reason,
    };
    let (Some(executable), Some(sha256), Some(path)) = (executable, sha256, local) else {
        return Ok(client);
    };
    progress.warn(&format!(
        "{reason}: replacing it with {}; commands and forwards running through it end",
        path.display()
    ));
    // A downgrade is asked of the agent only when the person allowed one.
    if let Err(error) = client
        .replace_agent(executable, &sha256, offer.allow_downgrade)
        .await
    {
        progress.warn(&format!(
            "replacing skiffd on the instance failed, so the running one stays: {error}"
        ));
        return Ok(client);
    }
    drop(client);
    // The old agent answers until its shutdown completes: wait for the one that runs the new executable.
    let deadline = std::time::Instant::now() + RESTART_TIMEOUT;
    let (client, now) = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut client = crate::provider::aws::connect::wait_for_agent(workspace, tunnel, left)
            .await
            .map_err(|error| error.context("the replaced agent did not come back"))?;
        // The old agent may answer `wait_for_agent` and go away before this call: that is not yet the new one.
        let now = match client.version().await {
            Ok(now) => now,
            Err(error) if std::time::Instant::now() < deadline => {
                tracing::debug!(error = %error, "the agent went away while it restarts");
                drop(client);
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        if now.binary_sha256.as_deref() == Some(sha256.as_str()) {
            break (client, now);
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "{} s after replacing skiffd the agent still reports executable {} instead of {sha256}; see `skiff logs {}`",
                RESTART_TIMEOUT.as_secs(),
                now.binary_sha256.as_deref().unwrap_or("(unknown)"),
                workspace.name()
            );
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    progress.line(&format!(
        "replaced skiffd on the instance: {} ({}) -> {} ({})",
        agent.agent_version,
        short(agent.binary_sha256.as_deref().unwrap_or("?")),
        now.agent_version,
        short(&sha256)
    ));
    Ok(client)
}

fn short(sha256: &str) -> &str {
    &sha256[..sha256.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(version: &str, sha: &str, replaceable: bool) -> api::VersionInfo {
        api::VersionInfo {
            agent_version: version.into(),
            protocol_version: api::PROTOCOL_VERSION,
            capabilities: if replaceable {
                vec![capability::REPLACE_AGENT.into()]
            } else {
                Vec::new()
            },
            os: "linux".into(),
            arch: "x86_64".into(),
            docker_version: None,
            binary_sha256: Some(sha.into()),
        }
    }

    fn offer(local: Option<&str>, explicit: bool) -> Offer<&str> {
        Offer {
            local,
            explicit,
            allow_downgrade: false,
        }
    }

    /// A newer agent is replaced by an older named build only when the person allows a downgrade.
    #[test]
    fn a_newer_agent_is_downgraded_only_when_allowed() {
        let allowed = Offer {
            allow_downgrade: true,
            ..offer(Some("bb"), true)
        };
        assert!(matches!(
            plan("0.2.0", &agent("0.3.0", "aa", true), allowed),
            Plan::Replace(reason) if reason.contains("--allow-agent-downgrade")
        ));
        assert!(matches!(
            plan("0.2.0", &agent("0.3.0", "aa", true), offer(Some("bb"), true)),
            Plan::Warn(message) if message.contains("newer than this client")
        ));
    }

    #[test]
    fn an_older_agent_is_replaced_when_the_client_has_a_binary() {
        assert!(matches!(
            plan("0.2.0", &agent("0.1.9", "aa", true), offer(Some("bb"), false)),
            Plan::Replace(reason) if reason.contains("0.1.9") && reason.contains("older")
        ));
        // Without one the user is told how.
        assert!(matches!(
            plan("0.2.0", &agent("0.1.9", "aa", true), offer(None, false)),
            Plan::Warn(message) if message.contains("--agent-binary") && message.contains("x86_64")
        ));
        // An agent from before ReplaceAgent cannot be replaced in place.
        assert!(matches!(
            plan("0.2.0", &agent("0.1.0", "aa", false), offer(Some("bb"), true)),
            Plan::Warn(message) if message.contains("too old to be replaced")
        ));
    }

    #[test]
    fn the_same_build_is_kept_and_a_newer_agent_is_left_alone() {
        assert_eq!(
            plan(
                "0.2.0",
                &agent("0.1.0", "aa", true),
                offer(Some("aa"), true)
            ),
            Plan::Keep,
            "the binary the client has is already running"
        );
        assert_eq!(
            plan(
                "0.2.0",
                &agent("0.2.0", "aa", true),
                offer(Some("bb"), false)
            ),
            Plan::Keep,
            "the same version, and nobody asked for another build"
        );
        assert!(matches!(
            plan("0.2.0", &agent("0.2.0", "aa", true), offer(Some("bb"), true)),
            Plan::Replace(reason) if reason.contains("another build")
        ));
        assert!(matches!(
            plan("0.2.0", &agent("0.3.0", "aa", true), offer(Some("bb"), true)),
            Plan::Warn(message) if message.contains("newer than this client")
        ));
        assert!(matches!(
            plan("0.2.0", &agent("dev", "aa", true), offer(Some("bb"), true)),
            Plan::Warn(message) if message.contains("cannot compare")
        ));
    }
}
