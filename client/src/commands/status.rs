//! `skiff status NAME`: the dev container, the agent and the idle countdown; `--json` for scripts.

use std::time::Duration;

use crate::cli::{AgentOptions, StatusArgs};

/// What `status --json` prints.
#[derive(Debug, serde::Serialize)]
struct Report {
    name: String,
    provider: String,
    folder: String,
    config_file: String,
    agent_running: bool,
    #[serde(flatten)]
    status: Option<skiff::api::Status>,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<i32> {
    if let Some(code) =
        crate::provider::aws::commands::status(&args.name, args.json, args.agent.tunnel).await?
    {
        return Ok(code);
    }
    let workspace = super::find_workspace(&args.name)?;
    let provider = super::provider_for(&workspace, &AgentOptions::default());
    let status = match provider.connect_running(&workspace).await? {
        Some(mut client) => Some(client.status().await?),
        None => None,
    };
    let report = Report {
        name: workspace.name().to_owned(),
        provider: workspace.record.provider.to_string(),
        folder: workspace.record.local_folder.display().to_string(),
        config_file: workspace.record.config_file.display().to_string(),
        agent_running: status.is_some(),
        status,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!("workspace         {}", report.name);
    println!("provider          {}", report.provider);
    println!("folder            {}", report.folder);
    println!("config            {}", report.config_file);
    let Some(status) = report.status else {
        println!(
            "state             stopped (agent not running; `skiff up {}` starts it)",
            report.name
        );
        return Ok(0);
    };
    print_agent(&status);
    Ok(0)
}

/// The agent's part of `status`, as lines of text: the agent, the dev container and the idle countdown. Shared by
/// both providers.
pub(crate) fn print_agent(status: &skiff::api::Status) {
    println!(
        "agent             running, version {}",
        status.agent_version
    );
    match &status.container_id {
        Some(id) => println!(
            "container         {} {} ({})",
            status.container_state,
            super::short_id(id),
            status.image.as_deref().unwrap_or("?")
        ),
        None => println!("container         none yet (`skiff up` makes it)"),
    }
    if let Some(folder) = &status.workspace_folder {
        println!("workspace folder  {folder}");
    }
    if let Some(user) = &status.remote_user {
        println!("remote user       {user}");
    }
    if let Some(error) = &status.docker_error {
        println!("docker            {error}");
    }
    let idle = &status.idle;
    let idle_for = humantime::format_duration(Duration::from_secs(idle.idle_seconds));
    let countdown = if idle.timeout_seconds == 0 {
        "idle shutdown is off".to_owned()
    } else if !idle.busy_sources.is_empty() {
        format!("kept up by {}", idle.busy_sources.join(", "))
    } else {
        match idle.stops_in_seconds {
            Some(seconds) => format!(
                "stops in {}",
                humantime::format_duration(Duration::from_secs(seconds))
            ),
            None => "no stop scheduled".to_owned(),
        }
    };
    println!(
        "idle              {idle_for} (last activity: {}); {countdown}",
        idle.last_activity_source
    );
}
