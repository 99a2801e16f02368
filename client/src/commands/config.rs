//! `skiff config NAME KEY=VALUE…`: changes a workspace's settings. The agent's (idle timeout, busy CPU) are sent to
//! it, which keeps them across restarts, and the local record keeps the idle timeout for the next start;
//! `auto-start` is this machine's alone and is only recorded. `skiff config --global KEY=VALUE…` changes the settings
//! of every workspace (`dotfiles`), kept in `$SKIFF_HOME/settings.toml`.

use std::time::Duration;

use crate::cli::ConfigArgs;
use crate::dotfiles::GlobalSettings;
use crate::workspace::Store;

pub async fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    if args.global {
        return global(&args.settings);
    }
    let (name, settings) = args
        .settings
        .split_first()
        .expect("clap requires at least one value");
    if name.contains('=') {
        anyhow::bail!(
            "{name:?}: name the workspace first (`skiff config NAME {name}`), or pass --global for a setting of every workspace"
        );
    }
    if settings.is_empty() {
        anyhow::bail!("no setting for workspace {name}; write KEY=VALUE, such as idle-timeout=2h");
    }
    let mut idle_timeout = None;
    let mut busy_cpu = None;
    let mut auto_start = None;
    let mut git_credentials = None;
    for setting in settings {
        let (key, value) = setting.split_once('=').ok_or_else(|| {
            anyhow::anyhow!("{setting:?}: write KEY=VALUE, such as idle-timeout=2h")
        })?;
        match key.trim() {
            "idle-timeout" | "idle_timeout" => {
                super::check_idle_timeout(value)?;
                idle_timeout = Some(value.trim().to_owned());
            }
            "busy-cpu" | "busy_cpu" => busy_cpu = Some(super::parse_percent(value)?),
            "auto-start" | "auto_start" => auto_start = Some(parse_on_off(key, value)?),
            "git-credentials" | "git_credentials" => {
                git_credentials = Some(parse_on_off(key, value)?);
            }
            other => anyhow::bail!(
                "unknown setting {other:?}; the settings are idle-timeout, busy-cpu, auto-start and git-credentials"
            ),
        }
    }
    let mut workspace = super::find_workspace(name)?;
    let on_off = |on: bool| if on { "on" } else { "off" };
    if let Some(auto_start) = auto_start {
        workspace.record.auto_start = auto_start;
        workspace.save()?;
        eprintln!(
            "workspace {}: auto-start {}",
            workspace.name(),
            on_off(auto_start)
        );
    }
    if let Some(git_credentials) = git_credentials {
        workspace.record.git_credentials = git_credentials;
        workspace.save()?;
        eprintln!(
            "workspace {}: git-credentials {}",
            workspace.name(),
            on_off(git_credentials)
        );
    }
    if idle_timeout.is_none() && busy_cpu.is_none() {
        return Ok(0);
    }
    let mut client = super::agent(&workspace, &Default::default()).await?;
    let (timeout_seconds, percent) = client.configure(idle_timeout.clone(), busy_cpu).await?;
    if let Some(timeout) = idle_timeout {
        workspace.record.idle_timeout = timeout;
        workspace.save()?;
    }
    let timeout = if timeout_seconds == 0 {
        "off".to_owned()
    } else {
        humantime::format_duration(Duration::from_secs(timeout_seconds)).to_string()
    };
    let cpu = if percent > 0.0 {
        format!("{percent}%")
    } else {
        "off".to_owned()
    };
    eprintln!(
        "workspace {}: idle-timeout {timeout}, busy-cpu {cpu}",
        workspace.name()
    );
    Ok(0)
}

/// `on` or `off` (also `true`/`false`, `yes`/`no`) for setting `key`.
fn parse_on_off(key: &str, value: &str) -> anyhow::Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => anyhow::bail!("{key}={value:?}: write {key}=on or {key}=off"),
    }
}

/// `skiff config --global KEY=VALUE…`.
fn global(settings: &[String]) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let mut saved = GlobalSettings::load(store.root())?;
    for setting in settings {
        let (key, value) = setting.split_once('=').ok_or_else(|| {
            anyhow::anyhow!(
                "{setting:?}: write KEY=VALUE, such as dotfiles=https://github.com/you/dotfiles"
            )
        })?;
        match key.trim() {
            "dotfiles" => {
                let value = value.trim();
                if value.is_empty() || value == "none" {
                    saved.dotfiles = None;
                } else {
                    crate::dotfiles::check_url(value)?;
                    saved.dotfiles = Some(value.to_owned());
                }
            }
            other => {
                anyhow::bail!("unknown global setting {other:?}; the global setting is dotfiles")
            }
        }
    }
    saved.save(store.root())?;
    eprintln!(
        "every workspace: dotfiles {}",
        saved.dotfiles.as_deref().unwrap_or("none")
    );
    Ok(0)
}
