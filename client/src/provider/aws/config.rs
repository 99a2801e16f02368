//! The AWS provider's settings: defaults saved by `skiff provider aws …` in `$SKIFF_HOME/aws.toml`, overridden
//! by `SKIFF_AWS_*` environment variables, overridden by flags of the command at hand.
//!
//! No credential is ever read or written here: credentials come from aws-config's default chain only. The
//! region falls back to `AWS_REGION`/`AWS_DEFAULT_REGION` and the profile's region, but never to the instance
//! metadata service, so a laptop never waits on 169.254.169.254.
//!
//! `command` is `skiff provider aws …` itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Aws;
use crate::workspace::Store;

/// The AWS options of `skiff up` and `skiff provider aws`; every one can also be saved or set in the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsOptions {
    /// AWS region, such as eu-west-1 [env: SKIFF_AWS_REGION, else AWS_REGION].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// AWS profile for credentials [env: SKIFF_AWS_PROFILE, else AWS_PROFILE].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// EC2 instance type [default: from hostRequirements, else t3.large].
    #[arg(long, value_name = "TYPE")]
    pub instance_type: Option<String>,
    /// Subnet to launch in [default: a default subnet of the VPC].
    #[arg(long, value_name = "SUBNET_ID")]
    pub subnet: Option<String>,
    /// VPC to launch in [default: the region's default VPC].
    #[arg(long, value_name = "VPC_ID")]
    pub vpc: Option<String>,
    /// Availability zone, such as eu-west-1a.
    #[arg(long, value_name = "ZONE")]
    pub availability_zone: Option<String>,
    /// Use this security group instead of a per-workspace one with no ingress rules.
    #[arg(long, value_name = "GROUP_ID")]
    pub security_group: Option<String>,
    /// Accept a --security-group that allows ingress from anywhere (0.0.0.0/0 or ::/0).
    #[arg(long)]
    pub allow_open_security_group: bool,
    /// Use this instance profile instead of skiff's `skiff-instance`.
    #[arg(long, value_name = "NAME")]
    pub instance_profile: Option<String>,
    /// Encrypt the root volume with this KMS key (ARN); `skiff aws-setup --kms-key` lets the role decrypt with it, and `skiff aws-policy --kms-key` lets you launch with it.
    #[arg(long, value_name = "KEY_ARN")]
    pub kms_key: Option<String>,
    /// AMI to launch instead of Ubuntu 24.04 LTS; it must have the SSM agent (and Docker without internet).
    #[arg(long, value_name = "AMI_ID")]
    pub ami: Option<String>,
    /// Root volume size in GiB [default: 40].
    #[arg(long, value_name = "GIB")]
    pub volume_size: Option<i32>,
    /// Run as a persistent spot instance that stops on interruption.
    #[arg(long)]
    pub spot: bool,
    /// Pull images from this account's ECR registry of the region with the instance role's logins (`skiff
    /// aws-setup --ecr` must have allowed the role to read ECR).
    #[arg(long)]
    pub ecr: bool,
    /// Ask before launching an instance whose hourly price is above this many US dollars (saved with `skiff
    /// provider aws`); without a terminal, `up` refuses unless --yes.
    #[arg(long, value_name = "USD")]
    pub confirm_above: Option<String>,
    /// Launch without asking, whatever the price (see --confirm-above).
    #[arg(long)]
    pub yes: bool,
    /// An extra tag for the instance and its volume (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Where the instance downloads skiffd from (https, or http to a loopback address for tests)
    /// [default: the release of this client's version; without one the client pushes --agent-binary].
    #[arg(long, value_name = "URL")]
    pub agent_url: Option<String>,
    /// The SHA-256 of the skiffd at --agent-url [default: the hash of --agent-binary].
    #[arg(long, value_name = "HEX")]
    pub agent_sha256: Option<String>,
    /// A Route53 hosted zone (id or name) to keep an A record of the instance's private address in, named
    /// WORKSPACE.OWNER.ZONE; `delete` removes it.
    #[arg(long, value_name = "ZONE")]
    pub dns_zone: Option<String>,
}

/// `skiff provider aws`: saves the given options as defaults (merged into what was saved) and shows them.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProviderAwsArgs {
    #[command(flatten)]
    pub options: AwsOptions,
    /// More regions `skiff list` asks, besides --region (comma-separated).
    #[arg(long, value_name = "REGION,…", value_delimiter = ',')]
    pub list_regions: Vec<String>,
    /// Forget what was saved before saving these options.
    #[arg(long)]
    pub reset: bool,
    /// Save nothing, only check credentials and the region and show the settings.
    #[arg(long)]
    pub show: bool,
}

/// What `skiff provider aws` saves, and what the environment and flags override: every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// More regions `skiff list` asks, besides `region`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub list_regions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_group: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_open_security_group: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ami: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<i32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub spot: bool,
    /// Pull from the account's ECR registry with the instance role (`up --ecr`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub ecr: bool,
    /// US dollars per hour above which `up` asks before launching (a decimal, checked by `confirm_above_usd`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirm_above: Option<String>,
    /// This run's `--yes`: launch whatever the price. Never saved.
    #[serde(skip)]
    pub yes: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_zone: Option<String>,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_false(value: &bool) -> bool {
    !*value
}

/// The root volume size when none is given, in GiB.
pub const DEFAULT_VOLUME_GIB: i32 = 40;
/// The instance type when neither a flag nor hostRequirements say more.
pub const DEFAULT_INSTANCE_TYPE: &str = "t3.large";

/// The SSM parameter (in each region) holding a team's defaults, which `skiff aws-setup --team-defaults FILE` writes
/// and every `up` there reads under the person's own settings.
pub const TEAM_DEFAULTS_PARAMETER: &str = "/skiff/team/defaults";

/// The settings a team's defaults may not set: where a person's credentials and regions come from, and what decides
/// the code their instances run and who may reach them.
const NOT_FOR_TEAMS: &[&str] = &[
    "region",
    "list_regions",
    "profile",
    "agent_url",
    "agent_sha256",
    "ami",
    "allow_open_security_group",
];

/// Names of the environment variables that override saved settings.
pub const ENVIRONMENT: &[&str] = &[
    "SKIFF_AWS_REGION",
    "SKIFF_AWS_PROFILE",
    "SKIFF_AWS_INSTANCE_TYPE",
    "SKIFF_AWS_SUBNET",
    "SKIFF_AWS_VPC",
    "SKIFF_AWS_AVAILABILITY_ZONE",
    "SKIFF_AWS_SECURITY_GROUP",
    "SKIFF_AWS_INSTANCE_PROFILE",
    "SKIFF_AWS_KMS_KEY",
    "SKIFF_AWS_AMI",
    "SKIFF_AWS_VOLUME_SIZE",
    "SKIFF_AWS_AGENT_URL",
    "SKIFF_AWS_AGENT_SHA256",
    "SKIFF_AWS_DNS_ZONE",
];

impl AwsSettings {
    /// Where the saved settings live.
    pub fn path(skiff_home: &Path) -> PathBuf {
        skiff_home.join("aws.toml")
    }

    /// The saved settings; empty when nothing was saved.
    pub fn load(skiff_home: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(skiff_home);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let settings = toml::from_str(&text).map_err(|error| {
            anyhow::anyhow!(
                "AWS settings {}: {}; fix the file or save it again with `skiff provider aws --reset …`",
                path.display(),
                error.to_string().trim().replace('\n', " ")
            )
        })?;
        Ok(Some(settings))
    }

    /// Saves the settings (no secrets are ever among them).
    pub fn save(&self, skiff_home: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(skiff_home)
            .with_context(|| format!("creating {}", skiff_home.display()))?;
        let text = toml::to_string(self).context("writing the AWS settings")?;
        crate::workspace::write_file(&Self::path(skiff_home), text.as_bytes(), 0o600)?;
        Ok(())
    }

    /// The settings from `SKIFF_AWS_*` variables.
    pub fn from_environment(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let volume_size = get("SKIFF_AWS_VOLUME_SIZE")
            .map(|text| {
                text.trim().parse::<i32>().map_err(|_| {
                    anyhow::anyhow!(
                        "SKIFF_AWS_VOLUME_SIZE={text:?} is not a size in GiB, such as 40"
                    )
                })
            })
            .transpose()?;
        Ok(Self {
            region: get("SKIFF_AWS_REGION"),
            profile: get("SKIFF_AWS_PROFILE"),
            instance_type: get("SKIFF_AWS_INSTANCE_TYPE"),
            subnet: get("SKIFF_AWS_SUBNET"),
            vpc: get("SKIFF_AWS_VPC"),
            availability_zone: get("SKIFF_AWS_AVAILABILITY_ZONE"),
            security_group: get("SKIFF_AWS_SECURITY_GROUP"),
            instance_profile: get("SKIFF_AWS_INSTANCE_PROFILE"),
            kms_key: get("SKIFF_AWS_KMS_KEY"),
            ami: get("SKIFF_AWS_AMI"),
            volume_size,
            agent_url: get("SKIFF_AWS_AGENT_URL"),
            agent_sha256: get("SKIFF_AWS_AGENT_SHA256"),
            dns_zone: get("SKIFF_AWS_DNS_ZONE"),
            confirm_above: get("SKIFF_AWS_CONFIRM_ABOVE"),
            ..Self::default()
        })
    }

    /// The settings the flags give.
    pub fn from_options(options: &AwsOptions) -> anyhow::Result<Self> {
        let mut tags = BTreeMap::new();
        for tag in &options.tags {
            let (key, value) = tag.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--tag {tag:?}: write a tag as KEY=VALUE, such as team=web")
            })?;
            let key = key.trim();
            if key.is_empty()
                || key.starts_with("skiff:")
                || key.starts_with("aws:")
                || key == "Name"
            {
                anyhow::bail!(
                    "--tag {tag:?}: the key {key:?} is empty or reserved (skiff:…, aws:… and Name are set by skiff); choose another key"
                );
            }
            tags.insert(key.to_owned(), value.to_owned());
        }
        Ok(Self {
            region: options.region.clone(),
            list_regions: Vec::new(),
            profile: options.profile.clone(),
            instance_type: options.instance_type.clone(),
            subnet: options.subnet.clone(),
            vpc: options.vpc.clone(),
            availability_zone: options.availability_zone.clone(),
            security_group: options.security_group.clone(),
            allow_open_security_group: options.allow_open_security_group,
            instance_profile: options.instance_profile.clone(),
            kms_key: options.kms_key.clone(),
            ami: options.ami.clone(),
            volume_size: options.volume_size,
            spot: options.spot,
            ecr: options.ecr,
            tags,
            agent_url: options.agent_url.clone(),
            agent_sha256: options.agent_sha256.clone(),
            dns_zone: options.dns_zone.clone(),
            confirm_above: options.confirm_above.clone(),
            yes: options.yes,
        })
    }

    /// The price above which `up` asks, in US dollars per hour; an error names the setting when it is not a price.
    pub fn confirm_above_usd(&self) -> anyhow::Result<Option<f64>> {
        let Some(text) = &self.confirm_above else {
            return Ok(None);
        };
        match text.trim().trim_start_matches('$').parse::<f64>() {
            Ok(price) if price.is_finite() && price >= 0.0 => Ok(Some(price)),
            _ => anyhow::bail!(
                "--confirm-above {text:?} (or SKIFF_AWS_CONFIRM_ABOVE, or confirm_above in aws.toml): give a price in US dollars per hour, such as 0.50"
            ),
        }
    }

    /// `self` with every field `over` sets replacing it (flags and switches only ever turn on).
    #[must_use]
    pub fn overlay(mut self, over: Self) -> Self {
        macro_rules! take {
            ($($field:ident),*) => { $( if over.$field.is_some() { self.$field = over.$field; } )* };
        }
        take!(
            region,
            profile,
            instance_type,
            subnet,
            vpc,
            availability_zone,
            security_group,
            instance_profile,
            kms_key,
            ami,
            volume_size,
            agent_url,
            agent_sha256,
            dns_zone,
            confirm_above
        );
        self.yes |= over.yes;
        if !over.list_regions.is_empty() {
            self.list_regions = over.list_regions;
        }
        self.allow_open_security_group |= over.allow_open_security_group;
        self.spot |= over.spot;
        self.ecr |= over.ecr;
        self.tags.extend(over.tags);
        self
    }

    /// A team's defaults from their text (aws.toml's format); an error names a key that is unknown or that a team may
    /// not set.
    pub fn team_defaults(text: &str) -> anyhow::Result<Self> {
        let team: Self = toml::from_str(text)
            .map_err(|error| anyhow::anyhow!("the team's defaults: {error}"))?;
        let table: toml::Table = toml::from_str(text)
            .map_err(|error| anyhow::anyhow!("the team's defaults: {error}"))?;
        if let Some(key) = NOT_FOR_TEAMS.iter().find(|key| table.contains_key(**key)) {
            anyhow::bail!(
                "the team's defaults set {key}, which only each person's own settings may set; remove it from the file"
            );
        }
        team.confirm_above_usd()?;
        Ok(team)
    }

    /// These settings over a team's defaults: what the person set wins. With `project_sizes_machine` (the
    /// configuration's `hostRequirements`), the team's instance type gives way to the type those requirements pick.
    #[must_use]
    pub fn over_team(self, mut team: Self, project_sizes_machine: bool) -> Self {
        if project_sizes_machine {
            team.instance_type = None;
        }
        team.overlay(self)
    }

    /// The saved settings, then the environment, then `options`.
    pub fn resolve(skiff_home: &Path, options: &AwsOptions) -> anyhow::Result<Self> {
        let saved = Self::load(skiff_home)?.unwrap_or_default();
        let environment = Self::from_environment(|name| std::env::var(name).ok())?;
        Ok(saved
            .overlay(environment)
            .overlay(Self::from_options(options)?))
    }

    /// Whether an AWS provider is configured at all (saved settings or an environment region).
    pub fn configured(skiff_home: &Path) -> bool {
        Self::path(skiff_home).is_file() || std::env::var_os("SKIFF_AWS_REGION").is_some()
    }

    /// The region to use: the settings', else `AWS_REGION`/`AWS_DEFAULT_REGION`, else the profile's.
    pub fn region_or_error(&self) -> anyhow::Result<String> {
        if let Some(region) = &self.region {
            return Ok(region.clone());
        }
        for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if let Ok(region) = std::env::var(name)
                && !region.trim().is_empty()
            {
                return Ok(region.trim().to_owned());
            }
        }
        if let Some(region) = profile_region(self.profile.as_deref()) {
            return Ok(region);
        }
        anyhow::bail!(
            "no AWS region: pass --region REGION, or save one with `skiff provider aws --region REGION`"
        )
    }

    /// The profile to use, if one is named (aws-config also reads `AWS_PROFILE` itself).
    pub fn profile(&self) -> Option<&str> {
        self.profile.as_deref()
    }
}

/// The `region` of a profile in `~/.aws/config` (or `AWS_CONFIG_FILE`), read as plain INI text.
fn profile_region(profile: Option<&str>) -> Option<String> {
    let profile = profile
        .map(str::to_owned)
        .or_else(|| std::env::var("AWS_PROFILE").ok())
        .unwrap_or_else(|| "default".into());
    let path = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".aws/config")))?;
    let text = std::fs::read_to_string(path).ok()?;
    region_in_config(&text, &profile)
}

/// The `region` key of `[profile NAME]` (or `[default]`) in AWS config text.
pub(crate) fn region_in_config(text: &str, profile: &str) -> Option<String> {
    let wanted = if profile == "default" {
        "default".to_owned()
    } else {
        format!("profile {profile}")
    };
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if let Some(section) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inside = section.trim() == wanted;
            continue;
        }
        if inside
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "region"
        {
            return Some(value.trim().to_owned());
        }
    }
    None
}

/// `skiff provider aws …`: saves the options (merged into what was saved), checks them, and shows them.
pub async fn command(args: &ProviderAwsArgs) -> anyhow::Result<i32> {
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

impl Aws {
    /// The team's file in this region (defaults and rules), if an administrator wrote one; a parameter that cannot
    /// be read is said once and left out (the person's own settings still apply, and AWS still enforces the rules
    /// the developer's policy carries), a malformed one is an error naming it.
    pub async fn team_defaults(&self) -> anyhow::Result<Option<super::team::Team>> {
        match self
            .ssm
            .get_parameter()
            .name(TEAM_DEFAULTS_PARAMETER)
            .send()
            .await
        {
            Ok(output) => {
                let text = output
                    .parameter
                    .and_then(|parameter| parameter.value)
                    .unwrap_or_default();
                super::team::Team::parse(&text)
                    .map(Some)
                    .with_context(|| {
                        format!(
                            "SSM parameter {TEAM_DEFAULTS_PARAMETER} in {} (ask whoever runs `skiff aws-setup --team-defaults` to fix it)",
                            self.region
                        )
                    })
            }
            Err(error) if super::error_code(&error) == Some("ParameterNotFound") => Ok(None),
            Err(error) => {
                eprintln!(
                    "warning: could not read the team's defaults ({TEAM_DEFAULTS_PARAMETER} in {}): {}; going on with your own settings",
                    self.region,
                    aws_sdk_ssm::error::DisplayErrorContext(&error)
                );
                Ok(None)
            }
        }
    }
}
