//! `skiff ssh-config [NAME…]`: keeps a managed block of `Host NAME.skiff` entries in `~/.ssh/config` (or
//! `--config FILE`), so OpenSSH and what is built on it (scp, rsync, VS Code Remote-SSH, JetBrains Gateway)
//! reach a dev container through `skiff proxy NAME`.
//!
//! The block sits between a `# BEGIN skiff` and a `# END skiff` line. Everything outside it is kept byte for
//! byte, and writing the same entries again changes nothing. A new block goes at the top of the file, because
//! ssh takes the first value it finds for each setting; it ends with `Host *`, so lines after it apply to every
//! host as they did before. Each entry names the workspace's client key (the same key as its TLS identity) and a
//! `known_hosts` file, beside the keys, that pins the agent's host key: the key of the agent certificate this
//! machine already pinned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::cli::{AgentOptions, SshConfigArgs};
use crate::provider::Provider;
use crate::workspace::{self, Store, Workspace};

/// The first line of the managed block.
pub(crate) const BEGIN: &str =
    "# BEGIN skiff: written by `skiff ssh-config`, which replaces everything up to the END line";
/// The last line of the managed block.
pub(crate) const END: &str = "# END skiff";
/// How the block's first line starts; the rest of it is free text.
const BEGIN_PREFIX: &str = "# BEGIN skiff";

/// One workspace's `Host` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The workspace's name; the host is `NAME.skiff`.
    pub name: String,
    /// The user to log in as: the dev container's remote user.
    pub user: String,
    /// The command ssh runs to reach the workspace.
    pub proxy_command: String,
    /// The workspace's client key.
    pub identity_file: PathBuf,
    /// The file that pins the agent's host key.
    pub known_hosts: PathBuf,
    /// Whether ssh forwards this machine's SSH agent into the dev container (`ForwardAgent yes`).
    pub forward_agent: bool,
}

/// The longest user name an entry accepts (Linux allows 32; some systems more).
const MAX_USER: usize = 64;

/// Checks the user an entry logs in as. It comes from the agent, which took it from the dev container's
/// `remoteUser` (set by the repository's devcontainer.json or by an image's `devcontainer.metadata` label), so it
/// is data from outside this machine: a newline in it would start a new ssh_config line (a `ProxyCommand` that
/// runs on this laptop), and a space or quote would change the line's meaning. Only a plain user name or uid passes.
pub(crate) fn check_user(workspace: &str, user: &str) -> anyhow::Result<()> {
    let plain = !user.is_empty()
        && user.len() <= MAX_USER
        && !user.starts_with('-')
        && user
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "._-".contains(character));
    if !plain {
        anyhow::bail!(
            "workspace {workspace}: the dev container's remote user {} is not a plain user name (letters, digits, `.`, `_`, `-`; at most {MAX_USER}), so no ssh entry is written for it; set remoteUser in devcontainer.json to the user's name (an image's devcontainer.metadata label may have set this one)",
            serde_json::to_string(user).unwrap_or_default()
        );
    }
    Ok(())
}

/// Checks the folder `skiff code` opens, which the agent reports from the dev container's configuration: it becomes
/// an argument of `code`, so it must be an absolute POSIX path and never look like an option or hold control
/// characters.
pub(crate) fn check_remote_folder(workspace: &str, folder: &str) -> anyhow::Result<()> {
    if !folder.starts_with('/') || folder.chars().any(char::is_control) {
        anyhow::bail!(
            "workspace {workspace}: the dev container's workspace folder {} is not an absolute path without control characters; set workspaceFolder in devcontainer.json",
            serde_json::to_string(folder).unwrap_or_default()
        );
    }
    Ok(())
}

/// The SSH host name of a workspace.
pub(crate) fn host(name: &str) -> String {
    format!("{name}.skiff")
}

/// A value for a file setting: `%` written as `%%` (ssh expands tokens there), quoted when it has spaces.
/// ssh_config has no escape for a double quote or a line break inside a value, so a path holding one is refused.
fn config_path(path: &Path) -> anyhow::Result<String> {
    let text = path.to_string_lossy().replace('%', "%%");
    if text.contains(|character: char| character == '"' || character.is_control()) {
        anyhow::bail!(
            "{}: a path with a double quote or a control character cannot be written into an ssh configuration; set SKIFF_HOME to a plainer folder",
            path.display()
        );
    }
    Ok(if text.contains(char::is_whitespace) {
        format!("\"{text}\"")
    } else {
        text
    })
}

/// A word for the shell that runs ProxyCommand, single-quoted unless it is plainly safe.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "/._-+:@,=".contains(character));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The ProxyCommand that runs this very `skiff` with the same home and agent binary.
pub(crate) fn proxy_command(
    skiff: &Path,
    home: Option<&Path>,
    agent_binary: Option<&Path>,
    name: &str,
) -> String {
    let mut words = Vec::new();
    if let Some(home) = home {
        words.push("env".to_owned());
        words.push(format!(
            "SKIFF_HOME={}",
            shell_word(&home.to_string_lossy())
        ));
    }
    words.push(shell_word(&skiff.to_string_lossy()));
    words.push("proxy".to_owned());
    if let Some(binary) = agent_binary {
        words.push("--agent-binary".to_owned());
        words.push(shell_word(&binary.to_string_lossy()));
    }
    words.push(shell_word(name));
    // ssh expands `%` tokens in ProxyCommand before the shell sees it.
    words.join(" ").replace('%', "%%")
}

/// The lines of one entry; every value is checked first, so no value can add a line of its own.
pub(crate) fn render(entry: &Entry) -> anyhow::Result<String> {
    if !workspace::valid_name(&entry.name) {
        anyhow::bail!(
            "{}: not a workspace name, so no ssh entry is written for it",
            serde_json::to_string(&entry.name).unwrap_or_default()
        );
    }
    check_user(&entry.name, &entry.user)?;
    if entry.proxy_command.chars().any(char::is_control) {
        anyhow::bail!(
            "workspace {}: the ProxyCommand holds a control character; run skiff from a path without one",
            entry.name
        );
    }
    let host = host(&entry.name);
    let mut text = format!(
        "Host {host}\n    HostKeyAlias {host}\n    User {user}\n    ProxyCommand {proxy}\n    IdentityFile {identity}\n    IdentitiesOnly yes\n    UserKnownHostsFile {known_hosts}\n    StrictHostKeyChecking yes\n",
        user = entry.user,
        proxy = entry.proxy_command,
        identity = config_path(&entry.identity_file)?,
        known_hosts = config_path(&entry.known_hosts)?,
    );
    if entry.forward_agent {
        text.push_str("    ForwardAgent yes\n");
    }
    Ok(text)
}

/// The whole managed block for entries already rendered, by workspace name.
fn block(entries: &BTreeMap<String, String>) -> String {
    let mut text = format!("{BEGIN}\n");
    for entry in entries.values() {
        text.push_str(entry);
    }
    text.push_str("# The lines after this block apply to every host again.\nHost *\n");
    text.push_str(END);
    text.push('\n');
    text
}

/// The managed block holding `entries`.
pub(crate) fn block_of(entries: &[Entry]) -> anyhow::Result<String> {
    let mut rendered = BTreeMap::new();
    for entry in entries {
        rendered.insert(entry.name.clone(), render(entry)?);
    }
    Ok(block(&rendered))
}

/// The entries of an existing block's body, by workspace name, as their text.
fn parse_entries(body: &[&str]) -> BTreeMap<String, String> {
    let mut entries = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in body {
        let trimmed = line.trim();
        if let Some(hosts) = trimmed.strip_prefix("Host ") {
            if let Some((name, text)) = current.take() {
                entries.insert(name, text);
            }
            current = hosts
                .trim()
                .strip_suffix(".skiff")
                .map(|name| (name.to_owned(), format!("{line}\n")));
        } else if trimmed.starts_with('#') {
            // The block's own comments are written afresh.
        } else if let Some((_, text)) = current.as_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    if let Some((name, text)) = current {
        entries.insert(name, text);
    }
    entries
}

/// The configuration `existing` with the managed block holding `entries`, plus the entries the block already
/// had for workspaces that still exist (`keep`). `path` names the file in errors.
pub(crate) fn update(
    path: &Path,
    existing: &str,
    entries: &[Entry],
    keep: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let lines: Vec<&str> = existing.lines().collect();
    let begin = lines
        .iter()
        .position(|line| line.trim_end().starts_with(BEGIN_PREFIX));
    let end = lines.iter().position(|line| line.trim_end() == END);
    let mut merged = BTreeMap::new();
    let (before, after) = match (begin, end) {
        (Some(begin), Some(end)) if begin < end => {
            merged = parse_entries(&lines[begin + 1..end]);
            merged.retain(|name, _| keep(name));
            (&lines[..begin], &lines[end + 1..])
        }
        (None, None) => (&lines[..0], &lines[..]),
        _ => anyhow::bail!(
            "{}: the `{BEGIN_PREFIX}` and `{END}` lines do not pair up; remove both (and the lines between them) and run `skiff ssh-config` again",
            path.display()
        ),
    };
    for entry in entries {
        merged.insert(entry.name.clone(), render(entry)?);
    }
    let mut text = String::new();
    for line in before {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&block(&merged));
    if begin.is_none() && !after.is_empty() {
        // Set the new block apart from what was there.
        text.push('\n');
    }
    for line in after {
        text.push_str(line);
        text.push('\n');
    }
    if !existing.ends_with('\n') && !existing.is_empty() && !after.is_empty() {
        // Keep a file that had no final newline as it was.
        text.pop();
    }
    Ok(text)
}

/// `~/.ssh/config`, from `$HOME`.
pub(crate) fn default_config() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| directories::BaseDirs::new().map(|dirs| dirs.home_dir().to_owned()))
        .context("finding the ssh configuration: HOME is not set; pass --config FILE")?;
    Ok(home.join(".ssh").join("config"))
}

/// Writes (or refreshes) the workspace's `known_hosts` from the agent certificate this machine pinned;
/// returns its path.
pub(crate) fn write_known_hosts(workspace: &Workspace) -> anyhow::Result<PathBuf> {
    let name = workspace.name();
    let pem = Provider::of(workspace, &AgentOptions::default())
        .pinned_certificate(workspace)
        .with_context(|| {
        format!("workspace {name} has no pinned agent certificate yet; run `skiff status {name}` once to start its agent")
    })?;
    let certificate = skiff::tls::parse_certificate("the pinned agent certificate", &pem)?;
    let key = skiff::ssh::public_key("the pinned agent certificate", &certificate)?;
    let line = skiff::ssh::known_hosts_line(&host(name), &key);
    let path = workspace.folder.join("known_hosts");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(line.as_str()) {
        workspace::write_file(&path, line.as_bytes(), 0o644)?;
    }
    Ok(path)
}

/// What `skiff code` needs besides the entry: where the workspace is in its dev container.
#[derive(Debug, Clone)]
pub(crate) struct Made {
    /// The entry.
    pub entry: Entry,
    /// The workspace folder inside the dev container.
    pub workspace_folder: Option<String>,
}

/// The entry of one workspace, asking its agent (started if needed) for the remote user.
pub(crate) async fn entry(workspace: &Workspace, options: &AgentOptions) -> anyhow::Result<Made> {
    let name = workspace.name();
    let mut client = super::agent(workspace, options).await?;
    let status = client.status().await?;
    let user = status.remote_user.with_context(|| {
        format!(
            "workspace {name} has no dev container yet, so its user is unknown; run `skiff up {}` first",
            workspace.record.local_folder.display()
        )
    })?;
    check_user(name, &user)?;
    if let Some(folder) = &status.workspace_folder {
        check_remote_folder(name, folder)?;
    }
    let known_hosts = write_known_hosts(workspace)?;
    let skiff =
        std::env::current_exe().context("finding this skiff's own path for ProxyCommand")?;
    let home = std::env::var_os("SKIFF_HOME").map(PathBuf::from);
    Ok(Made {
        entry: Entry {
            name: name.to_owned(),
            user,
            proxy_command: proxy_command(
                &skiff,
                home.as_deref(),
                options.agent_binary.as_deref(),
                name,
            ),
            identity_file: workspace.folder.join("client.key"),
            known_hosts,
            forward_agent: false,
        },
        workspace_folder: status.workspace_folder,
    })
}

/// Writes `entries` into the managed block of `path` (created with its folder if missing), keeping the
/// entries of other workspaces that still exist.
pub(crate) fn write(path: &Path, entries: &[Entry], store: &Store) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
    };
    let known = store.names();
    let updated = update(path, &existing, entries, |name| {
        known.iter().any(|known| known == name)
    })?;
    if updated == existing {
        return Ok(());
    }
    // A configuration kept elsewhere and linked here (dotfiles) is written where it really is.
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let folder = target
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !folder.exists() {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        std::fs::set_permissions(folder, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .with_context(|| format!("protecting {}", folder.display()))?;
    }
    let mode = std::fs::metadata(&target).map_or(0o600, |metadata| {
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777
    });
    workspace::write_file(&target, updated.as_bytes(), mode)?;
    Ok(())
}

pub async fn run(args: SshConfigArgs) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let named = !args.names.is_empty();
    let names = if named {
        args.names.clone()
    } else {
        store.names()
    };
    if names.is_empty() {
        anyhow::bail!("there are no workspaces yet; create one with `skiff up PATH`");
    }
    let mut entries = Vec::new();
    for name in &names {
        let made = match store.get(name) {
            Ok(workspace) => entry(&workspace, &args.agent).await,
            Err(error) => Err(error.into()),
        };
        match made {
            Ok(made) => entries.push(Entry {
                forward_agent: args.forward_agent,
                ..made.entry
            }),
            // Asked for by name, a workspace that cannot have an entry is an error; among all, it is skipped.
            Err(error) if named => return Err(error.context(format!("workspace {name}"))),
            Err(error) => eprintln!("skiff: skipping workspace {name}: {error:#}"),
        }
    }
    if entries.is_empty() {
        anyhow::bail!("no workspace could have an entry; see the reasons above");
    }
    if args.print {
        print!("{}", block_of(&entries)?);
        return Ok(0);
    }
    let path = match args.config {
        Some(path) => path,
        None => default_config()?,
    };
    write(&path, &entries, &store)?;
    for entry in &entries {
        eprintln!(
            "{} is in {}; connect with `ssh {}`",
            host(&entry.name),
            path.display(),
            host(&entry.name)
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
