//! The instance's identity: the role and instance profile `skiff-instance`, with `AmazonSSMManagedInstanceCore`
//! and nothing else (plus `kms:Decrypt` on one key when asked), made once per account and reused; or the
//! user's own instance profile. Failing to attach a profile is an error, never silently ignored.

use std::time::Duration;

use super::{Aws, TAG_MANAGED, aws_error, error_code};

/// The name of skiff's role and of its instance profile.
pub const INSTANCE_ROLE: &str = "skiff-instance";
/// The only managed policy the role gets.
pub const SSM_CORE_POLICY: &str = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore";
/// The inline policy for the optional KMS key.
const KMS_POLICY: &str = "skiff-kms-decrypt";

/// Who may assume the role: EC2 only.
const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// What the instance runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// The instance profile's name.
    pub profile_name: String,
    /// Whether skiff made (or found) its own profile just now, so IAM may still be propagating it.
    pub fresh: bool,
}

impl Aws {
    /// The profile the instance runs with: `given` after checking it exists, else skiff's own, made if missing.
    pub async fn instance_identity(
        &self,
        given: Option<&str>,
        kms_key: Option<&str>,
    ) -> anyhow::Result<InstanceIdentity> {
        if let Some(name) = given {
            match self
                .iam
                .get_instance_profile()
                .instance_profile_name(name)
                .send()
                .await
            {
                Ok(output) => {
                    let has_role = output
                        .instance_profile
                        .is_some_and(|profile| !profile.roles.is_empty());
                    if !has_role {
                        anyhow::bail!(
                            "instance profile {name} has no role, so the instance could not reach Session Manager; add a role with AmazonSSMManagedInstanceCore to it, or leave out --instance-profile"
                        );
                    }
                    return Ok(InstanceIdentity {
                        profile_name: name.to_owned(),
                        fresh: false,
                    });
                }
                Err(error) if error_code(&error) == Some("NoSuchEntity") => anyhow::bail!(
                    "instance profile {name} does not exist; pass an existing --instance-profile, or leave it out to use skiff's {INSTANCE_ROLE}"
                ),
                Err(error) => {
                    return Err(aws_error(
                        &format!("looking up instance profile {name}"),
                        &error,
                    ));
                }
            }
        }
        let fresh = self.ensure_role().await?;
        if let Some(key) = kms_key {
            self.allow_kms_decrypt(key).await?;
        }
        let profile_fresh = self.ensure_profile().await?;
        Ok(InstanceIdentity {
            profile_name: INSTANCE_ROLE.to_owned(),
            fresh: fresh || profile_fresh,
        })
    }

    /// Makes the role if it is missing and attaches the SSM policy; true if anything was made.
    async fn ensure_role(&self) -> anyhow::Result<bool> {
        let created = match self
            .iam
            .create_role()
            .role_name(INSTANCE_ROLE)
            .assume_role_policy_document(TRUST_POLICY)
            .description("skiff workspace instances: Session Manager only")
            .tags(
                aws_sdk_iam::types::Tag::builder()
                    .key(TAG_MANAGED)
                    .value("true")
                    .build()
                    .map_err(|error| anyhow::anyhow!("building a tag: {error}"))?,
            )
            .send()
            .await
        {
            Ok(_) => true,
            Err(error) if error_code(&error) == Some("EntityAlreadyExists") => false,
            Err(error) => {
                return Err(aws_error(
                    &format!(
                        "creating IAM role {INSTANCE_ROLE} (see `skiff aws-policy` for the permissions skiff needs)"
                    ),
                    &error,
                ));
            }
        };
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
        Ok(created)
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

    /// Makes the instance profile if it is missing and puts the role in it; true if anything was made.
    async fn ensure_profile(&self) -> anyhow::Result<bool> {
        let created = match self
            .iam
            .create_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .send()
            .await
        {
            Ok(_) => true,
            Err(error) if error_code(&error) == Some("EntityAlreadyExists") => false,
            Err(error) => {
                return Err(aws_error(
                    &format!("creating instance profile {INSTANCE_ROLE}"),
                    &error,
                ));
            }
        };
        let profile = self
            .iam
            .get_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .send()
            .await
            .map_err(|error| {
                aws_error(&format!("reading instance profile {INSTANCE_ROLE}"), &error)
            })?;
        let has_role = profile.instance_profile.is_some_and(|profile| {
            profile
                .roles
                .iter()
                .any(|role| role.role_name == INSTANCE_ROLE)
        });
        if has_role {
            return Ok(created);
        }
        match self
            .iam
            .add_role_to_instance_profile()
            .instance_profile_name(INSTANCE_ROLE)
            .role_name(INSTANCE_ROLE)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            // A concurrent run added it between our read and this call.
            Err(error) if error_code(&error) == Some("LimitExceeded") => Ok(created),
            Err(error) => Err(aws_error(
                &format!("adding role {INSTANCE_ROLE} to instance profile {INSTANCE_ROLE}"),
                &error,
            )),
        }
    }

    /// Removes skiff's role and profile (`delete --purge`); what is already gone is not an error.
    pub async fn purge_instance_role(&self) -> anyhow::Result<()> {
        let gone = |code: Option<&str>| code == Some("NoSuchEntity");
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
            Ok(_) => {}
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
        match self
            .iam
            .delete_role_policy()
            .role_name(INSTANCE_ROLE)
            .policy_name(KMS_POLICY)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if gone(error_code(&error)) => {}
            Err(error) => {
                return Err(aws_error(
                    &format!("deleting inline policy {KMS_POLICY}"),
                    &error,
                ));
            }
        }
        match self.iam.delete_role().role_name(INSTANCE_ROLE).send().await {
            Ok(_) => Ok(()),
            Err(error) if gone(error_code(&error)) => Ok(()),
            Err(error) => Err(aws_error(
                &format!("deleting IAM role {INSTANCE_ROLE}"),
                &error,
            )),
        }
    }
}

/// How long RunInstances keeps retrying while IAM propagates a fresh instance profile.
pub const PROPAGATION_PATIENCE: Duration = Duration::from_secs(90);

/// Whether a RunInstances failure means "this instance profile is not visible to EC2 yet".
pub fn is_propagation_error(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("InvalidParameterValue")
        && message.is_some_and(|message| {
            message.contains("iamInstanceProfile") || message.contains("IAM Instance Profile")
        })
}
