//! A workspace's life on EC2, read from and written to AWS by its tags: `up` (find, else check every input and
//! create; start a stopped one), `stop`, `delete` (terminate, then the security group if it is ours, and
//! its DNS record), `list` (paginated, every configured region) and `status`.
//!
//! A workspace is its name plus its owner (`skiff:owner`, the caller's `aws:userid`), so two people's `app` never
//! collide. Every tag is written by the call that creates the resource (tag specifications), never afterwards: the
//! developer's policy allows no other tagging. An instance found by its tags is used only once it is known to be
//! this workspace's own launch (its id is in the local record, or its client token is the one this record
//! makes): tags say whose a workspace claims to be, the token that this machine's key launched it.
//!
//! Creation is idempotent: the instance is looked up by tag before anything is made, the security group's name is unique per workspace and owner, and RunInstances carries a client token that stays the same
//! for every retry of one launch.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::Instance;
use skiff::devcontainer::HostRequirements;

use super::ami::Architecture;
use super::config::{AwsSettings, DEFAULT_VOLUME_GIB};
use super::launch::LaunchSpec;
use super::network::NetworkRequest;
use super::user_data::{self, UserDataSpec};
use super::{Aws, TAG_OWNER, TAG_WORKSPACE, abort_point, aws_error, filter};
use crate::progress::Progress;

/// How long an instance may take to reach `running` (or `stopped`) before skiff says why it waits.
pub const STATE_TIMEOUT: Duration = Duration::from_secs(600);

/// One workspace's instance, as AWS reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstanceSummary {
    pub workspace: String,
    pub owner: String,
    pub region: String,
    pub instance_id: String,
    pub state: String,
    pub instance_type: String,
    pub image_id: String,
    pub availability_zone: Option<String>,
    pub private_ip: Option<String>,
    pub launched: Option<String>,
    /// The same, in seconds since the epoch: the instance's last start.
    #[serde(skip)]
    pub started_unix: Option<i64>,
    /// The root volume's size in GiB, from the tag `up` launched it with (absent on older instances).
    pub volume_gib: Option<i32>,
    /// When the root volume was attached (seconds since the epoch): at launch, kept across stops and starts, so
    /// the start of the disk's bill.
    pub volume_since: Option<i64>,
    /// When a stopped instance stopped (seconds since the epoch), from EC2's state transition reason.
    pub stopped_since: Option<i64>,
    /// The workspace's DNS record, if it has one (see `dns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// The hosted zone of that record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_zone: Option<String>,
    /// The client token of the RunInstances call that launched it.
    #[serde(skip)]
    pub client_token: Option<String>,
    /// The spot request that launched it, for a `--spot` workspace (see `spot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spot_request: Option<String>,
    /// Whether it is a spot instance (`InstanceLifecycle`), with or without a request AWS names.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub spot: bool,
    /// Why it last changed state, as EC2 says (`StateReason.Code`): tells an interrupted spot instance from a stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
}

/// What `up` needs besides the settings.
#[derive(Debug, Clone)]
pub struct UpRequest<'a> {
    pub workspace: &'a str,
    /// The caller's `aws:userid`: the `skiff:owner` tag.
    pub owner: &'a str,
    /// The caller's ARN: the informational `skiff:owner-arn` tag and the DNS record's name.
    pub owner_arn: &'a str,
    pub settings: &'a AwsSettings,
    /// The team's file of the region (its rules are checked before a launch); empty without one.
    pub team: &'a super::team::Team,
    pub host_requirements: Option<&'a HostRequirements>,
    pub idle_timeout: &'a str,
    pub client_certificate: &'a str,
    /// A local `skiffd` for the instance's architecture: hashed for `--agent-url`, pushed without one.
    pub agent_binary: Option<&'a Path>,
    /// The instance the local record remembers, if one was launched before: a launch after it vanished needs a
    /// new client token, because EC2 answers a reused token with the old (terminated) instance.
    pub previous_instance: Option<&'a str>,
    /// Set to the new instance's id as soon as RunInstances returns, whatever fails after it.
    pub launched: &'a std::sync::OnceLock<String>,
}

/// What `delete` removed.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    /// The terminated instances.
    pub instances: Vec<String>,
    /// The spot requests cancelled.
    pub spot_requests: Vec<String>,
    /// How many security groups were removed.
    pub groups: usize,
    /// The DNS records removed.
    pub records: Vec<String>,
}

/// What `up` did.
#[derive(Debug, Clone)]
pub struct UpOutcome {
    pub instance: InstanceSummary,
    /// True if this run launched the instance, false if it found (and maybe started) one.
    pub created: bool,
    /// The binary the client must push to user-data's receiver, when the instance does not download it.
    pub push: Option<std::path::PathBuf>,
}

fn tag_value(instance: &Instance, key: &str) -> Option<String> {
    instance
        .tags
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|tag| tag.key.as_deref() == Some(key))
        .and_then(|tag| tag.value.clone())
}

/// When the instance's root volume was attached, in seconds since the epoch.
fn root_volume_attached(instance: &Instance) -> Option<i64> {
    let root = instance.root_device_name.as_deref()?;
    instance
        .block_device_mappings
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|mapping| mapping.device_name.as_deref() == Some(root))
        .and_then(|mapping| mapping.ebs.as_ref())
        .and_then(|ebs| ebs.attach_time)
        .map(|time| time.secs())
}

fn summary(instance: &Instance, region: &str) -> InstanceSummary {
    InstanceSummary {
        workspace: tag_value(instance, TAG_WORKSPACE).unwrap_or_default(),
        owner: tag_value(instance, TAG_OWNER).unwrap_or_default(),
        region: region.to_owned(),
        instance_id: instance.instance_id.clone().unwrap_or_default(),
        state: instance
            .state
            .as_ref()
            .and_then(|state| state.name.as_ref())
            .map(|name| name.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into()),
        instance_type: instance
            .instance_type
            .as_ref()
            .map(|kind| kind.as_str().to_owned())
            .unwrap_or_default(),
        image_id: instance.image_id.clone().unwrap_or_default(),
        availability_zone: instance
            .placement
            .as_ref()
            .and_then(|placement| placement.availability_zone.clone()),
        private_ip: instance.private_ip_address.clone(),
        launched: instance.launch_time.map(|time| time.to_string()),
        started_unix: instance.launch_time.map(|time| time.secs()),
        volume_gib: tag_value(instance, super::launch::TAG_VOLUME_GIB)
            .and_then(|size| size.parse().ok()),
        volume_since: root_volume_attached(instance),
        stopped_since: instance
            .state
            .as_ref()
            .and_then(|state| state.name.as_ref())
            .filter(|name| name.as_str() == "stopped")
            .and(instance.state_transition_reason.as_deref())
            .and_then(skiff::calendar::find_utc_timestamp),
        dns_name: tag_value(instance, super::dns::TAG_DNS_NAME),
        dns_zone: tag_value(instance, super::dns::TAG_DNS_ZONE),
        client_token: instance.client_token.clone(),
        spot_request: instance.spot_instance_request_id.clone(),
        spot: instance
            .instance_lifecycle
            .as_ref()
            .map(|lifecycle| lifecycle.as_str())
            == Some("spot")
            || instance.spot_instance_request_id.is_some(),
        state_reason: instance
            .state_reason
            .as_ref()
            .and_then(|reason| reason.code.clone()),
    }
}

impl Aws {
    /// Live (not terminated) skiff instances, optionally of one workspace and one owner, across every page.
    pub async fn instances(
        &self,
        workspace: Option<&str>,
        owner: Option<&str>,
    ) -> anyhow::Result<Vec<InstanceSummary>> {
        let mut request = self.ec2.describe_instances().filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build(),
        );
        request = match workspace {
            Some(workspace) => request.filters(filter(&format!("tag:{TAG_WORKSPACE}"), workspace)),
            None => request.filters(filter("tag-key", TAG_WORKSPACE)),
        };
        if let Some(owner) = owner {
            request = request.filters(filter(&format!("tag:{TAG_OWNER}"), owner));
        }
        // No MaxResults: AWS pages as it likes (moto by 100 reservations), and every NextToken is followed.
        let mut pages = request.into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| {
                aws_error(
                    &format!("listing skiff instances in {}", self.region),
                    &error,
                )
            })?;
            for reservation in page.reservations.unwrap_or_default() {
                for instance in reservation.instances.unwrap_or_default() {
                    found.push(summary(&instance, &self.region));
                }
            }
        }
        found.sort_by(|left, right| {
            (
                left.workspace.as_str(),
                left.owner.as_str(),
                left.instance_id.as_str(),
            )
                .cmp(&(
                    right.workspace.as_str(),
                    right.owner.as_str(),
                    right.instance_id.as_str(),
                ))
        });
        Ok(found)
    }

    /// The workspace's instance, if it has a live one.
    pub async fn find(
        &self,
        workspace: &str,
        owner: &str,
    ) -> anyhow::Result<Option<InstanceSummary>> {
        let mut found = self.instances(Some(workspace), Some(owner)).await?;
        if found.len() > 1 {
            // Never expected (creation is idempotent), but if it happens the oldest one is the workspace and
            // the user hears about the others rather than having them run unseen.
            found.sort_by(|left, right| left.launched.cmp(&right.launched));
            eprintln!(
                "warning: workspace {workspace} has {} instances ({}); skiff uses {}; `skiff delete {workspace}` removes them all",
                found.len(),
                found
                    .iter()
                    .map(|instance| instance.instance_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                found[0].instance_id
            );
        }
        Ok(found.into_iter().next())
    }

    /// One instance by id, whatever its state.
    pub async fn describe(&self, instance_id: &str) -> anyhow::Result<Option<InstanceSummary>> {
        let output = self
            .ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await;
        match output {
            Ok(output) => Ok(output
                .reservations
                .unwrap_or_default()
                .into_iter()
                .flat_map(|reservation| reservation.instances.unwrap_or_default())
                .next()
                .map(|instance| summary(&instance, &self.region))),
            Err(error)
                if super::error_code(&error)
                    .is_some_and(|code| code.starts_with("InvalidInstanceID")) =>
            {
                Ok(None)
            }
            Err(error) => Err(aws_error(
                &format!("looking up instance {instance_id}"),
                &error,
            )),
        }
    }

    /// Polls until the instance is in one of `wanted`, showing progress; a timeout names the likely cause.
    pub async fn wait_for(
        &self,
        instance_id: &str,
        wanted: &[&str],
        progress: &Progress,
    ) -> anyhow::Result<InstanceSummary> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            let instance = self.describe(instance_id).await?.ok_or_else(|| {
                anyhow::anyhow!("instance {instance_id} disappeared while skiff waited for it")
            })?;
            if wanted.contains(&instance.state.as_str()) {
                return Ok(instance);
            }
            if instance.state == "terminated" || instance.state == "shutting-down" {
                anyhow::bail!(
                    "instance {instance_id} is {} while skiff waited for {}; see `skiff logs {} --boot` and the EC2 console's state reason",
                    instance.state,
                    wanted.join(" or "),
                    instance.workspace
                );
            }
            if started.elapsed() > STATE_TIMEOUT {
                anyhow::bail!(
                    "instance {instance_id} is still {} after {} minutes; it may lack capacity in {} or its AMI may not boot; see the EC2 console",
                    instance.state,
                    STATE_TIMEOUT.as_secs() / 60,
                    instance.availability_zone.as_deref().unwrap_or("its zone")
                );
            }
            progress.step(&format!(
                "instance {instance_id} is {}, waiting for {}",
                instance.state,
                wanted.join(" or ")
            ));
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Starts a stopped instance and waits until it runs.
    pub async fn start(
        &self,
        instance: &InstanceSummary,
        progress: &Progress,
    ) -> anyhow::Result<InstanceSummary> {
        let mut instance = instance.clone();
        if instance.state == "stopping" {
            instance = self
                .wait_for(&instance.instance_id, &["stopped"], progress)
                .await?;
        }
        if instance.interrupted() {
            // Only EC2 starts an interrupted spot instance again; StartInstances would only be refused.
            let status = self.spot_status(&instance).await;
            return Err(super::spot::interrupted_error(&instance, status.as_ref()));
        }
        if instance.state == "stopped" {
            progress.step(&format!("starting instance {}", instance.instance_id));
            self.ec2
                .start_instances()
                .instance_ids(&instance.instance_id)
                .send()
                .await
                .map_err(|error| {
                    aws_error(
                        &format!("starting instance {}", instance.instance_id),
                        &error,
                    )
                })?;
        }
        self.wait_for(&instance.instance_id, &["running"], progress)
            .await
    }

    /// Stops the instance (its disk stays) and waits until it is stopped.
    pub async fn stop(
        &self,
        instance: &InstanceSummary,
        progress: &Progress,
    ) -> anyhow::Result<InstanceSummary> {
        if instance.state == "stopped" {
            return Ok(instance.clone());
        }
        if instance.state == "pending" {
            self.wait_for(&instance.instance_id, &["running"], progress)
                .await?;
        }
        progress.step(&format!("stopping instance {}", instance.instance_id));
        self.ec2
            .stop_instances()
            .instance_ids(&instance.instance_id)
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!("stopping instance {}", instance.instance_id),
                    &error,
                )
            })?;
        self.wait_for(&instance.instance_id, &["stopped"], progress)
            .await
    }

    /// Terminates every instance of the workspace, waits, and removes its security group and DNS record.
    /// Returns the terminated instance ids, the number of groups removed and the DNS records removed.
    pub async fn delete(
        &self,
        workspace: &str,
        owner: &str,
        progress: &Progress,
    ) -> anyhow::Result<Deleted> {
        let instances = self.instances(Some(workspace), Some(owner)).await?;
        let ids: Vec<String> = instances
            .iter()
            .map(|instance| instance.instance_id.clone())
            .collect();
        // A persistent spot request left open would launch a new instance for the one terminated: cancelled first.
        // Asked only for a spot workspace: an on-demand one's delete needs no spot permission.
        let requests = if instances.iter().any(|instance| instance.spot) {
            self.spot_requests(workspace, owner, &instances).await?
        } else {
            Vec::new()
        };
        if !requests.is_empty() {
            progress.step(&format!("cancelling spot request {}", requests.join(", ")));
            self.cancel_spot_requests(&requests).await?;
        }
        if !ids.is_empty() {
            progress.step(&format!("terminating {}", ids.join(", ")));
            self.ec2
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .map_err(|error| aws_error(&format!("terminating {}", ids.join(", ")), &error))?;
            for id in &ids {
                self.wait_for(id, &["terminated"], progress).await?;
            }
        }
        progress.step(&format!("removing workspace {workspace}'s security group"));
        let groups = self
            .delete_workspace_groups(workspace, owner, Duration::from_secs(300))
            .await?;
        let mut records = Vec::new();
        for instance in &instances {
            if let (Some(zone), Some(name), Some(address)) =
                (&instance.dns_zone, &instance.dns_name, &instance.private_ip)
            {
                progress.step(&format!("removing the DNS record {name}"));
                if self.dns_remove(zone, name, address).await? {
                    records.push(name.clone());
                }
            }
        }
        Ok(Deleted {
            instances: ids,
            spot_requests: requests,
            groups,
            records,
        })
    }

    /// What the instance wrote to its serial console (user-data's progress), decoded.
    pub async fn console_output(&self, instance_id: &str) -> anyhow::Result<String> {
        let output = self
            .ec2
            .get_console_output()
            .instance_id(instance_id)
            .latest(true)
            .send()
            .await
            .map_err(|error| aws_error(&format!("reading the console of {instance_id}"), &error))?;
        let Some(encoded) = output.output else {
            return Ok(String::new());
        };
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_else(|_| encoded.into_bytes());
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// Brings the workspace's instance to `running`: finds it (starting it if stopped), or checks every input and
/// launches it. Nothing is created until every input has been checked.
pub async fn up(
    aws: &Aws,
    request: &UpRequest<'_>,
    progress: &Progress,
) -> anyhow::Result<UpOutcome> {
    // The region first: every other call goes to it.
    aws.check_region().await?;
    progress.step(&format!(
        "looking for workspace {} in {}",
        request.workspace, aws.region
    ));
    if let Some(existing) = aws.find(request.workspace, request.owner).await? {
        check_launched_here(aws, request, &existing)?;
        let instance = match existing.state.as_str() {
            "running" => existing,
            "pending" => {
                aws.wait_for(&existing.instance_id, &["running"], progress)
                    .await?
            }
            _ => aws.start(&existing, progress).await?,
        };
        let zone = match &request.settings.dns_zone {
            Some(given) => Some(aws.dns_zone(given).await?),
            None => None,
        };
        let instance = keep_dns(aws, request, zone, instance, progress).await?;
        return Ok(UpOutcome {
            instance,
            created: false,
            push: None,
        });
    }

    // A workspace launched by a skiff from before owners were `aws:userid` carries the caller's ARN as owner: the
    // developer policy cannot reach it, and launching another beside it would leave it costing unseen.
    if let Some(older) = aws.find(request.workspace, request.owner_arn).await? {
        anyhow::bail!("{}", older_owner_message(request.workspace, &older));
    }

    // Check every input before making anything.
    let settings = request.settings;
    progress.step("checking the instance type, image and network");
    let instance_type = settings
        .instance_type
        .clone()
        .unwrap_or_else(|| super::ami::instance_type_for(request.host_requirements).to_owned());
    let volume_gib = settings.volume_size.unwrap_or(DEFAULT_VOLUME_GIB);
    request.team.check_launch(&super::team::Launch {
        instance_type: &instance_type,
        volume_gib,
        tags: &settings.tags,
        idle_timeout: request.idle_timeout,
    })?;
    let info = aws.instance_type(&instance_type).await?;
    let image = aws
        .image(settings.ami.as_deref(), info.architecture)
        .await?;
    let placement = aws
        .placement(&NetworkRequest {
            subnet: settings.subnet.as_deref(),
            vpc: settings.vpc.as_deref(),
            availability_zone: settings.availability_zone.as_deref(),
        })
        .await?;
    let confirm_above = settings.confirm_above_usd()?;
    if !(8..=16384).contains(&volume_gib) {
        anyhow::bail!("--volume-size {volume_gib}: give a root volume size in GiB from 8 to 16384");
    }
    let agent = agent_source(settings, request.agent_binary, info.architecture)?;
    let zone = match &settings.dns_zone {
        Some(given) => Some(aws.dns_zone(given).await?),
        None => None,
    };
    let ecr_registry = if settings.ecr {
        let account = request.owner_arn.split(':').nth(4).unwrap_or_default();
        Some(user_data::ecr_registry(account, &aws.region)?)
    } else {
        None
    };
    let script = user_data::render(&UserDataSpec {
        ecr_registry: ecr_registry.as_deref(),
        workspace: request.workspace,
        idle_timeout: request.idle_timeout,
        agent_url: agent.url.as_deref(),
        agent_sha256: &agent.sha256,
        client_certificate: request.client_certificate,
    })?;

    // The price before anything is paid for; a price that cannot be had is said, never a failure.
    let quote = aws.quote_in_time(&instance_type, settings.spot).await;
    progress.line(&quote.describe(volume_gib, settings.spot));
    if let (Some(limit), Some(hourly)) = (confirm_above, quote.hourly(settings.spot))
        && hourly > limit
        && !settings.yes
    {
        let question = format!(
            "{instance_type} costs ${hourly:.4}/hour, above your confirm-above of ${limit:.2}. Launch it?"
        );
        use std::io::IsTerminal as _;
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "{instance_type} costs ${hourly:.4}/hour in {}, above your confirm-above of ${limit:.2}; nothing was created: pass --yes to launch it, or choose a smaller --instance-type",
                aws.region
            );
        }
        if !crate::provider::confirm(&question)? {
            anyhow::bail!(
                "not launched: {instance_type} is above your confirm-above price; nothing was created"
            );
        }
    }

    progress.step("preparing the security group and instance role");
    let security_group = aws
        .security_group(
            request.workspace,
            request.owner,
            &placement.vpc_id,
            settings.security_group.as_deref(),
            settings.allow_open_security_group,
        )
        .await?;
    let identity = aws
        .instance_identity(settings.instance_profile.as_deref())
        .await?;
    let token = launch_token(aws, request);
    // The DNS record's tags go on at launch with the others: nothing is tagged afterwards.
    let mut tags = settings.tags.clone();
    if let Some(zone) = &zone {
        tags.insert(super::dns::TAG_DNS_ZONE.to_owned(), zone.id.clone());
        tags.insert(
            super::dns::TAG_DNS_NAME.to_owned(),
            super::dns::record_name(request.workspace, request.owner_arn, zone)?,
        );
    }
    progress.step(&format!(
        "launching a {instance_type} ({}) in {} from {}",
        info.architecture.ec2_name(),
        placement.availability_zone,
        image.image_id
    ));
    let instance_id = aws
        .run_instance(&LaunchSpec {
            workspace: request.workspace,
            owner: request.owner,
            owner_arn: request.owner_arn,
            image: &image,
            instance_type: &instance_type,
            placement: &placement,
            security_group: &security_group,
            instance_profile: &identity.profile_name,
            fresh_profile: identity.fresh,
            user_data: &script,
            volume_gib,
            kms_key: settings.kms_key.as_deref(),
            spot: settings.spot,
            tags: &tags,
            client_token: &token,
        })
        .await?;
    let _ = request.launched.set(instance_id.clone());
    abort_point("run-instances");
    let instance = aws.wait_for(&instance_id, &["running"], progress).await?;
    let instance = keep_dns(aws, request, zone, instance, progress).await?;
    Ok(UpOutcome {
        instance,
        created: true,
        push: agent.push,
    })
}

/// The client token of this workspace's launch: the same for every retry of one launch (from the local record's
/// key and the instance it remembers), and one nobody else can make, because the key never leaves this machine.
fn launch_token(aws: &Aws, request: &UpRequest<'_>) -> String {
    super::launch::client_token(
        request.owner,
        &aws.region,
        request.workspace,
        &format!(
            "{}:{}",
            super::launch::short_hash(request.client_certificate),
            request.previous_instance.unwrap_or_default()
        ),
    )
}

/// Refuses an instance tagged as this workspace that this workspace did not launch, before anything is sent to it
/// or its agent's certificate is pinned: one whose `skiff:owner` is not the caller, or whose id the local record
/// does not know and whose client token is not this record's. Someone able to tag an instance as yours (an
/// account without skiff's policy, or a colleague before it) would otherwise receive your first upload.
pub fn check_launched_here(
    aws: &Aws,
    request: &UpRequest<'_>,
    instance: &InstanceSummary,
) -> anyhow::Result<()> {
    if instance.owner != request.owner {
        anyhow::bail!(
            "instance {} of workspace {} belongs to {:?}, not to you ({}); skiff refuses to use it",
            instance.instance_id,
            request.workspace,
            instance.owner,
            request.owner
        );
    }
    let known = request.previous_instance == Some(instance.instance_id.as_str());
    let token = launch_token(aws, request);
    if !known && instance.client_token.as_deref() != Some(token.as_str()) {
        anyhow::bail!(
            "instance {} is tagged as your workspace {} but was not launched by this machine's workspace (its client token is not this workspace's); skiff sends it nothing. If you launched it from another machine, run `skiff enroll {}` here instead; otherwise someone else tagged it: check who launched it in CloudTrail, and terminate it",
            instance.instance_id,
            request.workspace,
            request.workspace
        );
    }
    Ok(())
}

/// What to do about `instance`, workspace `workspace` as an older skiff tagged it (`skiff:owner` the caller's ARN,
/// which AWS's conditions no longer match): nothing of the developer policy reaches it, so an operator removes it.
pub fn older_owner_message(workspace: &str, instance: &InstanceSummary) -> String {
    format!(
        "workspace {workspace} is instance {} ({}), launched by an older skiff that tagged its owner as your ARN ({}); owners are now `aws:userid`, which the AWS policy checks, so `skiff aws-policy`'s permissions do not reach it and skiff launches no second one beside it. Save what is on it through `skiff exec`/`ssh` with your previous policy if you need to, then have an operator (`skiff aws-policy --admin`) run `skiff delete {workspace} --owner '{}'`, and `skiff up` again",
        instance.instance_id, instance.state, instance.owner, instance.owner
    )
}

/// Keeps the workspace's DNS record pointing at the running instance, in the zone and under the name its tags
/// gave it at launch. A `--dns-zone` other than the one it was launched with is reported and left alone, because
/// tags (the record's only memory) can be written only at launch.
async fn keep_dns(
    aws: &Aws,
    request: &UpRequest<'_>,
    zone: Option<super::dns::Zone>,
    instance: InstanceSummary,
    progress: &Progress,
) -> anyhow::Result<InstanceSummary> {
    let (Some(tagged_zone), Some(name)) = (&instance.dns_zone, &instance.dns_name) else {
        if let Some(zone) = zone {
            eprintln!(
                "warning: workspace {} was launched without a DNS record, and one is given only at launch: `skiff delete {}` and `up` again with --dns-zone {} to have one",
                request.workspace, request.workspace, zone.name
            );
        }
        return Ok(instance);
    };
    if let Some(zone) = &zone
        && zone.id != *tagged_zone
    {
        eprintln!(
            "warning: workspace {}'s DNS record {name} stays in the zone it was launched with ({tagged_zone}), not {}; `skiff delete` and `up` again to move it",
            request.workspace, zone.name
        );
    }
    let Some(address) = instance.private_ip.clone() else {
        anyhow::bail!(
            "instance {} has no private address for its DNS record {name}",
            instance.instance_id
        );
    };
    progress.step(&format!("pointing {name} at {address}"));
    aws.dns_upsert(tagged_zone, name, &address).await?;
    Ok(instance)
}

/// Where the instance gets `skiffd` and which SHA-256 it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSource {
    /// The download URL; `None` when the client pushes the binary.
    pub url: Option<String>,
    pub sha256: String,
    /// The local binary to push, when there is no URL.
    pub push: Option<std::path::PathBuf>,
}

/// Decides how `skiffd` reaches an instance of `architecture`, and checks a local binary is for it.
pub fn agent_source(
    settings: &AwsSettings,
    agent_binary: Option<&Path>,
    architecture: Architecture,
) -> anyhow::Result<AgentSource> {
    if let Some(binary) = agent_binary {
        if !binary.is_file() {
            anyhow::bail!(
                "skiffd at {} does not exist; pass --agent-binary with a skiffd built for {}",
                binary.display(),
                architecture.rust_name()
            );
        }
        if let Some(found) = elf_architecture(binary)
            && found != architecture
        {
            anyhow::bail!(
                "skiffd at {} is built for {}, but the instance type runs {}; pass --agent-binary with a skiffd for {} (see README: static builds)",
                binary.display(),
                found.rust_name(),
                architecture.rust_name(),
                architecture.rust_name()
            );
        }
    }
    let binary_hash = agent_binary.map(user_data::sha256_file).transpose()?;
    if let Some(url) = &settings.agent_url {
        user_data::check_agent_url(url)?;
        let sha256 = settings.agent_sha256.clone().or(binary_hash).ok_or_else(|| {
            anyhow::anyhow!(
                "--agent-url {url} needs the SHA-256 of the file there: pass --agent-sha256 HEX, or --agent-binary PATH with the same file"
            )
        })?;
        return Ok(AgentSource {
            url: Some(url.clone()),
            sha256,
            push: None,
        });
    }
    if let (Some(binary), Some(sha256)) = (agent_binary, binary_hash) {
        return Ok(AgentSource {
            url: None,
            sha256,
            push: Some(binary.to_owned()),
        });
    }
    if let Some(sha256) = user_data::release_sha256(architecture.rust_name()) {
        return Ok(AgentSource {
            url: Some(user_data::release_url(architecture.rust_name())),
            sha256: sha256.to_owned(),
            push: None,
        });
    }
    anyhow::bail!(
        "this development build of skiff knows no released skiffd for {}: pass --agent-binary PATH (a static skiffd for {}, pushed by the client) or --agent-url URL with --agent-sha256 HEX",
        architecture.rust_name(),
        architecture.rust_name()
    )
}

/// The architecture of an ELF executable, from its header; `None` if it is not one skiff knows.
pub fn elf_architecture(path: &Path) -> Option<Architecture> {
    use std::io::Read as _;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    if &header[..4] != b"\x7fELF" {
        return None;
    }
    // e_machine, little-endian on both architectures skiffd is built for.
    match u16::from_le_bytes([header[18], header[19]]) {
        62 => Some(Architecture::X86_64),
        183 => Some(Architecture::Arm64),
        _ => None,
    }
}
