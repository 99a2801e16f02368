//! `skiff config NAME KEY=VALUE…`: changes a running workspace's settings; the agent keeps them across
//! restarts, and the local record keeps the idle timeout for the next start.

use std::time::Duration;

use crate::cli::ConfigArgs;

pub async fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    let mut idle_timeout = None;
    let mut busy_cpu = None;
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
            other => anyhow::bail!(
                "unknown setting {other:?}; the settings are idle-timeout and busy-cpu"
            ),
        }
    }
    let mut workspace = super::find_workspace(&args.name)?;
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
