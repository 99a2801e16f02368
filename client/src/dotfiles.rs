//! Dotfiles: a repository of the user's shell setup, cloned in the dev container as the remote user once per
//! container (again after `up --rebuild`, which makes a new one), then the first of the conventional install
//! scripts runs, else its dotfiles are linked into the home folder, as Codespaces and DevPod do.
//!
//! The URL comes from `up --dotfiles`, else the workspace's record (the last `--dotfiles` given), else the global
//! setting (`skiff config --global dotfiles=URL`, in `$SKIFF_HOME/settings.toml`). It is data: checked here, then
//! handed to a fixed script as an argument, and to git after `--`. What the script prints is shown; a failure is a
//! warning, and never keeps the workspace from coming up.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use futures::StreamExt as _;
use skiff::api::{ExecOutput, ExecSpec};

use crate::agent_client::AgentClient;

/// The scripts tried, in order, at the top of the dotfiles repository.
pub const INSTALL_SCRIPTS: &[&str] = &[
    "install.sh",
    "install",
    "bootstrap.sh",
    "bootstrap",
    "script/bootstrap",
    "setup.sh",
    "setup",
    "script/setup",
];

/// Exit codes of [`SCRIPT`] that say what went wrong.
const NO_GIT: i32 = 90;
const CLONE_FAILED: i32 = 91;
const INSTALL_FAILED: i32 = 92;

/// Run in the dev container as the remote user, with the URL as `$1` and the install scripts after it. The marker in
/// the home folder makes it once per container.
const SCRIPT: &str = r#"url="$1"; shift
marker="$HOME/.skiff-dotfiles-installed"
target="$HOME/dotfiles"
[ -e "$marker" ] && exit 0
command -v git >/dev/null 2>&1 || exit 90
if [ ! -d "$target/.git" ]; then
  rm -rf "$target.partial"
  git clone --quiet --depth 1 -- "$url" "$target.partial" || exit 91
  mv "$target.partial" "$target" || exit 91
fi
cd "$target" || exit 91
for script in "$@"; do
  if [ -f "$script" ]; then
    echo "dotfiles: running $script" >&2
    chmod +x "$script" 2>/dev/null
    "./$script"
    status=$?
    touch "$marker"
    [ "$status" -eq 0 ] || { echo "dotfiles: $script exited with $status" >&2; exit 92; }
    exit 0
  fi
done
for file in .[!.]* ..?*; do
  [ -e "$file" ] || continue
  [ "$file" = .git ] && continue
  if [ -e "$HOME/$file" ] && [ ! -L "$HOME/$file" ]; then mv "$HOME/$file" "$HOME/$file.before-dotfiles"; fi
  ln -sfn "$target/$file" "$HOME/$file"
  echo "dotfiles: linked ~/$file" >&2
done
touch "$marker"
exit 0"#;

/// Checks that `url` names a git repository in a form git takes, and cannot be read as an option.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let fix = "give a repository URL such as https://github.com/you/dotfiles or git@github.com:you/dotfiles.git";
    if url.is_empty() || url.starts_with('-') || url.chars().any(char::is_control) {
        anyhow::bail!("dotfiles URL {url:?} is not a repository URL; {fix}");
    }
    let scheme_ok = ["https://", "http://", "ssh://", "git://", "file://"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    // scp-like: user@host:path, with no scheme.
    let scp_like = url
        .split_once(':')
        .is_some_and(|(host, path)| host.contains('@') && !host.contains('/') && !path.is_empty());
    if !scheme_ok && !scp_like {
        anyhow::bail!("dotfiles URL {url:?} is not a repository URL; {fix}");
    }
    Ok(())
}

/// The global settings skiff keeps for every workspace, in `$SKIFF_HOME/settings.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GlobalSettings {
    /// The dotfiles repository for workspaces that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dotfiles: Option<String>,
}

impl GlobalSettings {
    fn path(skiff_home: &Path) -> PathBuf {
        skiff_home.join("settings.toml")
    }

    /// The saved settings, or the defaults when none were saved.
    pub fn load(skiff_home: &Path) -> anyhow::Result<Self> {
        let path = Self::path(skiff_home);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "settings {}: {}; fix the file or set it again with `skiff config --global KEY=VALUE`",
                path.display(),
                error.to_string().trim().replace('\n', " ")
            )
        })
    }

    /// Saves the settings.
    pub fn save(&self, skiff_home: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(skiff_home)
            .with_context(|| format!("creating {}", skiff_home.display()))?;
        let text = toml::to_string(self).context("writing the settings")?;
        crate::workspace::write_file(&Self::path(skiff_home), text.as_bytes(), 0o600)?;
        Ok(())
    }
}

/// The command that installs the dotfiles of `url` in the dev container.
pub fn command(url: &str) -> Vec<String> {
    ["/bin/sh", "-c", SCRIPT, "skiff-dotfiles", url]
        .into_iter()
        .chain(INSTALL_SCRIPTS.iter().copied())
        .map(str::to_owned)
        .collect()
}

/// Installs the dotfiles of `url` in the dev container (once per container), showing what the install prints
/// through `show`; `Err` is a warning to show, never a reason to fail `up`.
pub async fn install(
    client: &mut AgentClient,
    url: &str,
    show: &mut dyn FnMut(&[u8]),
) -> Result<(), String> {
    let spec = ExecSpec {
        command: command(url),
        tty: false,
        user: None,
        working_dir: None,
        env: Default::default(),
        window: None,
        stdin: false,
    };
    let mut outputs = client
        .exec(spec, futures::stream::empty())
        .await
        .map_err(|error| format!("dotfiles {url}: {error}"))?;
    let mut code = None;
    while let Some(output) = outputs.next().await {
        match output.map_err(|error| format!("dotfiles {url}: {error}"))? {
            ExecOutput::Stdout(data) | ExecOutput::Stderr(data) => show(&data),
            ExecOutput::Notice(_) => {}
            ExecOutput::Exit(exit) => {
                code = Some(exit);
                break;
            }
        }
    }
    match code {
        Some(0) => Ok(()),
        Some(NO_GIT) => Err(format!(
            "dotfiles {url} were not installed: the dev container has no git (add it to the image, or the Feature ghcr.io/devcontainers/features/git)"
        )),
        Some(CLONE_FAILED) => Err(format!(
            "dotfiles {url} could not be cloned in the dev container (see git's message above); check the URL, or change it with `skiff up --dotfiles URL` or `skiff config --global dotfiles=URL`"
        )),
        Some(INSTALL_FAILED) => Err(format!(
            "dotfiles {url}: the install script failed (its output is above); the workspace is up, and the script is not run again in this container (`skiff up --rebuild` runs it in a new one)"
        )),
        Some(other) => Err(format!(
            "dotfiles {url}: the install ended with exit code {other}"
        )),
        None => Err(format!(
            "dotfiles {url}: the install ended without an exit code"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_urls_pass_and_options_or_junk_are_refused() {
        for good in [
            "https://github.com/ada/dotfiles",
            "git@github.com:ada/dotfiles.git",
            "ssh://git@example.com/ada/dotfiles",
            "file:///workspaces/app/dotfiles",
        ] {
            check_url(good).unwrap();
        }
        for bad in [
            "",
            "--upload-pack=touch /tmp/pwned",
            "-u",
            "dotfiles",
            "/home/ada/dotfiles",
            "https://example.com/a\nb",
            "ext::sh -c touch% /tmp/pwned",
        ] {
            let error = check_url(bad).unwrap_err().to_string();
            assert!(
                error.contains("is not a repository URL"),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn the_url_is_an_argument_of_a_fixed_script() {
        let command = command("https://example.com/$(id)`id`;id");
        assert_eq!(command[2], SCRIPT);
        assert_eq!(command[4], "https://example.com/$(id)`id`;id");
        assert_eq!(&command[5..], INSTALL_SCRIPTS);
    }
}
