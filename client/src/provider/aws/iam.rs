//! The instance's identity: the instance profile `skiff-instance` that `skiff aws-setup` made once per account (its
//! role has `AmazonSSMManagedInstanceCore` and a permissions boundary), or the user's own instance profile. A
//! developer's skiff only reads IAM: it never makes, changes or removes a role or profile, so `up` without the
//! profile says who has to run `aws-setup`.

use std::time::Duration;

use super::{Aws, aws_error, error_code};

/// The name of skiff's role and of its instance profile.
pub const INSTANCE_ROLE: &str = "skiff-instance";

/// What the instance runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// The instance profile's name.
    pub profile_name: String,
    /// Whether IAM may still be propagating the profile to EC2 (never, now that `aws-setup` makes it beforehand;
    /// kept so a launch right after `aws-setup` still waits for it).
    pub fresh: bool,
}

impl Aws {
    /// The profile the instance runs with: `given`, else skiff's own; either is checked to exist with a role.
    pub async fn instance_identity(&self, given: Option<&str>) -> anyhow::Result<InstanceIdentity> {
        let name = given.unwrap_or(INSTANCE_ROLE);
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
                if !has_role && given.is_some() {
                    anyhow::bail!(
                        "instance profile {name} has no role, so the instance could not reach Session Manager; add a role with AmazonSSMManagedInstanceCore to it, or leave out --instance-profile"
                    );
                }
                if !has_role {
                    anyhow::bail!(
                        "{}",
                        setup_needed(&format!("instance profile {name} has no role"))
                    );
                }
                Ok(InstanceIdentity {
                    profile_name: name.to_owned(),
                    fresh: false,
                })
            }
            Err(error) if error_code(&error) == Some("NoSuchEntity") => match given {
                Some(_) => anyhow::bail!(
                    "instance profile {name} does not exist; pass an existing --instance-profile, or leave it out to use skiff's {INSTANCE_ROLE}"
                ),
                None => anyhow::bail!(
                    "{}",
                    setup_needed(&format!(
                        "instance profile {name} does not exist in this account"
                    ))
                ),
            },
            Err(error) => Err(aws_error(
                &format!("looking up instance profile {name}"),
                &error,
            )),
        }
    }
}

/// The error of an account without skiff's role: who runs `aws-setup`, and why a developer cannot.
pub fn setup_needed(what: &str) -> String {
    format!(
        "{what}: someone allowed to manage IAM in this account runs `skiff aws-setup` once (it makes the role and instance profile {INSTANCE_ROLE}); the developer policy of `skiff aws-policy` has no IAM write permission on purpose"
    )
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
