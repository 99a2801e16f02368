//! `up` on AWS: the instance launched (or found and started) and recorded locally, connected to Session
//! Manager, with `skiffd` pushed to it when it does not download it; then its agent waited for and brought up to
//! date, and the workspace's files sent over the warm tunnel's bulk lanes.

use std::path::Path;
use std::time::Duration;

use super::Aws;
use super::config::AwsSettings;
use super::connect;
use super::lifecycle::{self, UpRequest};
use crate::agent_client::AgentClient;
use crate::cli::{TunnelChoice, UpArgs};
use crate::progress::Progress;
use crate::provider::Placement;
use crate::workspace::{self, AwsPlacement, ProviderKind, Store, Workspace, WorkspaceRecord};

/// `skiff up --provider aws`, up to the agent: the instance running and recorded locally, connected to
/// Session Manager, with `skiffd` pushed to it when it does not download it. `None` with `--no-wait`, which
/// stops once the instance runs.
pub(crate) async fn place(
    placement: &Placement<'_>,
    tunnel: TunnelChoice,
) -> anyhow::Result<Option<Workspace>> {
    let Placement {
        args,
        folder,
        config_file,
        host_requirements,
    } = *placement;
    let store = Store::open_default()?;
    let settings = AwsSettings::resolve(store.root(), &args.aws)?;
    let progress = Progress::new();
    let existing = store.find_by_folder(folder)?;
    if let Some(existing) = &existing
        && let Some(name) = &args.name
        && name != existing.name()
    {
        anyhow::bail!(
            "{} is already workspace {}; use that name, or `skiff delete {}` first",
            folder.display(),
            existing.name(),
            existing.name()
        );
    }
    // An existing workspace stays where it is: its record names the region and owner.
    let (region, profile) = match existing
        .as_ref()
        .and_then(|workspace| workspace.record.aws.clone())
    {
        Some(placement) => (placement.region, placement.profile),
        None => (settings.region_or_error()?, settings.profile.clone()),
    };
    progress.step(&format!("connecting to AWS in {region}"));
    let aws = Aws::connect(&region, profile.as_deref()).await?;
    let caller = aws.caller().await?;
    let owner = caller.user_id.clone();
    if let Some(placement) = existing
        .as_ref()
        .and_then(|workspace| workspace.record.aws.as_ref())
        && placement.owner != owner
    {
        anyhow::bail!(
            "workspace {} belongs to {}, but these AWS credentials are {} ({}); use the credentials that made it (--profile)",
            existing.as_ref().map_or("", |workspace| workspace.name()),
            placement.owner,
            owner,
            caller.arn
        );
    }
    // The team's defaults in this region, under everything the person set; its rules are checked at launch.
    let team = aws.team_defaults().await?.unwrap_or_default();
    let settings = settings.over_team(team.defaults.clone(), host_requirements.is_some());
    let (mut workspace, made_record) = match existing {
        Some(workspace) => (workspace, false),
        None => {
            let name = args
                .name
                .clone()
                .unwrap_or_else(|| workspace::name_from_folder(folder));
            let record = WorkspaceRecord {
                name,
                provider: ProviderKind::Aws,
                local_folder: folder.to_owned(),
                config_file: config_file.to_owned(),
                idle_timeout: args
                    .idle_timeout
                    .clone()
                    .or_else(|| team.idle_timeout.clone())
                    .unwrap_or_else(|| "30m".into()),
                aws: Some(AwsPlacement {
                    region: region.clone(),
                    instance_id: None,
                    owner: owner.clone(),
                    profile: profile.clone(),
                    files_folder: None,
                }),
                auto_start: true,
                git_credentials: true,
                // The team's dotfiles, unless the person names their own (`--dotfiles`, or saved).
                dotfiles: match (
                    &args.dotfiles,
                    crate::dotfiles::GlobalSettings::load(store.root())?.dotfiles,
                ) {
                    (None, None) => team.dotfiles.clone(),
                    _ => None,
                },
            };
            (store.create(record)?, true)
        }
    };
    let identity = workspace.identity()?;
    let agent_binary = agent_binary(args);
    let launched = std::sync::OnceLock::new();
    let outcome = lifecycle::up(
        &aws,
        &UpRequest {
            workspace: workspace.name(),
            owner: &owner,
            owner_arn: &caller.arn,
            settings: &settings,
            team: &team,
            host_requirements,
            idle_timeout: &workspace.record.idle_timeout,
            client_certificate: &identity.certificate_pem,
            agent_binary: agent_binary.as_deref(),
            previous_instance: workspace
                .record
                .aws
                .as_ref()
                .and_then(|placement| placement.instance_id.as_deref()),
            launched: &launched,
        },
        &progress,
    )
    .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            // Bad input must leave nothing behind, the local record included; but a record whose instance
            // was launched (the failure came later) is kept, or its key pair would be lost.
            if made_record {
                match launched.get() {
                    None => {
                        let _ = workspace.remove();
                    }
                    Some(instance_id) => {
                        if let Some(placement) = workspace.record.aws.as_mut() {
                            placement.instance_id = Some(instance_id.clone());
                        }
                        let _ = workspace.save();
                    }
                }
            }
            return Err(error);
        }
    };
    if let Some(placement) = workspace.record.aws.as_mut()
        && placement.instance_id.as_deref() != Some(&outcome.instance.instance_id)
    {
        placement.instance_id = Some(outcome.instance.instance_id.clone());
        workspace.save()?;
    }
    progress.finish();
    eprintln!(
        "workspace {} {}: instance {} ({}, {}) is {}",
        workspace.name(),
        if outcome.created { "launched" } else { "found" },
        outcome.instance.instance_id,
        outcome.instance.instance_type,
        outcome
            .instance
            .availability_zone
            .as_deref()
            .unwrap_or(&region),
        outcome.instance.state
    );
    if args.no_wait {
        println!("{}", workspace.name());
        return Ok(None);
    }
    let instance_id = outcome.instance.instance_id.clone();
    let progress = Progress::new();
    progress.step(&format!(
        "waiting for {instance_id} to connect to Session Manager"
    ));
    connect::wait_online(&aws, &instance_id, lifecycle::STATE_TIMEOUT).await?;
    if let Some(binary) = &outcome.push {
        progress.step(&format!(
            "pushing {} to the instance through Session Manager",
            binary.display()
        ));
        connect::push_agent(&aws, &instance_id, binary, tunnel, lifecycle::STATE_TIMEOUT).await?;
    }
    progress.finish();
    Ok(Some(workspace))
}

/// The local `skiffd` the user named for the instance (`--agent-binary`, `SKIFF_AGENT_BINARY`): pushed to a new
/// instance, and put in place of an older or other agent by `up`.
fn agent_binary(args: &UpArgs) -> Option<std::path::PathBuf> {
    args.agent
        .agent_binary
        .clone()
        .or_else(|| std::env::var_os("SKIFF_AGENT_BINARY").map(std::path::PathBuf::from))
}

/// How long `up` waits for an instance's agent to answer once the instance is online.
pub(super) const AGENT_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits for an AWS workspace's agent and puts this client's `skiffd` in its place if it is older (or another
/// build was asked for).
pub(crate) async fn ready_agent(
    workspace: &Workspace,
    args: &UpArgs,
    tunnel: TunnelChoice,
    progress: &Progress,
) -> anyhow::Result<AgentClient> {
    progress.step(&format!(
        "waiting for the agent of workspace {}",
        workspace.name()
    ));
    let client = connect::wait_for_agent(workspace, tunnel, AGENT_TIMEOUT).await?;
    let binary = agent_binary(args);
    use super::upgrade;
    upgrade::ensure_current(
        workspace,
        client,
        upgrade::Offer {
            local: binary.as_deref(),
            explicit: binary.is_some(),
            allow_downgrade: args.allow_agent_downgrade,
        },
        tunnel,
        progress,
    )
    .await
}

/// The folder holding an AWS workspace's files on its instance, once sent or cloned there.
pub(crate) fn files_folder(workspace: &Workspace) -> Option<String> {
    workspace
        .record
        .aws
        .as_ref()
        .and_then(|placement| placement.files_folder.clone())
}

/// Records where an AWS workspace's files are on its instance.
pub(crate) fn keep_files_folder(
    workspace: &mut Workspace,
    files_folder: String,
) -> anyhow::Result<()> {
    if let Some(placement) = workspace.record.aws.as_mut() {
        placement.files_folder = Some(files_folder);
    }
    workspace.save()?;
    Ok(())
}

/// The folder holding an AWS workspace's files on its instance: sent now, over the tunnel's bulk lanes, when
/// this workspace has not sent them before; otherwise the ones already there (work done on the instance stays,
/// and `skiff sync` sends the laptop's changes).
pub(crate) async fn send_files(
    workspace: &mut Workspace,
    folder: &Path,
    tunnel: TunnelChoice,
    progress: &Progress,
) -> anyhow::Result<String> {
    if let Some(files_folder) = files_folder(workspace) {
        return Ok(files_folder);
    }
    progress.step(&format!("sending {} to the workspace", folder.display()));
    let mut clients = connect::bulk_agents(workspace, tunnel).await?;
    let outcome = crate::files::upload(&mut clients, folder, &|transfer| {
        progress.step(&format!(
            "sending {}: {} files, {} compressed so far",
            folder.display(),
            transfer.entries,
            crate::files::human_bytes(transfer.sent)
        ));
    })
    .await?;
    progress.line(&format!(
        "sent {} files ({}, {} compressed) over {} Session Manager sessions in {:.1} s",
        outcome.files,
        crate::files::human_bytes(outcome.bytes),
        crate::files::human_bytes(outcome.compressed),
        outcome.parts,
        outcome.elapsed.as_secs_f64()
    ));
    keep_files_folder(workspace, outcome.files_folder.clone())?;
    Ok(outcome.files_folder)
}
