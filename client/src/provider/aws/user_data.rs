//! The instance's user-data: `user_data.sh` with this workspace's values filled in.
//!
//! The script installs Docker if missing, makes sure the SSM agent runs, installs `skiffd` (downloaded from
//! `agent_url`, or pushed by the client to a one-shot receiver on 127.0.0.1) after checking its SHA-256, writes
//! `/etc/skiffd/skiffd.toml` and starts the systemd unit (or the agent directly where there is no systemd).
//! Every value is checked to be safe inside single quotes, and the result must fit EC2's 16 KB limit.
//! Nothing secret goes in: the client certificate is public, the private key never leaves the laptop.

use super::{AGENT_PORT, RECEIVER_PORT};

/// The template, with `@NAME@` placeholders.
pub const TEMPLATE: &str = include_str!("user_data.sh");

/// EC2's limit on user-data, before base64.
pub const MAX_BYTES: usize = 16 * 1024;

/// How long the receiver waits for a pushed `skiffd`, in seconds.
pub const RECEIVER_TIMEOUT_SECONDS: u32 = 3600;

/// What goes into the script.
#[derive(Debug, Clone)]
pub struct UserDataSpec<'a> {
    pub workspace: &'a str,
    pub idle_timeout: &'a str,
    /// Where to download `skiffd`; `None` makes the script wait for the client's push.
    pub agent_url: Option<&'a str>,
    /// The SHA-256 (hex) `skiffd` must have.
    pub agent_sha256: &'a str,
    /// The workspace's client certificate (PEM).
    pub client_certificate: &'a str,
    /// The account's ECR registry of the region (`up --ecr`), whose logins the agent asks the instance role for.
    pub ecr_registry: Option<&'a str>,
}

/// The ECR registry of `account` in `region`: `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (`.com.cn` in China).
pub fn ecr_registry(account: &str, region: &str) -> anyhow::Result<String> {
    let account_ok =
        account.len() == 12 && account.chars().all(|character| character.is_ascii_digit());
    let region_ok = !region.is_empty()
        && region.len() <= 32
        && region.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-'
        });
    if !account_ok || !region_ok {
        anyhow::bail!(
            "--ecr: account {account:?} and region {region:?} do not name an ECR registry"
        );
    }
    let suffix = if region.starts_with("cn-") { ".cn" } else { "" };
    Ok(format!("{account}.dkr.ecr.{region}.amazonaws.com{suffix}"))
}

/// Renders the script, refusing any value that could break out of its quotes.
pub fn render(spec: &UserDataSpec<'_>) -> anyhow::Result<String> {
    let sha = spec.agent_sha256.trim().to_ascii_lowercase();
    if sha.len() != 64 || !sha.chars().all(|character| character.is_ascii_hexdigit()) {
        anyhow::bail!(
            "agent SHA-256 {:?} is not 64 hexadecimal digits; pass --agent-sha256 with the output of `sha256sum skiffd`",
            spec.agent_sha256
        );
    }
    if !crate::workspace::valid_name(spec.workspace) {
        anyhow::bail!("{:?} is not a valid workspace name", spec.workspace);
    }
    let timeout_ok = spec
        .idle_timeout
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || character == ' ');
    if !timeout_ok || spec.idle_timeout.is_empty() {
        anyhow::bail!(
            "idle timeout {:?}: write a duration such as 30m or 2h, or off",
            spec.idle_timeout
        );
    }
    let url = spec.agent_url.unwrap_or_default();
    if let Some(url) = spec.agent_url {
        check_agent_url(url)?;
    }
    let ecr = spec.ecr_registry.unwrap_or_default();
    if !ecr
        .chars()
        .all(|character| character.is_ascii_alphanumeric() || ".-".contains(character))
    {
        anyhow::bail!("ECR registry {ecr:?} is not a registry host");
    }
    let certificate = spec.client_certificate.trim();
    let certificate_ok = certificate.starts_with("-----BEGIN CERTIFICATE-----")
        && certificate.ends_with("-----END CERTIFICATE-----")
        && certificate
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "+/=- \n\r".contains(character));
    if !certificate_ok {
        anyhow::bail!(
            "the workspace's client certificate is not one PEM certificate; delete the workspace and make it again"
        );
    }
    let script = TEMPLATE
        .replace("@WORKSPACE@", spec.workspace)
        .replace("@IDLE_TIMEOUT@", spec.idle_timeout)
        .replace("@AGENT_LISTEN@", &format!("127.0.0.1:{AGENT_PORT}"))
        .replace("@AGENT_URL@", url)
        .replace("@AGENT_SHA256@", &sha)
        .replace("@RECEIVER_PORT@", &RECEIVER_PORT.to_string())
        .replace("@RECEIVER_TIMEOUT@", &RECEIVER_TIMEOUT_SECONDS.to_string())
        .replace("@ECR_REGISTRY@", ecr)
        .replace("@CLIENT_CERTIFICATE@", &certificate.replace('\r', ""));
    if script.len() > MAX_BYTES {
        anyhow::bail!(
            "the user-data is {} bytes, over EC2's limit of {MAX_BYTES}; this is a bug in skiff",
            script.len()
        );
    }
    Ok(script)
}

/// An agent URL must be HTTPS; plain HTTP only to a loopback address (tests, and a local mirror behind a tunnel).
pub fn check_agent_url(url: &str) -> anyhow::Result<()> {
    let safe = !url.is_empty()
        && url
            .chars()
            .all(|character| character.is_ascii_graphic() && !"'\"\\`$".contains(character));
    if !safe {
        anyhow::bail!(
            "--agent-url {url:?}: the URL has characters skiff does not put in a shell script (quotes, $, `, \\ or spaces)"
        );
    }
    if url.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        if host == "127.0.0.1" || host == "localhost" {
            return Ok(());
        }
    }
    anyhow::bail!(
        "--agent-url {url:?}: use an https:// URL, so the download cannot be read or changed on the way"
    )
}

/// Where the release of this client's version publishes `skiffd` for an architecture (`x86_64`, `aarch64`).
pub fn release_url(rust_architecture: &str) -> String {
    format!(
        "https://github.com/skiff-dev/skiff/releases/download/v{}/skiffd-{rust_architecture}-unknown-linux-musl",
        env!("CARGO_PKG_VERSION")
    )
}

/// The SHA-256 of the released `skiffd` for an architecture, when this client was built for a release
/// (`SKIFF_RELEASE_SKIFFD_SHA256_X86_64` and `…_AARCH64` set at build time); `None` in development builds.
pub fn release_sha256(rust_architecture: &str) -> Option<&'static str> {
    match rust_architecture {
        "x86_64" => option_env!("SKIFF_RELEASE_SKIFFD_SHA256_X86_64"),
        "aarch64" => option_env!("SKIFF_RELEASE_SKIFFD_SHA256_AARCH64"),
        _ => None,
    }
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)
        .map_err(|error| anyhow::anyhow!("reading skiffd at {}: {error}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|error| anyhow::anyhow!("reading skiffd at {}: {error}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
