//! The laptop's git identity in the dev container: `user.name` and `user.email` from this machine's git
//! configuration are set in the remote user's global git configuration after `up`, each only where the container
//! has none (an image's or a dotfiles' own identity wins), and only when the container has git.
//!
//! The values are data: they reach the container as arguments of a fixed script, never as part of its text.

use crate::agent_client::AgentClient;

/// The script run in the dev container as the remote user; `$1` is the name and `$2` the email, either empty when
/// this machine has none.
const SCRIPT: &str = r#"command -v git >/dev/null 2>&1 || exit 0
if [ -n "$1" ] && [ -z "$(git config --get user.name)" ]; then git config --global user.name "$1" || exit 1; fi
if [ -n "$2" ] && [ -z "$(git config --get user.email)" ]; then git config --global user.email "$2" || exit 1; fi
exit 0"#;

/// The identity this machine's git would commit with, from its configuration; `None` without git or any identity.
pub async fn laptop_identity() -> Option<(String, String)> {
    let get = |key: &'static str| async move {
        let output = tokio::process::Command::new("git")
            .args(["config", "--get", key])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let name = get("user.name").await.unwrap_or_default();
    let email = get("user.email").await.unwrap_or_default();
    (!name.is_empty() || !email.is_empty()).then_some((name, email))
}

/// The command that sets `name` and `email` in the dev container where it has none.
pub fn command(name: &str, email: &str) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        SCRIPT.into(),
        "skiff-git-identity".into(),
        name.into(),
        email.into(),
    ]
}

/// Sets this machine's git identity in the dev container where it has none; a warning, not an error, on failure.
pub async fn apply(client: &mut AgentClient) -> Result<(), String> {
    let Some((name, email)) = laptop_identity().await else {
        return Ok(());
    };
    let finished = client
        .output(command(&name, &email))
        .await
        .map_err(|error| format!("setting your git identity in the dev container: {error}"))?;
    match finished.code {
        Some(0) => Ok(()),
        code => Err(format!(
            "setting your git identity in the dev container failed ({}): {}",
            code.map_or_else(
                || "no exit code".to_owned(),
                |code| format!("exit code {code}")
            ),
            String::from_utf8_lossy(&finished.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_travels_as_arguments_not_as_script() {
        let hostile = "Eve\"; touch /tmp/pwned; echo \"$(id)";
        let command = command(hostile, "eve@example.com'`id`");
        assert_eq!(command[2], SCRIPT, "the script is fixed");
        assert_eq!(command[4], hostile);
        assert_eq!(command[5], "eve@example.com'`id`");
        assert!(!SCRIPT.contains("Eve"));
    }
}
