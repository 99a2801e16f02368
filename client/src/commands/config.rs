//! `skiff config NAME KEY=VALUE…`: changes a workspace's settings. The agent's (idle timeout, busy CPU) are sent to
//! it, which keeps them across restarts, and the local record keeps the idle timeout for the next start;
//! `auto-start` is this machine's alone and is only recorded.

use std::time::Duration;

use crate::cli::ConfigArgs;

pub async fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    let mut idle_timeout = None;
    let mut busy_cpu = None;
    let mut auto_start = None;
    for setting in &args.settings {
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
            other => anyhow::bail!(
                "unknown setting {other:?}; the settings are idle-timeout, busy-cpu and auto-start"
            ),
        }
    }
    let mut workspace = super::find_workspace(&args.name)?;
    if let Some(auto_start) = auto_start {
        workspace.record.auto_start = auto_start;
        workspace.save()?;
        eprintln!(
            "workspace {}: auto-start {}",
            workspace.name(),
            if auto_start { "on" } else { "off" }
        );
        if idle_timeout.is_none() && busy_cpu.is_none() {
            return Ok(0);
        }
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
