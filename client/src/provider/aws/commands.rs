//! What the client's commands do for an AWS workspace: `up`, `list`, `status`, `stop`, `delete`,
//! `logs --boot`, `enroll` and `provider aws`. The command modules call these and print nothing AWS-specific
//! themselves.
//!
//! A workspace is found from its local record (region, owner), or, on a machine that has no record of it, by
//! its tags in the configured regions: AWS is the record, so `list`, `status`, `stop` and `delete` work from
//! any machine. The functions that may not apply return `Ok(None)` for a workspace that is not on AWS.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use skiff::devcontainer::HostRequirements;

use super::Aws;
use super::config::{AwsOptions, AwsSettings, ProviderAwsArgs};
use super::lifecycle::{self, InstanceSummary, UpRequest};
use crate::cli::UpArgs;
use crate::progress::Progress;
use crate::workspace::{self, AwsPlacement, ProviderKind, Store, Workspace, WorkspaceRecord};

/// The regions `list` and lookups by name ask: the settings' region, `list_regions`, and local records'.
fn regions(settings: &AwsSettings, store: &Store) -> Vec<String> {
    let mut regions: Vec<String> = settings
        .region_or_error()
        .ok()
        .into_iter()
        .chain(settings.list_regions.iter().cloned())
        .chain(
            store
                .all()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|workspace| workspace.record.aws.map(|placement| placement.region)),
        )
        .collect();
    regions.sort();
    regions.dedup();
    regions
}

/// Whether anything says AWS is in use here: saved settings, `SKIFF_AWS_REGION`, or an AWS workspace.
fn aws_in_use(store: &Store) -> bool {
    AwsSettings::configured(store.root())
        || store
            .all()
            .unwrap_or_default()
            .iter()
            .any(|workspace| workspace.record.provider == ProviderKind::Aws)
}

/// A workspace found on AWS.
struct Located {
    aws: Aws,
    owner: String,
    instance: Option<InstanceSummary>,
    record: Option<Workspace>,
}

/// Finds `name` on AWS: through its local record, else by tag in the configured regions. `None` if the name
/// is a local workspace or AWS does not know it.
async fn locate(name: &str) -> anyhow::Result<Option<Located>> {
    locate_owned(name, None).await
}

/// [`locate`] for `owner`'s workspace (an operator's clean-up) when given: a local record of that name counts
/// only if it is that owner's.
async fn locate_owned(name: &str, owner: Option<&str>) -> anyhow::Result<Option<Located>> {
    let store = Store::open_default()?;
    let record_owner = |workspace: &Workspace| {
        workspace
            .record
            .aws
            .as_ref()
            .map(|placement| placement.owner.clone())
    };
    match store.get(name) {
        Ok(workspace)
            if owner.is_some_and(|owner| record_owner(&workspace).as_deref() != Some(owner)) => {}
        Ok(workspace) if workspace.record.provider == ProviderKind::Aws => {
            let placement = workspace.record.aws.clone().with_context(|| {
                format!("workspace record {name} says aws but has no region; remove its folder in the skiff home")
            })?;
            let aws = Aws::connect(&placement.region, placement.profile.as_deref()).await?;
            let instance = aws.find(name, &placement.owner).await?;
            return Ok(Some(Located {
                aws,
                owner: placement.owner,
                instance,
                record: Some(workspace),
            }));
        }
        Ok(_) => return Ok(None),
        Err(_) => {}
    }
    if !AwsSettings::configured(store.root()) {
        return Ok(None);
    }
    let settings = AwsSettings::resolve(store.root(), &AwsOptions::default())?;
    for region in regions(&settings, &store) {
        let aws = Aws::connect(&region, settings.profile()).await?;
        let owner = match owner {
            Some(owner) => owner.to_owned(),
            None => aws.caller().await?.user_id,
        };
        if let Some(instance) = aws.find(name, &owner).await? {
            return Ok(Some(Located {
                aws,
                owner,
                instance: Some(instance),
                record: None,
            }));
        }
    }
    Ok(None)
}

/// `skiff up --provider aws`, up to the agent: the instance running and recorded locally, connected to
/// Session Manager, with `skiffd` pushed to it when it does not download it. `None` with `--no-wait`, which
/// stops once the instance runs.
pub async fn up(
    args: &UpArgs,
    folder: &Path,
    config_file: &Path,
    host_requirements: Option<&HostRequirements>,
) -> anyhow::Result<Option<Workspace>> {
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
                idle_timeout: args.idle_timeout.clone().unwrap_or_else(|| "30m".into()),
                aws: Some(AwsPlacement {
                    region: region.clone(),
                    instance_id: None,
                    owner: owner.clone(),
                    profile: profile.clone(),
                    files_folder: None,
                }),
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
    super::connect::wait_online(&aws, &instance_id, lifecycle::STATE_TIMEOUT).await?;
    if let Some(binary) = &outcome.push {
        progress.step(&format!(
            "pushing {} to the instance through Session Manager",
            binary.display()
        ));
        super::connect::push_agent(
            &aws,
            &instance_id,
            binary,
            args.agent.tunnel,
            lifecycle::STATE_TIMEOUT,
        )
        .await?;
    }
    progress.finish();
    Ok(Some(workspace))
}

/// The local `skiffd` the user named for the instance (`--agent-binary`, `SKIFF_AGENT_BINARY`): pushed to a new
/// instance, and put in place of an older or other agent by `up`.
pub(crate) fn agent_binary(args: &UpArgs) -> Option<std::path::PathBuf> {
    args.agent
        .agent_binary
        .clone()
        .or_else(|| std::env::var_os("SKIFF_AGENT_BINARY").map(std::path::PathBuf::from))
}

/// One AWS workspace in `skiff list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListRow {
    pub name: String,
    pub state: String,
    pub region: String,
    pub instance_id: Option<String>,
    pub instance_type: Option<String>,
    pub owner: String,
    /// The folder, when this machine has a record of the workspace.
    pub folder: Option<String>,
}

/// The AWS workspaces: every configured region's skiff-tagged instances (yours, or everyone's with `all`),
/// and local AWS records that AWS no longer knows (state `not-found`). Regions that fail are warned about.
pub async fn list(all: bool) -> anyhow::Result<Vec<ListRow>> {
    let store = Store::open_default()?;
    if !aws_in_use(&store) {
        return Ok(Vec::new());
    }
    let settings = AwsSettings::resolve(store.root(), &AwsOptions::default())?;
    let records: Vec<Workspace> = store
        .all()?
        .into_iter()
        .filter(|workspace| workspace.record.provider == ProviderKind::Aws)
        .collect();
    let lookups = regions(&settings, &store).into_iter().map(|region| {
        let profile = settings.profile.clone();
        async move {
            let result = async {
                let aws = Aws::connect(&region, profile.as_deref()).await?;
                let owner = aws.caller().await?.user_id;
                let instances = aws
                    .instances(None, (!all).then_some(owner.as_str()))
                    .await?;
                anyhow::Ok(instances)
            }
            .await;
            (region, result)
        }
    });
    let mut rows = Vec::new();
    for (region, result) in futures::future::join_all(lookups).await {
        match result {
            Ok(instances) => rows.extend(instances.into_iter().map(|instance| {
                let folder = records
                    .iter()
                    .find(|record| {
                        record.name() == instance.workspace
                            && record
                                .record
                                .aws
                                .as_ref()
                                .is_some_and(|placement| placement.owner == instance.owner)
                    })
                    .map(|record| record.record.local_folder.display().to_string())
                    .filter(|folder| !folder.is_empty());
                ListRow {
                    name: instance.workspace,
                    state: instance.state,
                    region: instance.region,
                    instance_id: Some(instance.instance_id),
                    instance_type: Some(instance.instance_type),
                    owner: instance.owner,
                    folder,
                }
            })),
            Err(error) => eprintln!("warning: listing AWS workspaces in {region}: {error:#}"),
        }
    }
    for record in &records {
        let Some(placement) = &record.record.aws else {
            continue;
        };
        let seen = rows.iter().any(|row| {
            row.name == record.name()
                && row.owner == placement.owner
                && row.region == placement.region
        });
        if !seen {
            rows.push(ListRow {
                name: record.name().to_owned(),
                state: "not-found".into(),
                region: placement.region.clone(),
                instance_id: placement.instance_id.clone(),
                instance_type: None,
                owner: placement.owner.clone(),
                folder: Some(record.record.local_folder.display().to_string())
                    .filter(|folder| !folder.is_empty()),
            });
        }
    }
    rows.sort_by(|left, right| (&left.name, &left.owner).cmp(&(&right.name, &right.owner)));
    Ok(rows)
}

/// How long `status` waits for the agent of a running instance before reporting it unreachable.
const STATUS_AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `skiff status NAME` for an AWS workspace; `None` if it is not one. The instance comes from EC2; when it runs
/// and this machine holds the workspace's keys, the agent is asked too, through the warm tunnel, and what stops
/// it answering is reported rather than failing the command.
pub async fn status(
    name: &str,
    json: bool,
    tunnel: crate::cli::TunnelChoice,
) -> anyhow::Result<Option<i32>> {
    let Some(located) = locate(name).await? else {
        return Ok(None);
    };
    let running = located
        .instance
        .as_ref()
        .is_some_and(|instance| instance.state == "running");
    let (agent, agent_error) = match (&located.record, running) {
        (Some(record), true) => {
            let asked = async {
                let mut client = super::connect::agent(record, tunnel).await?;
                anyhow::Ok(client.status().await?)
            };
            match tokio::time::timeout(STATUS_AGENT_TIMEOUT, asked).await {
                Ok(Ok(status)) => (Some(status), None),
                Ok(Err(error)) => (None, Some(format!("{error:#}"))),
                Err(_) => (
                    None,
                    Some(format!(
                        "no answer within {} s",
                        STATUS_AGENT_TIMEOUT.as_secs()
                    )),
                ),
            }
        }
        (None, true) => (
            None,
            Some(
                "not asked: this machine has no keys for the workspace (`skiff enroll` on a machine that has them)"
                    .to_owned(),
            ),
        ),
        _ => (None, None),
    };
    #[derive(serde::Serialize)]
    struct Report<'a> {
        name: &'a str,
        provider: &'static str,
        region: &'a str,
        owner: &'a str,
        folder: Option<String>,
        agent_running: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_error: Option<&'a str>,
        instance: Option<&'a InstanceSummary>,
        #[serde(flatten)]
        agent: Option<&'a skiff::api::Status>,
    }
    let report = Report {
        name,
        provider: "aws",
        region: &located.aws.region,
        owner: &located.owner,
        folder: located
            .record
            .as_ref()
            .map(|record| record.record.local_folder.display().to_string())
            .filter(|folder| !folder.is_empty()),
        agent_running: agent.is_some(),
        agent_error: agent_error.as_deref(),
        instance: located.instance.as_ref(),
        agent: agent.as_ref(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Some(0));
    }
    println!("workspace         {name}");
    println!("provider          aws ({})", located.aws.region);
    println!("owner             {}", located.owner);
    if let Some(folder) = &report.folder {
        println!("folder            {folder}");
    }
    match &located.instance {
        Some(instance) => {
            println!(
                "instance          {} {} ({}, {})",
                instance.instance_id,
                instance.state,
                instance.instance_type,
                instance.availability_zone.as_deref().unwrap_or("?")
            );
            if let Some(ip) = &instance.private_ip {
                println!("private address   {ip}");
            }
            if let Some(dns) = &instance.dns_name {
                println!("dns name          {}", dns.trim_end_matches('.'));
            }
            if let Some(launched) = &instance.launched {
                println!("launched          {launched}");
            }
        }
        None => println!("instance          none (`skiff up` launches one)"),
    }
    match (&agent, &agent_error) {
        (Some(status), _) => crate::commands::status::print_agent(status),
        (None, Some(error)) => println!("agent             unreachable: {error}"),
        (None, None) => {}
    }
    Ok(Some(0))
}

/// `skiff stop NAME` for an AWS workspace: stops the instance, whose disk stays. With `owner`, another person's
/// workspace (an operator's, allowed by `aws-policy --admin` only).
pub async fn stop(name: &str, owner: Option<&str>) -> anyhow::Result<Option<i32>> {
    let Some(located) = locate_owned(name, owner).await? else {
        if let Some(owner) = owner {
            anyhow::bail!("no AWS workspace {name} of {owner} in the configured regions");
        }
        return Ok(None);
    };
    let Some(instance) = &located.instance else {
        eprintln!("workspace {name} has no instance on AWS; nothing to stop");
        return Ok(Some(0));
    };
    if let Some(record) = &located.record {
        super::connect::stop_daemon(record).await;
    }
    let progress = Progress::new();
    let stopped = located.aws.stop(instance, &progress).await?;
    progress.finish();
    eprintln!(
        "stopped workspace {name} (instance {}); its disk stays, `skiff up` starts it again",
        stopped.instance_id
    );
    Ok(Some(0))
}

/// `skiff delete NAME` for an AWS workspace: terminates it, removes its security group, its DNS record and its
/// local record. skiff's IAM role stays: only `skiff aws-setup --remove`, by an IAM administrator, removes it.
/// With `owner`, another person's workspace (an operator's clean-up, allowed by `aws-policy --admin` only).
pub async fn delete(
    name: &str,
    yes: bool,
    owner: Option<&str>,
    tunnel: crate::cli::TunnelChoice,
) -> anyhow::Result<Option<i32>> {
    let Some(located) = locate_owned(name, owner).await? else {
        if let Some(owner) = owner {
            anyhow::bail!("no AWS workspace {name} of {owner} in the configured regions");
        }
        return Ok(None);
    };
    // The workspace's files live on the instance: work there that exists nowhere else (uncommitted changes,
    // unpushed commits) goes with it, so it is checked first, through the tunnel.
    let mut confirmed = false;
    if let Some(record) = &located.record
        && let Some(instance) = &located.instance
        && record
            .record
            .aws
            .as_ref()
            .is_some_and(|placement| placement.files_folder.is_some())
    {
        use crate::files::DeleteDecision;
        if instance.state != "running" {
            if !yes {
                eprintln!(
                    "workspace {name} is {}, so its files on the instance cannot be checked for work that is nowhere else; `skiff up` it to check, or pass --yes to delete it anyway",
                    instance.state
                );
                return Ok(Some(1));
            }
        } else {
            match super::connect::agent(record, tunnel).await {
                Ok(mut client) => {
                    match crate::files::check_before_delete(&mut client, name, yes).await? {
                        DeleteDecision::Refused => return Ok(Some(1)),
                        DeleteDecision::Confirmed => confirmed = true,
                        DeleteDecision::NothingToLose => {}
                    }
                }
                Err(error) if !yes => {
                    eprintln!(
                        "could not check workspace {name}'s files for work that is nowhere else ({error:#}); pass --yes to delete it anyway"
                    );
                    return Ok(Some(1));
                }
                Err(_) => {}
            }
        }
    }
    if !yes && !confirmed && std::io::stdin().is_terminal() {
        eprint!(
            "Delete workspace {name} (instance {} in {}, its disk and security group)? [y/N] ",
            located
                .instance
                .as_ref()
                .map_or("none", |instance| instance.instance_id.as_str()),
            located.aws.region
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            eprintln!("kept workspace {name}");
            return Ok(Some(1));
        }
    }
    let progress = Progress::new();
    let deleted = located.aws.delete(name, &located.owner, &progress).await?;
    let (instances, groups) = (&deleted.instances, deleted.groups);
    progress.finish();
    if let Some(record) = located.record {
        super::connect::stop_daemon(&record).await;
        record.remove()?;
    }
    let records: String = deleted
        .records
        .iter()
        .map(|record| format!(", DNS record {record} removed"))
        .collect();
    eprintln!(
        "deleted workspace {name} ({} instance{} terminated, {groups} security group{} removed{records})",
        instances.len(),
        if instances.len() == 1 { "" } else { "s" },
        if groups == 1 { "" } else { "s" },
    );
    Ok(Some(0))
}

/// `skiff logs NAME --boot`: the instance's serial console, where user-data reports its progress.
pub async fn boot_log(name: &str) -> anyhow::Result<i32> {
    let located = locate(name).await?.with_context(|| {
        format!("workspace {name} is not on AWS; --boot shows an AWS instance's boot, leave it out for the container's output")
    })?;
    let instance = located.instance.with_context(|| {
        format!("workspace {name} has no instance on AWS; `skiff up` launches one")
    })?;
    let output = located.aws.console_output(&instance.instance_id).await?;
    if output.trim().is_empty() {
        eprintln!(
            "instance {} has no console output yet (EC2 makes it available a few minutes after boot)",
            instance.instance_id
        );
    }
    print!("{output}");
    std::io::stdout().flush()?;
    Ok(0)
}

/// `skiff enroll NAME`: makes this machine a client of a workspace made elsewhere: your own, or with `operator`
/// (the operator policy of `aws-policy --admin`) anyone's, named by `owner`. The owner is checked here before
/// anything is sent, and by AWS again (the developer's policy allows Run Command only on the caller's instances).
pub async fn enroll(
    name: &str,
    owner: Option<&str>,
    operator: bool,
    region: Option<&str>,
    profile: Option<&str>,
) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    if let Ok(existing) = store.get(name) {
        anyhow::bail!(
            "this machine already has workspace {name} ({}); nothing to enroll",
            existing.record.provider
        );
    }
    let options = AwsOptions {
        region: region.map(str::to_owned),
        profile: profile.map(str::to_owned),
        ..AwsOptions::default()
    };
    let settings = AwsSettings::resolve(store.root(), &options)?;
    let region = settings.region_or_error()?;
    let aws = Aws::connect(&region, settings.profile()).await?;
    let caller = aws.caller().await?;
    let owner = match owner {
        Some(owner) if owner != caller.user_id && !operator => anyhow::bail!(
            "workspace {name} of {owner} is not yours ({}): only its owner enrolls machines into it, or an operator with `--operator` (the policy of `skiff aws-policy --admin`)",
            caller.user_id
        ),
        Some(owner) => owner.to_owned(),
        None => caller.user_id.clone(),
    };
    let instance = aws.find(name, &owner).await?.with_context(|| {
        format!(
            "no workspace {name} of {owner} in {region}; `skiff list --all` shows everyone's, pass --owner USERID or --region REGION"
        )
    })?;
    if instance.owner != owner {
        anyhow::bail!(
            "instance {} of workspace {name} belongs to {:?}, not {owner}; skiff sends it nothing",
            instance.instance_id,
            instance.owner
        );
    }
    if instance.state != "running" {
        anyhow::bail!(
            "workspace {name}'s instance {} is {}; Run Command needs it running: `skiff up` it from its first machine, then enroll again",
            instance.instance_id,
            instance.state
        );
    }
    let workspace = store.create(WorkspaceRecord {
        name: name.to_owned(),
        provider: ProviderKind::Aws,
        local_folder: std::path::PathBuf::new(),
        config_file: std::path::PathBuf::new(),
        idle_timeout: "30m".into(),
        aws: Some(AwsPlacement {
            region: region.clone(),
            instance_id: Some(instance.instance_id.clone()),
            owner: owner.clone(),
            profile: settings.profile.clone(),
            files_folder: None,
        }),
    })?;
    let certificate = workspace.identity()?.certificate_pem;
    let result = async {
        let script = super::enroll::enroll_script(&certificate)?;
        aws.run_shell_script(&instance.instance_id, name, &script)
            .await
    }
    .await;
    let command_id = match result {
        Ok(command_id) => command_id,
        Err(error) => {
            let _ = workspace.remove();
            return Err(error);
        }
    };
    eprintln!(
        "enrolled this machine in workspace {name} (instance {} in {region}): Run Command {command_id} adds {} to its agent's trusted clients within seconds; `skiff status {name}` shows the agent once it has",
        instance.instance_id,
        super::enroll::certificate_file_name(&certificate)
    );
    Ok(0)
}

/// `skiff provider aws …`: saves the options (merged into what was saved), checks them, and shows them.
pub async fn provider(args: &ProviderAwsArgs) -> anyhow::Result<i32> {
    let store = Store::open_default()?;
    let home = store.root();
    let saved = if args.reset {
        AwsSettings::default()
    } else {
        AwsSettings::load(home)?.unwrap_or_default()
    };
    let mut given = AwsSettings::from_options(&args.options)?;
    given.list_regions.clone_from(&args.list_regions);
    let settings = saved.overlay(given);
    let region = settings.region_or_error()?;
    for region in std::iter::once(&region).chain(&settings.list_regions) {
        let aws = Aws::connect(region, settings.profile()).await?;
        aws.check_region().await?;
    }
    let aws = Aws::connect(&region, settings.profile()).await?;
    let caller = aws.caller().await?;
    let caller = format!("{} (owner id {})", caller.arn, caller.user_id);
    if let Some(instance_type) = &settings.instance_type {
        aws.instance_type(instance_type).await?;
    }
    if !args.show {
        settings.save(home)?;
    }
    println!("{}", toml::to_string(&settings)?.trim_end());
    eprintln!(
        "{} {} as {caller}; new workspaces go to AWS unless `skiff up --provider local`",
        if args.show {
            "AWS settings in"
        } else {
            "saved AWS settings to"
        },
        AwsSettings::path(home).display()
    );
    Ok(0)
}
