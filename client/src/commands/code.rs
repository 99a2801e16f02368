//! `skiff code NAME`: opens VS Code (or VS Code Insiders, or Cursor) on the workspace's folder inside its dev
//! container, through the editor's Remote-SSH and the `NAME.skiff` entry that `skiff ssh-config` keeps (written or
//! refreshed first). Then, as the Dev Containers extension and DevPod do, it waits for the server the editor puts
//! in the container and installs `customizations.vscode.extensions` into it, in order, and applies
//! `customizations.vscode.settings` as its remote machine settings.
//!
//! Extension ids come from the repository, so they are data: each must look like `publisher.name` (with an optional
//! `@version`) and is one argument of the server's `--install-extension`; the settings are written as JSON text, an
//! argument of a fixed script.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::agent_client::AgentClient;
use crate::cli::{CodeArgs, Editor};
use crate::workspace::Store;

/// How long `skiff code` waits for the editor's server to appear in the dev container.
const SERVER_WAIT: Duration = Duration::from_secs(300);

/// Finds the editor's server in the remote user's home: `$1` is the editor's folder there (`.vscode-server`…), `$2`
/// the server program's name; prints the newest one's path, or fails when there is none yet.
const FIND_SERVER: &str = r#"found=$(ls -1dt "$HOME/$1"/cli/servers/*/server/bin/"$2" "$HOME/$1"/bin/*/bin/"$2" 2>/dev/null | head -n 1)
[ -n "$found" ] && [ -x "$found" ] || exit 1
printf '%s\n' "$found""#;

/// Writes `$2` (JSON) to the settings file `$1`, making its folder.
const WRITE_SETTINGS: &str = r#"mkdir -p "$(dirname "$1")" && printf '%s\n' "$2" > "$1""#;

impl Editor {
    /// The editor's command on this machine.
    fn command(self) -> &'static str {
        match self {
            Editor::Code => "code",
            Editor::Insiders => "code-insiders",
            Editor::Cursor => "cursor",
        }
    }

    /// The folder its server lives in, in the remote user's home.
    fn server_folder(self) -> &'static str {
        match self {
            Editor::Code => ".vscode-server",
            Editor::Insiders => ".vscode-server-insiders",
            Editor::Cursor => ".cursor-server",
        }
    }

    /// The server program's name.
    fn server_program(self) -> &'static str {
        match self {
            Editor::Code | Editor::Insiders => "code-server",
            Editor::Cursor => "cursor-server",
        }
    }
}

pub async fn run(args: CodeArgs) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let workspace = store.get(&args.name)?;
    let editor = args.editor();
    // The editor connects through `skiff proxy`, which would start a stopped workspace too; starting it here shows
    // the start where the user looks, and lets the entry ask the agent.
    let mut client = super::connect(&workspace, &args.agent, &args.start).await?;
    let made = super::ssh_config::entry(&workspace, &args.agent).await?;
    let folder = made.workspace_folder.clone().with_context(|| {
        format!(
            "workspace {} has no dev container yet; run `skiff up {}` first",
            args.name,
            workspace.record.local_folder.display()
        )
    })?;
    // Remote-SSH reads the default ssh configuration, so the entry goes there.
    let config = super::ssh_config::default_config()?;
    super::ssh_config::write(&config, std::slice::from_ref(&made.entry), &store)?;
    let host = super::ssh_config::host(&args.name);
    let command = editor.command();
    let status = match std::process::Command::new(command)
        .arg("--remote")
        .arg(format!("ssh-remote+{host}"))
        .arg(&folder)
        .status()
    {
        Ok(status) => status,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "the editor's `{command}` command is not on PATH; install it and, in the editor, run \"Shell Command: Install '{command}' command in PATH\", or open {host} from its Remote-SSH view ({} has the entry)",
            config.display()
        ),
        Err(error) => return Err(error).with_context(|| format!("running `{command}`")),
    };
    if !status.success() {
        return Ok(status.code().unwrap_or(1));
    }
    // The dev container's merged metadata (its image's, its Features', devcontainer.json's at creation), as VS Code
    // itself reads it; an agent that reports none (an older one) leaves devcontainer.json's own.
    let from_agent = client
        .status()
        .await
        .map(|status| Customizations::from_metadata(&status.editor))
        .unwrap_or_default();
    let customizations = if from_agent.is_empty() {
        skiff::devcontainer::load(
            &workspace.record.local_folder,
            Some(&workspace.record.config_file),
        )
        .map(|loaded| Customizations::of(&loaded.config))
        .unwrap_or_default()
    } else {
        from_agent
    };
    if customizations.is_empty() {
        return Ok(0);
    }
    let problems = customize(&mut client, editor, &customizations).await?;
    for problem in &problems {
        eprintln!("warning: {problem}");
    }
    Ok(0)
}

/// What the dev container's configuration asks of the editor's server.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Customizations {
    /// `customizations.vscode.extensions`, in order.
    pub extensions: Vec<String>,
    /// `customizations.vscode.settings`.
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Customizations {
    /// The customizations the agent merged from the dev container's metadata.
    pub(crate) fn from_metadata(editor: &skiff::api::EditorCustomizations) -> Self {
        Self {
            extensions: editor.extensions.clone(),
            settings: editor
                .settings_json
                .as_deref()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
                .and_then(|value| match value {
                    serde_json::Value::Object(settings) if !settings.is_empty() => Some(settings),
                    _ => None,
                }),
        }
    }

    /// The editor customizations of `config`.
    pub(crate) fn of(config: &skiff::devcontainer::DevContainer) -> Self {
        let vscode = config
            .customizations
            .as_ref()
            .and_then(|customizations| customizations.get("vscode"))
            .and_then(serde_json::Value::as_object);
        let Some(vscode) = vscode else {
            return Self::default();
        };
        Self {
            extensions: vscode
                .get("extensions")
                .and_then(serde_json::Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(serde_json::Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            settings: vscode
                .get("settings")
                .and_then(serde_json::Value::as_object)
                .filter(|settings| !settings.is_empty())
                .cloned(),
        }
    }

    fn is_empty(&self) -> bool {
        self.extensions.is_empty() && self.settings.is_none()
    }
}

/// Whether `id` is an extension id (`publisher.name`, optionally `@version`), so it cannot be read as an option.
pub(crate) fn is_extension_id(id: &str) -> bool {
    let (name, version) = match id.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (id, None),
    };
    let word = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
            && part
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || "-_".contains(character))
    };
    let name_ok = name
        .split_once('.')
        .is_some_and(|(publisher, extension)| word(publisher) && word(extension));
    let version_ok = version.is_none_or(|version| {
        version
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric())
            && version
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || ".-+".contains(character))
    });
    name_ok && version_ok
}

/// Waits for the editor's server in the dev container, then installs the extensions in order and writes the
/// settings; returns what failed, to report.
async fn customize(
    client: &mut AgentClient,
    editor: Editor,
    customizations: &Customizations,
) -> anyhow::Result<Vec<String>> {
    let folder = editor.server_folder();
    eprintln!(
        "waiting for the editor's server in the dev container (~/{folder}) to install {} extension(s); Ctrl-C leaves them",
        customizations.extensions.len()
    );
    let deadline = Instant::now() + SERVER_WAIT;
    let server = loop {
        let found = client
            .output(
                [
                    "/bin/sh",
                    "-c",
                    FIND_SERVER,
                    "skiff-code",
                    folder,
                    editor.server_program(),
                ]
                .map(str::to_owned)
                .to_vec(),
            )
            .await?;
        if found.code == Some(0) {
            break String::from_utf8_lossy(&found.stdout).trim().to_owned();
        }
        if Instant::now() > deadline {
            return Ok(vec![format!(
                "the editor's server did not appear in ~/{folder} of the dev container within {} s; the extensions were not installed",
                SERVER_WAIT.as_secs()
            )]);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut problems = Vec::new();
    for extension in &customizations.extensions {
        if !is_extension_id(extension) {
            problems.push(format!(
                "extension {extension:?} is not an extension id (publisher.name); skipped"
            ));
            continue;
        }
        eprintln!("installing extension {extension}");
        let installed = client
            .output(vec![
                server.clone(),
                "--install-extension".to_owned(),
                extension.clone(),
            ])
            .await?;
        if installed.code != Some(0) {
            let said = String::from_utf8_lossy(&installed.stderr);
            let said = said.trim().lines().last().unwrap_or_default().to_owned();
            problems.push(format!(
                "extension {extension} was not installed ({}): {said}",
                installed.code.map_or_else(
                    || "no exit code".to_owned(),
                    |code| format!("exit code {code}")
                )
            ));
        }
    }
    if let Some(settings) = &customizations.settings
        && let Err(problem) = write_settings(client, folder, settings).await
    {
        problems.push(problem);
    }
    Ok(problems)
}

/// Merges `settings` into the server's remote machine settings (`~/FOLDER/data/Machine/settings.json`): what the
/// user set there already wins.
async fn write_settings(
    client: &mut AgentClient,
    folder: &str,
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
    let path_of = format!("\"$HOME\"/{folder}/data/Machine/settings.json");
    let read = client
        .output(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("cat {path_of} 2>/dev/null; exit 0"),
        ])
        .await
        .map_err(|error| format!("reading the editor's machine settings: {error}"))?;
    let mut merged = settings.clone();
    let existing = String::from_utf8_lossy(&read.stdout);
    if !existing.trim().is_empty() {
        let parsed: serde_json::Value = jsonc_parser::parse_to_serde_value::<serde_json::Value>(
            &existing,
            &jsonc_parser::ParseOptions::default(),
        )
        .map_err(|_| {
            format!("~/{folder}/data/Machine/settings.json is not JSON; its settings were left as they are")
        })?;
        if let serde_json::Value::Object(mine) = parsed {
            merged.extend(mine);
        }
    }
    let text = serde_json::to_string_pretty(&merged).map_err(|error| error.to_string())?;
    let written = client
        .output(vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("set -- {path_of} \"$1\"; {WRITE_SETTINGS}"),
            "skiff-code".into(),
            text,
        ])
        .await
        .map_err(|error| format!("writing the editor's machine settings: {error}"))?;
    if written.code != Some(0) {
        return Err(format!(
            "writing ~/{folder}/data/Machine/settings.json failed: {}",
            String::from_utf8_lossy(&written.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_extension_id;

    #[test]
    fn extension_ids_pass_and_options_do_not() {
        for good in [
            "ms-python.python",
            "rust-lang.rust-analyzer",
            "esbenp.prettier-vscode@10.1.0",
            "GitHub.copilot",
        ] {
            assert!(is_extension_id(good), "{good}");
        }
        for bad in [
            "--install-extension",
            "-x.y",
            "python",
            "a.b;touch /tmp/x",
            "a.b@",
            "../a.b",
            "a.b c",
            "",
        ] {
            assert!(!is_extension_id(bad), "{bad}");
        }
    }
}
