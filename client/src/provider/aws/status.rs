//! What AWS says about workspaces: `list` (every configured region's skiff-tagged instances), `status` (the
//! instance, and its agent when this machine can ask it) and `logs --boot` (the instance's serial console).

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;

use super::Aws;
use super::config::{AwsOptions, AwsSettings};
use super::lifecycle::InstanceSummary;
use super::locate::{self, Located};
use crate::workspace::{ProviderKind, Store, Workspace};

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
    /// The root volume's size in GiB, when the instance says (its `skiff:volume-gib` tag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_gib: Option<i32>,
    /// What the volume costs a month at gp3's price, when the laptop has that price from the last day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_usd_month: Option<f64>,
    /// The instance type's hourly on-demand price, when the laptop has it from the last day.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_demand_hourly_usd: Option<f64>,
    /// What this month cost so far (compute at the on-demand price, and the disk), when the prices are cached:
    /// from the ledger's last reading this machine kept (`status` keeps one) and the run EC2 reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month_to_date_usd: Option<f64>,
    /// Whether that is the whole month so far; false: at least that much (runs this machine was not told of are
    /// missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub month_to_date_whole: Option<bool>,
}

/// The AWS workspaces: every configured region's skiff-tagged instances (yours, or everyone's with `all`),
/// and local AWS records that AWS no longer knows (state `not-found`). Regions that fail are warned about.
/// Each with when it stopped, for a stopped instance.
pub(crate) async fn list(all: bool) -> anyhow::Result<Vec<(ListRow, Option<i64>)>> {
    let store = Store::open_default()?;
    if !locate::aws_in_use(&store) {
        return Ok(Vec::new());
    }
    let settings = AwsSettings::resolve(store.root(), &AwsOptions::default())?;
    let records: Vec<Workspace> = store
        .all()?
        .into_iter()
        .filter(|workspace| workspace.record.provider == ProviderKind::Aws)
        .collect();
    let lookups = locate::regions(&settings, &store)
        .into_iter()
        .map(|region| {
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
                // This machine's record of the workspace, if it has one: its folder, and the agent's last reading.
                let record = records.iter().find(|record| {
                    record.name() == instance.workspace
                        && record
                            .record
                            .aws
                            .as_ref()
                            .is_some_and(|placement| placement.owner == instance.owner)
                });
                let folder = record
                    .map(|record| record.record.local_folder.display().to_string())
                    .filter(|folder| !folder.is_empty());
                let storage_usd_month = instance.volume_gib.and_then(|gib| {
                    super::price::cached_gp3(&instance.region).map(|price| price * f64::from(gib))
                });
                let on_demand_hourly_usd =
                    super::price::cached_on_demand(&instance.region, &instance.instance_type);
                let reading = record.and_then(|record| crate::usage::Reading::last(&record.folder));
                let now = skiff::calendar::now_unix();
                let ran = crate::usage::running_this_month(
                    reading.as_ref(),
                    &crate::usage::Machine {
                        running: instance.state == "running",
                        started_unix: instance.started_unix,
                        stopped_unix: instance.stopped_since,
                        created_unix: instance.volume_since,
                    },
                    now,
                );
                let storage_so_far = match (instance.volume_gib, instance.volume_since) {
                    (Some(gib), Some(since)) => super::price::cached_gp3(&instance.region)
                        .map(|price| super::price::storage_so_far(price, gib, since, now)),
                    _ => None,
                };
                let month_to_date_usd = on_demand_hourly_usd
                    .zip(storage_so_far)
                    .map(|(hourly, storage)| hourly * ran.seconds as f64 / 3_600.0 + storage);
                (
                    ListRow {
                        name: instance.workspace,
                        state: instance.state,
                        region: instance.region,
                        instance_id: Some(instance.instance_id),
                        instance_type: Some(instance.instance_type),
                        owner: instance.owner,
                        folder,
                        volume_gib: instance.volume_gib,
                        storage_usd_month,
                        on_demand_hourly_usd,
                        month_to_date_whole: month_to_date_usd.map(|_| ran.whole),
                        month_to_date_usd,
                    },
                    instance.stopped_since,
                )
            })),
            Err(error) => eprintln!("warning: listing AWS workspaces in {region}: {error:#}"),
        }
    }
    for record in &records {
        let Some(placement) = &record.record.aws else {
            continue;
        };
        let seen = rows.iter().any(|(row, _)| {
            row.name == record.name()
                && row.owner == placement.owner
                && row.region == placement.region
        });
        if !seen {
            rows.push((
                ListRow {
                    name: record.name().to_owned(),
                    state: "not-found".into(),
                    region: placement.region.clone(),
                    instance_id: placement.instance_id.clone(),
                    instance_type: None,
                    owner: placement.owner.clone(),
                    folder: Some(record.record.local_folder.display().to_string())
                        .filter(|folder| !folder.is_empty()),
                    volume_gib: None,
                    storage_usd_month: None,
                    on_demand_hourly_usd: None,
                    month_to_date_usd: None,
                    month_to_date_whole: None,
                },
                None,
            ));
        }
    }
    rows.sort_by(|(left, _), (right, _)| {
        (&left.name, &left.owner).cmp(&(&right.name, &right.owner))
    });
    Ok(rows)
}

/// How long `status` waits for the agent of a running instance before reporting it unreachable.
const STATUS_AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `skiff status NAME` for an AWS workspace. The instance comes from EC2; when it runs
/// and this machine holds the workspace's keys, the agent is asked too, through the warm tunnel, and what stops
/// it answering is reported rather than failing the command.
pub(crate) async fn status(
    located: Located,
    name: &str,
    json: bool,
    tunnel: crate::cli::TunnelChoice,
) -> anyhow::Result<i32> {
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
                Ok(Ok(status)) => {
                    // `list` prices the month from the last reading this machine kept.
                    if let Some(usage) = &status.usage {
                        crate::usage::Reading::keep(
                            &record.folder,
                            usage,
                            skiff::calendar::now_unix(),
                        );
                    }
                    (Some(status), None)
                }
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
        /// Stopped by EC2 to reclaim spot capacity (see `spot`), not by skiff or its idle timeout.
        interrupted: bool,
        /// What compute cost this month, from the agent's ledger and the instance type's price.
        #[serde(skip_serializing_if = "Option::is_none")]
        compute_cost_this_month: Option<ComputeCost>,
        /// What the root volume cost this month, from its size and gp3's price; billed running or stopped.
        #[serde(skip_serializing_if = "Option::is_none")]
        storage_cost_this_month: Option<StorageCost>,
        #[serde(flatten)]
        agent: Option<&'a skiff::api::Status>,
    }
    // One quote serves both figures; a stopped workspace (no agent) still has its disk's.
    let quote = match &located.instance {
        Some(instance) => Some(
            located
                .aws
                .quote_in_time(&instance.instance_type, instance.spot_request.is_some())
                .await,
        ),
        None => None,
    };
    let storage_cost_this_month = match (&located.instance, &quote) {
        (Some(instance), Some(quote)) => match (instance.volume_gib, instance.volume_since) {
            (Some(gib), Some(since)) => quote
                .storage_this_month(gib, since, skiff::calendar::now_unix())
                .map(|usd| StorageCost {
                    usd,
                    gib,
                    gib_month_usd: quote.gp3_gib_month.unwrap_or_default(),
                }),
            _ => None,
        },
        _ => None,
    };
    let compute_cost_this_month = match (
        &located.instance,
        agent.as_ref().and_then(|status| status.usage),
        &quote,
    ) {
        (Some(instance), Some(usage), Some(quote)) => {
            let spot = instance.spot_request.is_some();
            quote.hourly(spot).map(|hourly| ComputeCost {
                usd: hourly * usage.running_seconds as f64 / 3_600.0,
                hourly_usd: hourly,
                basis: if spot && quote.spot_hourly.is_some() {
                    "today's spot price"
                } else {
                    "the on-demand price"
                },
            })
        }
        _ => None,
    };
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
        interrupted: located
            .instance
            .as_ref()
            .is_some_and(InstanceSummary::interrupted),
        compute_cost_this_month,
        storage_cost_this_month,
        agent: agent.as_ref(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
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
            if let Some(request) = &instance.spot_request {
                println!("spot request      {request}");
            }
            if instance.interrupted() {
                println!(
                    "interrupted       stopped by EC2 to reclaim spot capacity; EC2 starts it again when capacity returns"
                );
            }
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
        (Some(status), _) => crate::provider::print_agent(status),
        (None, Some(error)) => println!("agent             unreachable: {error}"),
        (None, None) => {}
    }
    if let Some(cost) = &report.compute_cost_this_month {
        println!(
            "compute cost      ≈ ${:.2} this month (at ${:.4}/hour, {})",
            cost.usd, cost.hourly_usd, cost.basis
        );
    }
    if let Some(cost) = &report.storage_cost_this_month {
        println!(
            "storage cost      ≈ ${:.2} this month ({} GiB gp3 at ${:.3}/GiB-month, running or stopped)",
            cost.usd, cost.gib, cost.gib_month_usd
        );
    }
    if let (Some(compute), Some(storage)) = (
        &report.compute_cost_this_month,
        &report.storage_cost_this_month,
    ) {
        println!("cost this month   ≈ ${:.2}", compute.usd + storage.usd);
    }
    Ok(0)
}

/// What the root volume cost this month: its size at gp3's monthly price, for the part of the month it existed.
#[derive(Debug, Clone, serde::Serialize)]
struct StorageCost {
    usd: f64,
    gib: i32,
    gib_month_usd: f64,
}

/// What the hours the machine ran this month cost at the instance type's hourly price.
#[derive(Debug, Clone, serde::Serialize)]
struct ComputeCost {
    usd: f64,
    hourly_usd: f64,
    basis: &'static str,
}

/// `skiff logs NAME --boot`: the instance's serial console, where user-data reports its progress.
pub(crate) async fn boot_log(located: Located, name: &str) -> anyhow::Result<i32> {
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
