//! The AWS provider: a workspace is one EC2 instance of the user's own account, found by its tags.
//!
//! AWS itself is the record of every workspace: an instance tagged `skiff:workspace=<name>` and
//! `skiff:owner=<caller's aws:userid>` is that person's workspace, whatever machine made it. The local record (see
//! `workspace`) only remembers the region, the instance and the client key pair.
//!
//! The submodules follow what `up` does, in order: `config` (saved defaults, environment, flags), `network`
//! (subnet and a security group with no ingress), `ami` (Ubuntu 24.04 for the instance type's architecture),
//! `iam` (checking the `skiff-instance` profile that `setup` made), `user_data` (the boot script, from
//! `user_data.sh`), `launch` (RunInstances), `lifecycle` (up, start, stop, delete, list, status), `spot` (a `--spot` workspace's request and interruptions), `price` (what it costs, from AWS), `dns` (the
//! optional Route53 record), `upgrade` (replacing an older agent), `enroll` (another laptop's certificate through
//! Run Command), `policy` (the developer's and the operator's IAM policies) and `setup` (`skiff aws-setup`: the
//! role and profile, made once per account by someone allowed to manage IAM).
//!
//! Who owns a workspace is the caller's `aws:userid` (STS GetCallerIdentity `UserId`), not its ARN: for an assumed
//! role (IAM Identity Center included) it is `ROLEID:session-name`, one person across all their SSO sessions, while
//! the role's ARN is shared by everyone in the permission set. The policy's conditions compare the same value
//! (`${aws:userid}`), so AWS, not this client, decides whose workspace a call may touch. The caveat: the session
//! name is chosen by whoever assumes the role. IAM Identity Center sets it to the user's name, but on a role whose
//! callers pick their own `RoleSessionName` one could pick a colleague's and become them for skiff; such roles
//! should require `sts:RoleSessionName` = `${aws:username}` in their trust policy.
//!
//! `connect` then waits for Session Manager to see the instance, pushes `skiffd` to it and reaches the agent
//! through the workspace's warm tunnel (`crate::tunnel`).
//!
//! [`AwsProvider`] is what `provider::Provider::Aws` holds; its work is split by job: `locate` (a workspace by
//! name, from the local record or by tags), `place` (`up`: the instance, the agent, the files), `status`
//! (`list`, `status`, `logs --boot`) and `teardown` (`stop`, `delete`). The provider's own commands live
//! with their job: `policy::command` (`aws-policy`), `setup::command` (`aws-setup`), `enroll::command`,
//! `config::command` (`provider aws`) and `connect::run_daemon` (`tunnel-daemon`).
//!
//! This module is the only place that names the AWS SDK; commands get plain types back.

pub mod ami;
pub mod budget;
pub mod config;
pub mod connect;
pub mod dns;
pub mod enroll;
pub mod iam;
pub mod launch;
pub mod lifecycle;
mod locate;
pub mod network;
mod place;
pub mod policy;
pub mod price;
pub mod setup;
pub mod spot;
pub mod status;
pub mod team;
mod teardown;
pub mod upgrade;
pub mod user_data;

use std::time::Duration;

use anyhow::Context as _;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_sts::config::ProvideCredentials as _;

/// The port `skiffd` listens on, on the instance's loopback; the Session Manager session forwards to it.
pub const AGENT_PORT: u16 = 7443;
/// The port of user-data's one-shot receiver for a pushed `skiffd`, on the instance's loopback.
pub const RECEIVER_PORT: u16 = 7444;

/// The tag naming a workspace.
pub const TAG_WORKSPACE: &str = "skiff:workspace";
/// The tag naming who made a workspace: the caller's `aws:userid` (see the module's header for why).
pub const TAG_OWNER: &str = "skiff:owner";
/// The caller's ARN at creation, for people to read; no decision is made from it.
pub const TAG_OWNER_ARN: &str = "skiff:owner-arn";
/// The tag marking resources skiff made for everyone (the IAM role and instance profile).
pub const TAG_MANAGED: &str = "skiff:managed";

/// The clients of one region, and who is calling.
#[derive(Debug, Clone)]
pub struct Aws {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) route53: aws_sdk_route53::Client,
    pub(crate) ssm: aws_sdk_ssm::Client,
    pub(crate) sts: aws_sdk_sts::Client,
    /// The configuration the clients were made from; the Session Manager tunnel makes its own from it.
    pub(crate) sdk: aws_config::SdkConfig,
    /// The region every regional call goes to.
    pub region: String,
}

/// The identity AWS sees for the caller's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `aws:userid`: the owner of the workspaces this caller makes (`skiff:owner`).
    pub user_id: String,
    /// The ARN, for messages and the DNS record's name.
    pub arn: String,
    /// The account id.
    pub account: String,
}

/// The HTTP client of every AWS SDK configuration: rustls with ring, the one crypto stack of the workspace.
/// No SDK crate brings its default client (rustls with aws-lc-rs), so a configuration built without this one
/// has none and its first call fails.
pub fn http_client() -> aws_sdk_sts::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Why a region name was refused before any call.
fn check_region_name(region: &str) -> anyhow::Result<()> {
    let well_formed = region.split('-').count() >= 3
        && region.chars().all(|character| {
            character.is_ascii_lowercase() || character.is_ascii_digit() || character == '-'
        })
        && region.ends_with(|character: char| character.is_ascii_digit());
    if !well_formed {
        anyhow::bail!(
            "unknown AWS region {region:?}: a region looks like eu-west-1; pass --region with one (`aws ec2 describe-regions` lists them)"
        );
    }
    Ok(())
}

impl Aws {
    /// Clients for `region` with credentials from aws-config's default chain (environment, profiles, SSO,
    /// process credentials; `profile` picks a profile). `AWS_ENDPOINT_URL` and its per-service variants are
    /// honoured by aws-config. Fails clearly when there are no credentials.
    pub async fn connect(region: &str, profile: Option<&str>) -> anyhow::Result<Self> {
        check_region_name(region)?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(aws_config::Region::new(region.to_owned()))
            // Three attempts in all: enough for throttling, and an emulator's HTML 500s fail fast.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(profile) = profile {
            loader = loader.profile_name(profile);
        }
        let config = loader.load().await;
        let credentials = config.credentials_provider().ok_or_else(|| {
            anyhow::anyhow!("no AWS credentials provider could be set up; {CREDENTIALS_HINT}")
        })?;
        if let Err(error) = credentials.provide_credentials().await {
            anyhow::bail!(
                "no AWS credentials found ({}); {CREDENTIALS_HINT}",
                aws_sdk_sts::error::DisplayErrorContext(&error)
            );
        }
        Ok(Self {
            ec2: aws_sdk_ec2::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
            route53: aws_sdk_route53::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            sts: aws_sdk_sts::Client::new(&config),
            sdk: config,
            region: region.to_owned(),
        })
    }

    /// Who is calling: the `aws:userid` that becomes the `skiff:owner` tag, the ARN and the account.
    pub async fn caller(&self) -> anyhow::Result<Caller> {
        let identity = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|error| aws_error("asking STS who is calling", &error))?;
        Ok(Caller {
            user_id: identity
                .user_id
                .context("STS GetCallerIdentity returned no UserId")?,
            arn: identity
                .arn
                .context("STS GetCallerIdentity returned no ARN")?,
            account: identity
                .account
                .context("STS GetCallerIdentity returned no account")?,
        })
    }

    /// Checks that the region exists and is enabled for the account, asking EC2 for every region.
    pub async fn check_region(&self) -> anyhow::Result<()> {
        // DescribeRegions answers from any region, and the asked one may not exist: ask us-east-1.
        let config = self
            .ec2
            .config()
            .to_builder()
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let ec2 = aws_sdk_ec2::Client::from_conf(config);
        let regions = ec2
            .describe_regions()
            .all_regions(true)
            .send()
            .await
            .map_err(|error| aws_error("listing the AWS regions", &error))?;
        let regions = regions.regions.unwrap_or_default();
        let Some(region) = regions
            .iter()
            .find(|region| region.region_name.as_deref() == Some(&self.region))
        else {
            let mut names: Vec<&str> = regions
                .iter()
                .filter_map(|region| region.region_name.as_deref())
                .collect();
            names.sort_unstable();
            anyhow::bail!(
                "unknown AWS region {}; pass --region with one of: {}",
                self.region,
                names.join(", ")
            );
        };
        if region.opt_in_status.as_deref() == Some("not-opted-in") {
            anyhow::bail!(
                "AWS region {} is not enabled for this account; enable it in the AWS console (Account → AWS Regions) or pass another --region",
                self.region
            );
        }
        Ok(())
    }
}

const CREDENTIALS_HINT: &str = "skiff uses the AWS default credential chain and never stores credentials: \
     set AWS_PROFILE (or pass --profile), run `aws sso login`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

/// An SDK error as one line: what was being done, the AWS error code and message, or the whole cause chain.
pub(crate) fn aws_error<E>(action: &str, error: &E) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (error.code(), error.message()) {
        (Some(code), Some(message)) => anyhow::anyhow!("{action}: {code}: {message}"),
        (Some(code), None) => anyhow::anyhow!("{action}: {code}"),
        _ => anyhow::anyhow!(
            "{action}: {}",
            aws_sdk_ec2::error::DisplayErrorContext(error)
        ),
    }
}

/// [`aws_error`] for a call's `SdkError`, which also says plainly when the endpoint answered with something that is
/// not an AWS error at all (an emulator or proxy without that service answers HTTP 500 with an HTML page), naming
/// the endpoint variable to check instead of printing the page.
pub(crate) fn sdk_error<E>(
    action: &str,
    service: &str,
    error: &aws_sdk_ssm::error::SdkError<E, aws_sdk_ssm::config::http::HttpResponse>,
) -> anyhow::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if error.code().is_none()
        && let Some(response) = error.raw_response()
    {
        let variable = format!("AWS_ENDPOINT_URL_{}", service.to_ascii_uppercase());
        return anyhow::anyhow!(
            "{action}: the {service} endpoint answered HTTP {} without an AWS error; if {variable} or AWS_ENDPOINT_URL points at an emulator or proxy, it does not implement this call",
            response.status().as_u16()
        );
    }
    aws_error(action, error)
}

/// The AWS error code of an SDK error, if the service sent one.
pub(crate) fn error_code<E: ProvideErrorMetadata>(error: &E) -> Option<&str> {
    error.code()
}

/// An EC2 tag.
pub(crate) fn ec2_tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// An EC2 filter with one value.
pub(crate) fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// A fault-injection point for tests of interrupted runs: with `SKIFF_AWS_ABORT_AFTER=<point>` the process
/// aborts right after that step, as a killed client would stop.
pub(crate) fn abort_point(point: &str) {
    if std::env::var("SKIFF_AWS_ABORT_AFTER").is_ok_and(|wanted| wanted == point) {
        eprintln!("skiff: aborting after {point} (SKIFF_AWS_ABORT_AFTER)");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests;

/// The AWS provider of `provider::Provider`: how this command reaches instances, and the workspace
/// `Provider::find` located by name.
#[derive(Debug)]
pub struct AwsProvider {
    /// How the agent is reached: our own Session Manager client, or AWS's plugin.
    tunnel: crate::cli::TunnelChoice,
    /// The workspace found by name (for `status`, `stop`, `delete` and `logs --boot`).
    located: Option<Box<locate::Located>>,
}

impl AwsProvider {
    /// The AWS provider with the command's options.
    pub(crate) fn new(options: &crate::cli::AgentOptions) -> Self {
        Self {
            tunnel: options.tunnel,
            located: None,
        }
    }

    /// The AWS workspace `name` (of `owner`, when given), found through this machine's record or by its tags;
    /// `None` when it is a local workspace or AWS does not know it.
    pub(crate) async fn find(
        name: &str,
        owner: Option<&str>,
        options: &crate::cli::AgentOptions,
    ) -> anyhow::Result<Option<Self>> {
        Ok(locate::locate_owned(name, owner)
            .await?
            .map(|located| Self {
                located: Some(Box::new(located)),
                ..Self::new(options)
            }))
    }

    /// The workspace `find` located, or `name` looked up now.
    async fn located(self, name: &str) -> anyhow::Result<locate::Located> {
        match self.located {
            Some(located) => Ok(*located),
            None => locate::locate(name).await?.with_context(|| {
                format!("workspace {name} is not on AWS in the configured regions")
            }),
        }
    }

    /// A client of the workspace's agent for commands, through its warm tunnel.
    pub(crate) async fn agent(
        &self,
        workspace: &crate::workspace::Workspace,
    ) -> anyhow::Result<crate::agent_client::AgentClient> {
        connect::agent(workspace, self.tunnel).await
    }

    /// A client of the workspace's agent with its dev container running (see `Provider::connect`). An instance
    /// stopped by its idle stop or `skiff stop` is started, its agent waited for, and its dev container started.
    /// EC2 is asked for the instance's state only when no warm tunnel runs (the tunnel's start costs more than the
    /// question) or the tunnel fails, so a command on a running workspace pays nothing for this.
    pub(crate) async fn connect(
        &self,
        workspace: &crate::workspace::Workspace,
        on_stopped: crate::provider::OnStopped,
    ) -> anyhow::Result<crate::agent_client::AgentClient> {
        if crate::tunnel::warm::socket_path(&workspace.folder).exists() {
            match self.agent(workspace).await {
                Ok(client) => return Ok(client),
                Err(error) => tracing::debug!(
                    error = %format!("{error:#}"),
                    "the warm tunnel did not reach the agent; asking EC2 for the instance's state"
                ),
            }
        }
        let located = locate::locate(workspace.name()).await?.with_context(|| {
            format!(
                "workspace {} is not on AWS in its region any more; `skiff list` shows what is",
                workspace.name()
            )
        })?;
        let instance = located.instance.with_context(|| {
            format!(
                "workspace {} has no instance; `skiff up {}` makes one",
                workspace.name(),
                workspace.record.local_folder.display()
            )
        })?;
        if !matches!(instance.state.as_str(), "stopped" | "stopping") {
            return self.agent(workspace).await;
        }
        if on_stopped == crate::provider::OnStopped::Refuse {
            return Err(crate::provider::OnStopped::refused(workspace));
        }
        crate::provider::OnStopped::announce(workspace);
        let progress = crate::progress::Progress::new();
        located.aws.start(&instance, &progress).await?;
        progress.step(&format!(
            "waiting for the agent of workspace {}",
            workspace.name()
        ));
        let mut client =
            connect::wait_for_agent(workspace, self.tunnel, place::AGENT_TIMEOUT).await?;
        progress.step(&format!(
            "starting the dev container of workspace {}",
            workspace.name()
        ));
        crate::provider::start_dev_container(&mut client, workspace).await?;
        progress.finish();
        Ok(client)
    }

    /// Clients of the workspace's agent over the warm tunnel's bulk lanes.
    pub(crate) async fn bulk_agents(
        &self,
        workspace: &crate::workspace::Workspace,
    ) -> anyhow::Result<Vec<crate::agent_client::AgentClient>> {
        connect::bulk_agents(workspace, self.tunnel).await
    }

    /// `up` up to the agent (see `place`).
    pub(crate) async fn place(
        &self,
        placement: &crate::provider::Placement<'_>,
    ) -> anyhow::Result<Option<crate::workspace::Workspace>> {
        place::place(placement, self.tunnel).await
    }

    /// The agent once it answers, replaced by this client's `skiffd` when older (see `place`).
    pub(crate) async fn ready_agent(
        &self,
        workspace: &crate::workspace::Workspace,
        args: &crate::cli::UpArgs,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<crate::agent_client::AgentClient> {
        place::ready_agent(workspace, args, self.tunnel, progress).await
    }

    /// The workspace's files on the instance, sent first when they are not there yet (see `place`).
    pub(crate) async fn send_files(
        &self,
        workspace: &mut crate::workspace::Workspace,
        folder: &std::path::Path,
        progress: &crate::progress::Progress,
    ) -> anyhow::Result<String> {
        place::send_files(workspace, folder, self.tunnel, progress).await
    }

    /// Where the workspace's files are on its instance, once sent or cloned there.
    pub(crate) fn files_folder(workspace: &crate::workspace::Workspace) -> Option<String> {
        place::files_folder(workspace)
    }

    /// Records where the workspace's files are on its instance.
    pub(crate) fn keep_files_folder(
        workspace: &mut crate::workspace::Workspace,
        files_folder: String,
    ) -> anyhow::Result<()> {
        place::keep_files_folder(workspace, files_folder)
    }

    /// `skiff status NAME` (see `status`).
    pub(crate) async fn status(self, name: &str, json: bool) -> anyhow::Result<i32> {
        let tunnel = self.tunnel;
        status::status(self.located(name).await?, name, json, tunnel).await
    }

    /// `skiff stop NAME` (see `teardown`).
    pub(crate) async fn stop(self, name: &str) -> anyhow::Result<i32> {
        teardown::stop(self.located(name).await?, name).await
    }

    /// `skiff delete NAME` (see `teardown`).
    pub(crate) async fn delete(
        self,
        name: &str,
        confirmation: crate::provider::Confirmation,
    ) -> anyhow::Result<i32> {
        let tunnel = self.tunnel;
        teardown::delete(self.located(name).await?, name, confirmation, tunnel).await
    }

    /// `skiff logs NAME --boot` (see `status`).
    pub(crate) async fn boot_log(self, name: &str) -> anyhow::Result<i32> {
        status::boot_log(self.located(name).await?, name).await
    }

    /// Whether anything here says AWS is in use (see `locate::aws_in_use`).
    pub(crate) fn in_use() -> bool {
        crate::workspace::Store::open_default().is_ok_and(|store| locate::aws_in_use(&store))
    }

    /// The AWS workspaces of `skiff list` (see `status`).
    pub(crate) async fn list(all: bool) -> anyhow::Result<Vec<crate::provider::ListRow>> {
        Ok(status::list(all)
            .await?
            .into_iter()
            .map(|(row, stopped_since)| crate::provider::ListRow {
                stopped_since_unix: stopped_since,
                folder: row.folder.clone().unwrap_or_else(|| {
                    format!(
                        "({} {})",
                        row.region,
                        row.instance_id.as_deref().unwrap_or("-")
                    )
                }),
                name: row.name.clone(),
                provider: "aws".into(),
                state: row.state.clone(),
                container_id: None,
                status: None,
                aws: Some(row),
            })
            .collect())
    }
}
