//! Asking before an untrusted repository's configuration acts on this machine.
//!
//! `skiff up GIT_URL` reads a devcontainer.json that somebody else wrote. Two of its properties act on the laptop:
//! `initializeCommand` runs here, and `${localEnv:VAR}` copies this machine's environment (AWS keys, tokens) into
//! the configuration the agent receives. Before either happens, `up` shows what would run and which variables would
//! be read, and goes on only with `--trust` or a yes typed on a terminal. A yes is remembered for that exact
//! configuration (its SHA-256, in the workspace's folder), so the next `up` of an unchanged repository does not ask
//! again; any change to the file asks again.
//! Everything shown is JSON-escaped, so a value cannot move the cursor or hide text with terminal control codes.

use std::io::{IsTerminal as _, Write as _};
use std::path::Path;

use sha2::{Digest as _, Sha256};
use skiff::devcontainer::{DevContainer, local_env_names};

/// The file, in the workspace's folder, that holds the SHA-256 of the configuration the user trusted.
const TRUSTED_FILE: &str = "trusted-config.sha256";

/// What an untrusted configuration would do on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaptopEffects {
    /// `initializeCommand` as JSON, when it would run here.
    pub initialize_command: Option<String>,
    /// The local environment variables it reads.
    pub local_env: Vec<String>,
}

impl LaptopEffects {
    /// What `config` would do here; `runs_initialize_command` is false where `up` does not run it (AWS clones).
    pub fn of(config: &DevContainer, runs_initialize_command: bool) -> LaptopEffects {
        let initialize_command = config
            .initialize_command
            .as_ref()
            .filter(|_| runs_initialize_command)
            .map(|command| {
                serde_json::to_string(command).unwrap_or_else(|_| "(unprintable)".to_owned())
            });
        LaptopEffects {
            initialize_command,
            local_env: local_env_names(config),
        }
    }

    /// Whether it does nothing on this machine, so there is nothing to ask.
    pub fn is_none(&self) -> bool {
        self.initialize_command.is_none() && self.local_env.is_empty()
    }

    /// The lines shown before asking, naming `source` (the repository's URL and the file).
    pub fn describe(&self, source: &str) -> String {
        let mut text = format!("{source} would act on this machine:\n");
        if let Some(command) = &self.initialize_command {
            text.push_str(&format!("  run initializeCommand here: {command}\n"));
        }
        if !self.local_env.is_empty() {
            let names: Vec<String> = self
                .local_env
                .iter()
                .map(|name| serde_json::to_string(name).unwrap_or_default())
                .collect();
            text.push_str(&format!(
                "  read these local environment variables and send their values to the dev container: {}\n",
                names.join(", ")
            ));
        }
        text
    }
}

/// The SHA-256 of a configuration as the user would be asked to trust it.
fn digest(config: &DevContainer) -> String {
    let text = serde_json::to_string(config).unwrap_or_default();
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Goes on only if `config`, from the untrusted repository `url`, does nothing on this machine, or the user trusts
/// it: `--trust` (`trusted`), a yes on a terminal, or an earlier yes for the very same configuration, remembered in
/// `workspace_folder`.
pub(crate) fn confirm(
    workspace: &str,
    url: &str,
    config_file: &Path,
    config: &DevContainer,
    runs_initialize_command: bool,
    trusted: bool,
    workspace_folder: &Path,
) -> anyhow::Result<()> {
    let effects = LaptopEffects::of(config, runs_initialize_command);
    if effects.is_none() {
        return Ok(());
    }
    let digest = digest(config);
    let remembered = workspace_folder.join(TRUSTED_FILE);
    if std::fs::read_to_string(&remembered).is_ok_and(|text| text.trim() == digest) {
        return Ok(());
    }
    let source = format!("{url} ({})", config_file.display());
    let description = effects.describe(&source);
    if trusted {
        eprintln!("{description}going on: --trust was given");
    } else if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        eprint!("{description}Trust this repository and go on? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            anyhow::bail!(
                "{url}: not trusted, so nothing of its configuration ran here; `skiff up {url} --trust` goes on, `skiff delete {workspace}` removes the clone"
            );
        }
    } else {
        anyhow::bail!(
            "{description}refusing to go on without a yes (no terminal to ask on): review the repository's devcontainer.json, then run `skiff up {url} --trust`; `skiff delete {workspace}` removes the clone"
        );
    }
    crate::workspace::write_file(&remembered, digest.as_bytes(), 0o600)?;
    Ok(())
}

#[cfg(test)]
mod tests;
