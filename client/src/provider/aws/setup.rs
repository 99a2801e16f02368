//! `skiff aws-setup [--remove]`: what an IAM administrator makes once per account so developers never need an IAM
//! write permission: the boundary policy `skiff-instance-boundary`, the role `skiff-instance` (trusted by EC2 only,
//! with `AmazonSSMManagedInstanceCore` and that boundary, plus `kms:Decrypt` on one key when asked) and its instance
//! profile. Every step is idempotent: what exists is kept (and its boundary and policy put back), what is missing is
//! made, and the report says which.
//! With `--team-defaults FILE` it only writes the team's defaults (SSM parameter `/skiff/team/defaults` of the region),
//! which every developer's `up` there reads under their own settings (`config::AwsSettings::over_team`).
//!
//! These calls are the only IAM writes in the client; they run with the administrator's credentials, never with
//! the developer's policy, so `policy::PERMISSIONS` (checked against the other files' calls) leaves this file out.

use anyhow::Context as _;

use super::config::TEAM_DEFAULTS_PARAMETER;
use super::iam::INSTANCE_ROLE;
use super::policy::{BOUNDARY_POLICY, ecr_read, instance_boundary};
use super::team::Team;
use super::{Aws, TAG_MANAGED, aws_error, error_code};

/// The only managed policy the role gets.
pub const SSM_CORE_POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
/// The inline policy for the optional KMS key.
const KMS_POLICY: &str = "skiff-kms-decrypt";
/// The inline policy of `--ecr`.
pub const ECR_POLICY: &str = "skiff-ecr-read";
/// How many versions IAM keeps of a managed policy.
const MAX_POLICY_VERSIONS: usize = 5;

/// Who may assume the role: EC2 only.
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

fn managed_tag() -> anyhow::Result<aws_sdk_iam::types::Tag> {
    aws_sdk_iam::types::Tag::builder()
        .key(TAG_MANAGED)
        .value("true")
        .build()
        .map_err(|error| anyhow::anyhow!("building a tag: {error}"))
}

impl Aws {
    /// The ARN of the boundary policy in the caller's account and partition.
    async fn boundary_arn(&self) -> anyhow::Result<String> {
        let caller = self.caller().await?;
        let partition = caller.arn.split(':').nth(1).unwrap_or("aws").to_owned();
        Ok(format!(
            "arn:{partition}:iam::{}:policy/{BOUNDARY_POLICY}",
            caller.account
        ))
    }

    /// Makes (or brings back) skiff's boundary, role and instance profile; one line per thing, saying what it did.
    /// With `ecr`, the role may also pull from the account's ECR repositories (`up --ecr`).
    pub async fn setup(&self, kms_key: Option<&str>, ecr: bool) -> anyhow::Result<Vec<String>> {
        let mut report = Vec::new();
        let boundary = self.boundary_arn().await?;
        match self
            .iam
            .create_policy()
            .policy_name(BOUNDARY_POLICY)
            .policy_document(instance_boundary().to_string())
            .description(
                "skiff: the most the skiff-instance role may ever do (Session Manager's agent)",
            )
            .tags(managed_tag()?)
            .send()
            .await
        {
            Ok(_) => report.push(format!("made policy {boundary}")),
            Err(error) if error_code(&error) == Some("EntityAlreadyExists") => {
                report.push(self.keep_boundary_current(&boundary).await?);
            }
            Err(error) => {
                return Err(aws_error(
                    &format!(
                        "creating IAM policy {BOUNDARY_POLICY} (aws-setup needs an IAM administrator)"
                    ),
                    &error,
                ));
            }
        }
        match self
            .iam
            .create_role()
            .role_name(INSTANCE_ROLE)
            .assume_role_policy_document(TRUST_POLICY)
            .description("skiff workspace instances: Session Manager only")
            .permissions_boundary(&boundary)
            .tags(managed_tag()?)
            .send()
            .await
        {
            Ok(_) => report.push(format!(
                "made role {INSTANCE_ROLE} (assumed by ec2.amazonaws.com only, boundary {BOUNDARY_POLICY})"
            )),
            Err(error) if error_code(&error) == Some("EntityAlreadyExists") => {
                // A role someone changed gets its boundary back.
                self.iam
                    .put_role_permissions_boundary()
                    .role_name(INSTANCE_ROLE)
                    .permissions_boundary(&boundary)
                    .send()
                    .await
                    .map_err(|error| {
                        aws_error(
                            &format!("putting boundary {BOUNDARY_POLICY} on role {INSTANCE_ROLE}"),
                            &error,
                        )
                    })?;
                report.push(format!(
                    "found role {INSTANCE_ROLE}; its permissions boundary is {BOUNDARY_POLICY}"
                ));
            }
            Err(error) => {
                return Err(aws_error(
                    &format!("creating IAM role {INSTANCE_ROLE} (aws-setup needs an IAM administrator)"),
                    &error,
                ));
            }
        }
        // Attaching is idempotent, so it runs every time: a role someone stripped gets its policy back.
        self.iam
            .attach_role_policy()
            .role_name(INSTANCE_ROLE)
            .policy_arn(SSM_CORE_POLICY)
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!("attaching {SSM_CORE_POLICY} to role {INSTANCE_ROLE}"),
                    &error,
                )
            })?;
        report.push(format!(
            "attached {SSM_CORE_POLICY} to role {INSTANCE_ROLE}"
        ));
        if ecr {
            let caller = self.caller().await?;
            let partition = caller.arn.split(':').nth(1).unwrap_or("aws").to_owned();
            self.iam
                .put_role_policy()
                .role_name(INSTANCE_ROLE)
                .policy_name(ECR_POLICY)
                .policy_document(ecr_read(&partition, &caller.account).to_string())
                .send()
                .await
                .map_err(|error| {
                    aws_error(
                        &format!("allowing role {INSTANCE_ROLE} to read ECR"),
                        &error,
                    )
                })?;
            report.push(format!(
                "allowed role {INSTANCE_ROLE} to pull from account {}'s ECR repositories (inline policy {ECR_POLICY}); `skiff up --ecr` uses it",
                caller.account
            ));
        }
        if let Some(key) = kms_key {
            self.allow_kms_decrypt(key).await?;
            report.push(format!(
                "allowed role {INSTANCE_ROLE} kms:Decrypt on {key} (inline policy {KMS_POLICY})"
            ));
        }
        let profile = match self
            .iam
            .create_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .tags(managed_tag()?)
            .send()
            .await
        {
            Ok(_) => format!("made instance profile {INSTANCE_ROLE}"),
            Err(error) if error_code(&error) == Some("EntityAlreadyExists") => {
                format!("found instance profile {INSTANCE_ROLE}")
            }
            Err(error) => {
                return Err(aws_error(
                    &format!("creating instance profile {INSTANCE_ROLE}"),
                    &error,
                ));
            }
        };
        report.push(profile);
        let found = self
            .iam
            .get_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .send()
            .await
            .map_err(|error| {
                aws_error(&format!("reading instance profile {INSTANCE_ROLE}"), &error)
            })?;
        let has_role = found.instance_profile.is_some_and(|profile| {
            profile
                .roles
                .iter()
                .any(|role| role.role_name == INSTANCE_ROLE)
        });
        if !has_role {
            match self
                .iam
                .add_role_to_instance_profile()
                .instance_profile_name(INSTANCE_ROLE)
                .role_name(INSTANCE_ROLE)
                .send()
                .await
            {
                Ok(_) => report.push(format!(
                    "added role {INSTANCE_ROLE} to instance profile {INSTANCE_ROLE}"
                )),
                // A concurrent run added it between our read and this call.
                Err(error) if error_code(&error) == Some("LimitExceeded") => {}
                Err(error) => {
                    return Err(aws_error(
                        &format!("adding role {INSTANCE_ROLE} to instance profile {INSTANCE_ROLE}"),
                        &error,
                    ));
                }
            }
        }
        Ok(report)
    }

    /// Brings the boundary an earlier skiff made up to this one's (a new default version when it differs, the
    /// oldest other version removed when IAM's five are all used); what it did, in words.
    async fn keep_boundary_current(&self, boundary: &str) -> anyhow::Result<String> {
        let policy = self
            .iam
            .get_policy()
            .policy_arn(boundary)
            .send()
            .await
            .map_err(|error| aws_error(&format!("reading policy {boundary}"), &error))?;
        let default_version = policy
            .policy
            .and_then(|policy| policy.default_version_id)
            .unwrap_or_default();
        let version = self
            .iam
            .get_policy_version()
            .policy_arn(boundary)
            .version_id(&default_version)
            .send()
            .await
            .map_err(|error| aws_error(&format!("reading policy {boundary}"), &error))?;
        let document = version
            .policy_version
            .and_then(|version| version.document)
            .unwrap_or_default();
        // IAM gives documents URL-encoded.
        let decoded = percent_encoding::percent_decode_str(&document).decode_utf8_lossy();
        let current: Option<serde_json::Value> = serde_json::from_str(&decoded).ok();
        if current.as_ref() == Some(&instance_boundary()) {
            return Ok(format!("found policy {boundary}"));
        }
        let versions = self
            .iam
            .list_policy_versions()
            .policy_arn(boundary)
            .send()
            .await
            .map_err(|error| aws_error(&format!("listing the versions of {boundary}"), &error))?
            .versions
            .unwrap_or_default();
        if versions.len() >= MAX_POLICY_VERSIONS
            && let Some(oldest) = versions
                .iter()
                .filter(|version| !version.is_default_version)
                .min_by_key(|version| version.create_date.map(|date| date.secs()))
                .and_then(|version| version.version_id.clone())
        {
            self.iam
                .delete_policy_version()
                .policy_arn(boundary)
                .version_id(&oldest)
                .send()
                .await
                .map_err(|error| {
                    aws_error(&format!("removing version {oldest} of {boundary}"), &error)
                })?;
        }
        let made = self
            .iam
            .create_policy_version()
            .policy_arn(boundary)
            .policy_document(instance_boundary().to_string())
            .set_as_default(true)
            .send()
            .await
            .map_err(|error| aws_error(&format!("updating policy {boundary}"), &error))?;
        Ok(format!(
            "updated policy {boundary} to this skiff's boundary (version {})",
            made.policy_version
                .and_then(|version| version.version_id)
                .unwrap_or_default()
        ))
    }

    async fn allow_kms_decrypt(&self, key: &str) -> anyhow::Result<()> {
        if !key.starts_with("arn:") {
            anyhow::bail!(
                "--kms-key {key:?}: give the key's ARN, such as arn:aws:kms:eu-west-1:123456789012:key/…"
            );
        }
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": key}],
        });
        self.iam
            .put_role_policy()
            .role_name(INSTANCE_ROLE)
            .policy_name(KMS_POLICY)
            .policy_document(policy.to_string())
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!("allowing role {INSTANCE_ROLE} kms:Decrypt on {key}"),
                    &error,
                )
            })?;
        Ok(())
    }

    /// Removes what [`Aws::setup`] made (`aws-setup --remove`); what is already gone is not an error.
    pub async fn remove_setup(&self) -> anyhow::Result<Vec<String>> {
        let gone = |code: Option<&str>| code == Some("NoSuchEntity");
        let mut report = Vec::new();
        match self
            .iam
            .remove_role_from_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .role_name(INSTANCE_ROLE)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if gone(error_code(&error)) => {}
            // moto answers a repeated removal with an HTML 500 instead of NoSuchEntity; the deletes below
            // still say whether anything is really left.
            Err(error) => {
                tracing::debug!(error = %aws_sdk_iam::error::DisplayErrorContext(&error), "removing the role from the profile")
            }
        }
        match self
            .iam
            .delete_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .send()
            .await
        {
            Ok(_) => report.push(format!("removed instance profile {INSTANCE_ROLE}")),
            Err(error) if gone(error_code(&error)) => {}
            Err(error) => {
                return Err(aws_error(
                    &format!("deleting instance profile {INSTANCE_ROLE}"),
                    &error,
                ));
            }
        }
        match self
            .iam
            .detach_role_policy()
            .role_name(INSTANCE_ROLE)
            .policy_arn(SSM_CORE_POLICY)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if gone(error_code(&error)) => {}
            Err(error) => return Err(aws_error(&format!("detaching {SSM_CORE_POLICY}"), &error)),
        }
        for inline in [KMS_POLICY, ECR_POLICY] {
            match self
                .iam
                .delete_role_policy()
                .role_name(INSTANCE_ROLE)
                .policy_name(inline)
                .send()
                .await
            {
                Ok(_) => {}
                Err(error) if gone(error_code(&error)) => {}
                Err(error) => {
                    return Err(aws_error(
                        &format!("deleting inline policy {inline}"),
                        &error,
                    ));
                }
            }
        }
        match self.iam.delete_role().role_name(INSTANCE_ROLE).send().await {
            Ok(_) => report.push(format!("removed role {INSTANCE_ROLE}")),
            Err(error) if gone(error_code(&error)) => {}
            Err(error) => {
                return Err(aws_error(
                    &format!("deleting IAM role {INSTANCE_ROLE}"),
                    &error,
                ));
            }
        }
        let boundary = self.boundary_arn().await?;
        match self.iam.delete_policy().policy_arn(&boundary).send().await {
            Ok(_) => report.push(format!("removed policy {boundary}")),
            Err(error) if gone(error_code(&error)) => {}
            Err(error) => return Err(aws_error(&format!("deleting policy {boundary}"), &error)),
        }
        Ok(report)
    }
}

impl Aws {
    /// Writes the team's file in this region (`skiff aws-setup --team-defaults FILE`), saying that `by` wrote it,
    /// or removes it with `None`; what was done, in words.
    pub async fn write_team_defaults(
        &self,
        text: Option<&str>,
        by: &str,
    ) -> anyhow::Result<String> {
        match text {
            Some(text) => {
                let team = Team::from_file(text)?;
                let stored = Team::stored_text(text, by, std::time::SystemTime::now())?;
                self.ssm
                    .put_parameter()
                    .name(TEAM_DEFAULTS_PARAMETER)
                    .value(stored)
                    .r#type(aws_sdk_ssm::types::ParameterType::String)
                    .overwrite(true)
                    .description(
                        "skiff: the team's defaults, read by every skiff up in this region",
                    )
                    .send()
                    .await
                    .map_err(|error| aws_error("writing the team's defaults", &error))?;
                let mut said = format!(
                    "wrote the team's defaults to SSM parameter {TEAM_DEFAULTS_PARAMETER} in {}",
                    self.region
                );
                if team.rules.any() {
                    said.push_str(
                        "; every skiff up checks its [rules], and AWS enforces them once developers' policy carries them: `skiff aws-policy --team FILE`",
                    );
                }
                Ok(said)
            }
            None => match self
                .ssm
                .delete_parameter()
                .name(TEAM_DEFAULTS_PARAMETER)
                .send()
                .await
            {
                Ok(_) => Ok(format!("removed the team's defaults from {}", self.region)),
                Err(error) if error_code(&error) == Some("ParameterNotFound") => {
                    Ok(format!("{} had no team defaults", self.region))
                }
                Err(error) => Err(aws_error("removing the team's defaults", &error)),
            },
        }
    }
}

/// `skiff aws-setup [--remove]`: makes (or removes) skiff's instance role, its permissions boundary and its
/// instance profile in the account of the given credentials, and says what it did. Run once per account by
/// someone allowed to manage IAM; developers' policies have no IAM write permission.
pub async fn command(args: &crate::cli::AwsSetupArgs) -> anyhow::Result<i32> {
    use super::config::{AwsOptions, AwsSettings};
    let store = crate::workspace::Store::open_default()?;
    let options = AwsOptions {
        region: args.region.clone(),
        profile: args.profile.clone(),
        ..AwsOptions::default()
    };
    let settings = AwsSettings::resolve(store.root(), &options)?;
    let region = settings.region_or_error()?;
    let aws = Aws::connect(&region, settings.profile()).await?;
    let caller = aws.caller().await?;
    if let Some(file) = &args.team_defaults {
        let text =
            if file.as_os_str() == "none" {
                None
            } else {
                Some(std::fs::read_to_string(file).with_context(|| {
                    format!("reading the team's defaults from {}", file.display())
                })?)
            };
        let said = aws
            .write_team_defaults(text.as_deref(), &caller.arn)
            .await?;
        eprintln!("{said}, as {} in account {}", caller.arn, caller.account);
        return Ok(0);
    }
    if let Some(amount) = &args.budget {
        let request = if amount == "none" {
            None
        } else {
            Some(super::budget::BudgetRequest::new(
                amount,
                args.alert_email.as_deref(),
            )?)
        };
        for line in aws.write_budget(request.as_ref()).await? {
            println!("{line}");
        }
        eprintln!("as {} in account {}", caller.arn, caller.account);
        return Ok(0);
    }
    let report = if args.remove {
        aws.remove_setup().await?
    } else {
        aws.setup(args.kms_key.as_deref(), args.ecr).await?
    };
    for line in &report {
        println!("{line}");
    }
    eprintln!(
        "{} in account {} as {}",
        if args.remove {
            "removed skiff's IAM role, boundary and instance profile"
        } else {
            "skiff's IAM role and instance profile are ready; developers need only `skiff aws-policy`"
        },
        caller.account,
        caller.arn
    );
    Ok(0)
}
