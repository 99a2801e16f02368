//! `skiff keepalive NAME --for 2h`: pins the workspace up for a while, whatever its activity.

use std::time::Duration;

use anyhow::Context as _;

use crate::cli::KeepaliveArgs;

pub async fn run(args: KeepaliveArgs) -> anyhow::Result<i32> {
    let seconds = match &args.duration {
        Some(text) if !args.off => humantime::parse_duration(text)
            .with_context(|| format!("--for {text:?}: write a duration such as 2h"))?
            .as_secs(),
        _ => 0,
    };
    let workspace = super::find_workspace(&args.name)?;
    let mut client = super::agent(&workspace, &Default::default()).await?;
    match client.pin(seconds).await? {
        Some(_) => eprintln!(
            "workspace {} stays up for {} whatever its activity; `skiff keepalive {} --off` ends it",
            workspace.name(),
            humantime::format_duration(Duration::from_secs(seconds)),
            workspace.name()
        ),
        None => eprintln!(
            "workspace {} is no longer pinned; the idle countdown applies again",
            workspace.name()
        ),
    }
    Ok(0)
}
