//! The IAM policies skiff asks for: the developer's (`skiff aws-policy`), the operator's (`skiff aws-policy --admin`)
//! and the permissions boundary of the instance role (`skiff aws-setup` puts it on `skiff-instance`).
//!
//! [`PERMISSIONS`] lists every AWS call the developer's commands make in this module's siblings (a unit test
//! reads their source and fails when a call is missing here; `setup.rs` and `budget.rs`, run by an administrator as
//! `skiff aws-setup`, are the files left out), plus the permissions AWS checks without a call of their own
//! (`iam:PassRole`) and those of the Session Manager tunnel.
//!
//! The developer's policy holds no `iam:` write action at all: the role exists before any developer runs skiff,
//! and the one IAM permission is passing that role to EC2. Everything else is scoped to the caller's own
//! workspaces by AWS itself, comparing the resource's `skiff:owner` tag with the caller's `${aws:userid}`:
//! tags can be written only while a resource is created (`ec2:CreateAction`) and only with the caller as owner
//! (`aws:RequestTag`), so nobody can make another person's (or an untagged) instance look like theirs.

use anyhow::Context as _;
use serde_json::{Value, json};

use super::iam::INSTANCE_ROLE;
use super::team::Rules;
use super::{TAG_OWNER, TAG_WORKSPACE};

/// Which part of the developer's policy grants an action; each has its own resources and conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Statement {
    /// Reading, on every resource: these actions have no resource-level permissions and change nothing.
    Read,
    /// Canonical's public AMI parameters, and no other parameter.
    AmiParameters,
    /// Reading skiff's instance profile (`up` checks `aws-setup` made it).
    InstanceProfile,
    /// Handing skiff's role to EC2, and to nothing else.
    PassRole,
    /// Making instances and security groups tagged with the caller as owner, and tagging only then.
    Create,
    /// Changing or removing only what carries the caller's `skiff:owner` tag.
    ManageOwn,
    /// Run Command with `AWS-RunShellScript`, on the caller's instances only (`skiff enroll`).
    Commands,
    /// Session Manager port forwarding to the caller's instances.
    Sessions,
    /// The optional DNS record, in the one hosted zone given to `skiff aws-policy --dns-zone`.
    Dns,
}

/// One permission: the IAM action, the statement that grants it, and why skiff needs it.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub action: &'static str,
    pub statement: Statement,
    pub why: &'static str,
}

const fn permission(action: &'static str, statement: Statement, why: &'static str) -> Permission {
    Permission {
        action,
        statement,
        why,
    }
}

/// Every permission a developer's skiff uses.
pub const PERMISSIONS: &[Permission] = &[
    permission(
        "sts:GetCallerIdentity",
        Statement::Read,
        "who is calling: the skiff:owner tag",
    ),
    permission("ec2:DescribeRegions", Statement::Read, "checking --region"),
    permission(
        "ec2:DescribeInstanceTypes",
        Statement::Read,
        "the instance type's architecture",
    ),
    permission(
        "ec2:DescribeImages",
        Statement::Read,
        "the Ubuntu AMI, or checking --ami",
    ),
    permission(
        "ec2:DescribeVpcs",
        Statement::Read,
        "the default VPC, or checking --vpc",
    ),
    permission(
        "ec2:DescribeSubnets",
        Statement::Read,
        "choosing or checking the subnet",
    ),
    permission(
        "ec2:DescribeSecurityGroups",
        Statement::Read,
        "finding or checking the security group",
    ),
    permission(
        "ec2:DescribeInstances",
        Statement::Read,
        "finding workspaces by tag; list, status",
    ),
    permission(
        "ssm:DescribeInstanceInformation",
        Statement::Read,
        "waiting for the instance to be online in SSM",
    ),
    permission(
        "ssm:GetParameter",
        Statement::AmiParameters,
        "Canonical's public Ubuntu AMI parameters; the team's defaults under /skiff/team/",
    ),
    permission(
        "iam:GetInstanceProfile",
        Statement::InstanceProfile,
        "checking skiff-instance exists (skiff aws-setup made it)",
    ),
    permission(
        "iam:PassRole",
        Statement::PassRole,
        "launching with the skiff-instance profile",
    ),
    permission(
        "ec2:RunInstances",
        Statement::Create,
        "launching a workspace, tagged with its owner",
    ),
    permission(
        "ec2:CreateSecurityGroup",
        Statement::Create,
        "the workspace's group with no ingress, tagged with its owner",
    ),
    permission(
        "ec2:CreateTags",
        Statement::Create,
        "tags given at creation (tag specifications), never later",
    ),
    permission(
        "ec2:StartInstances",
        Statement::ManageOwn,
        "skiff up of a stopped workspace",
    ),
    permission("ec2:StopInstances", Statement::ManageOwn, "skiff stop"),
    permission(
        "ec2:TerminateInstances",
        Statement::ManageOwn,
        "skiff delete",
    ),
    permission(
        "ec2:GetConsoleOutput",
        Statement::ManageOwn,
        "skiff logs --boot",
    ),
    permission(
        "pricing:GetProducts",
        Statement::Read,
        "the on-demand and storage prices up shows before launching",
    ),
    permission(
        "ec2:DescribeSpotPriceHistory",
        Statement::Read,
        "the current spot price up --spot shows before launching",
    ),
    permission(
        "ec2:DescribeSpotInstanceRequests",
        Statement::Read,
        "finding a --spot workspace's request (delete) and why it is stopped (up)",
    ),
    permission(
        "ec2:CancelSpotInstanceRequests",
        Statement::ManageOwn,
        "skiff delete of a --spot workspace: its persistent request would launch another instance",
    ),
    permission(
        "ec2:DeleteSecurityGroup",
        Statement::ManageOwn,
        "skiff delete",
    ),
    permission(
        "ec2:RevokeSecurityGroupIngress",
        Statement::ManageOwn,
        "keeping the workspace's group free of ingress",
    ),
    permission("ssm:SendCommand", Statement::Commands, "skiff enroll"),
    permission(
        "ssm:StartSession",
        Statement::Sessions,
        "the tunnel to the agent",
    ),
    permission(
        "ssm:ResumeSession",
        Statement::Sessions,
        "the tunnel to the agent, after a network change",
    ),
    permission(
        "ssm:TerminateSession",
        Statement::Sessions,
        "closing the tunnel",
    ),
    permission(
        "route53:ListHostedZonesByName",
        Statement::Dns,
        "--dns-zone given by name",
    ),
    permission(
        "route53:GetHostedZone",
        Statement::Dns,
        "--dns-zone given by id",
    ),
    permission(
        "route53:ListResourceRecordSets",
        Statement::Dns,
        "checking the record before removing it",
    ),
    permission(
        "route53:ChangeResourceRecordSets",
        Statement::Dns,
        "the workspace's record: kept current by up, removed by delete",
    ),
];

/// The IAM actions that AWS checks without a call of their own (passing the role, and tagging through a creating
/// call's tag specifications), or that the tunnel makes (`client::tunnel`).
pub const NOT_CALLED_HERE: &[&str] = &[
    "ec2:CreateTags",
    "iam:PassRole",
    "ssm:StartSession",
    "ssm:ResumeSession",
    "ssm:TerminateSession",
];

/// The Run Command document `skiff enroll` uses, and the only one the policies allow.
pub const RUN_COMMAND_DOCUMENT: &str = "AWS-RunShellScript";
/// The Session Manager document of the tunnel, and the only one the developer's policy allows.
pub const SESSION_DOCUMENT: &str = "AWS-StartPortForwardingSession";
/// Canonical's public parameters, the only ones skiff reads.
pub const AMI_PARAMETERS: &str = "arn:aws:ssm:*:*:parameter/aws/service/canonical/*";
/// The team's defaults (`skiff aws-setup --team-defaults`), which every developer's `up` reads.
pub const TEAM_PARAMETERS: &str = "arn:aws:ssm:*:*:parameter/skiff/team/*";
/// The name of the instance role's permissions boundary, which `skiff aws-setup` makes.
pub const BOUNDARY_POLICY: &str = "skiff-instance-boundary";

/// What the printed policy depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyOptions {
    /// The hosted zone id of `--dns-zone`: Route53 changes are allowed there and nowhere else; none without it.
    pub dns_zone: Option<String>,
    /// Tag keys besides `skiff:*` and `Name` that `up --tag` may put on a workspace.
    pub tag_keys: Vec<String>,
    /// The KMS key of `up --kms-key`, if root volumes are encrypted with one: EBS may use it on the developer's
    /// behalf, and nothing else may.
    pub kms_key: Option<String>,
    /// The team's rules (`skiff aws-policy --team FILE`), as conditions on launching.
    pub rules: Rules,
}

impl PolicyOptions {
    /// Checks the options: a hosted zone id (`Z…`, with or without `/hostedzone/`) and plain tag keys.
    pub fn new(dns_zone: Option<&str>, tag_keys: &[String]) -> anyhow::Result<Self> {
        let dns_zone = dns_zone
            .map(|zone| {
                let id = zone.trim_start_matches("/hostedzone/");
                let well_formed = id.starts_with('Z')
                    && id.len() <= 32
                    && id
                        .chars()
                        .all(|character| character.is_ascii_uppercase() || character.is_ascii_digit());
                if !well_formed {
                    anyhow::bail!(
                        "--dns-zone {zone:?}: give the hosted zone's id, such as Z0123456789ABCDEFGHIJ (`aws route53 list-hosted-zones` shows it)"
                    );
                }
                Ok(id.to_owned())
            })
            .transpose()?;
        for key in tag_keys {
            let plain = !key.is_empty()
                && key.len() <= 128
                && !key.starts_with("aws:")
                && key.chars().all(|character| {
                    character.is_ascii_alphanumeric() || " _.:/=+-@".contains(character)
                })
                && !key.contains('*')
                && !key.contains('?');
            if !plain {
                anyhow::bail!(
                    "--tag-key {key:?}: give a tag key of letters, digits and _.:/=+-@ (no wildcards, not aws:)"
                );
            }
        }
        Ok(Self {
            dns_zone,
            tag_keys: tag_keys.to_vec(),
            kms_key: None,
            rules: Rules::default(),
        })
    }

    /// With the team's rules, which become IAM conditions on `ec2:RunInstances`: the instance types
    /// (`ec2:InstanceType`), the largest root volume (`ec2:VolumeSize`) and the tags every workspace carries
    /// (`aws:RequestTag/KEY` not null, and each such key allowed). The longest idle timeout is not among them:
    /// it travels in user-data, which IAM does not see.
    pub fn with_rules(mut self, rules: Rules) -> anyhow::Result<Self> {
        rules.check()?;
        for key in &rules.required_tags {
            if !self.tag_keys.contains(key) {
                self.tag_keys.push(key.clone());
            }
        }
        self.rules = rules;
        Ok(self)
    }

    /// With `key` (a KMS key's ARN, `arn:PARTITION:kms:REGION:ACCOUNT:key/ID`), which EBS may then use for the
    /// developer's encrypted root volumes.
    pub fn with_kms_key(mut self, key: &str) -> anyhow::Result<Self> {
        let parts: Vec<&str> = key.split(':').collect();
        let plain = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '-')
        };
        let well_formed = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && plain(parts[1])
            && parts[2] == "kms"
            && plain(parts[3])
            && parts[4].len() == 12
            && parts[4].chars().all(|character| character.is_ascii_digit())
            && parts[5].strip_prefix("key/").is_some_and(plain);
        if !well_formed {
            anyhow::bail!(
                "--kms-key {key:?}: give the key's ARN, such as arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab (an alias is not enough: the policy names the key itself)"
            );
        }
        self.kms_key = Some(key.to_owned());
        Ok(self)
    }
}

fn actions(statement: Statement) -> Vec<&'static str> {
    let mut actions: Vec<&str> = PERMISSIONS
        .iter()
        .filter(|permission| permission.statement == statement)
        .map(|permission| permission.action)
        .collect();
    actions.sort_unstable();
    actions
}

/// The `${aws:userid}` policy variable: AWS puts the caller's user id there when it evaluates the policy.
const CALLER: &str = "${aws:userid}";

/// A launch's root volume.
const VOLUMES: &str = "arn:aws:ec2:*:*:volume/*";

/// The resources a launch creates and tags (the spot request only with `--spot`).
fn launched_resources() -> Vec<&'static str> {
    vec![
        VOLUMES,
        "arn:aws:ec2:*:*:network-interface/*",
        "arn:aws:ec2:*:*:spot-instances-request/*",
    ]
}

/// The conditions on every tag written: the caller as owner, a workspace name, and only known keys.
fn owner_request_tags(options: &PolicyOptions) -> serde_json::Map<String, Value> {
    let mut keys: Vec<String> = vec!["skiff:*".into(), "Name".into()];
    keys.extend(options.tag_keys.iter().cloned());
    let mut conditions = serde_json::Map::new();
    conditions.insert(
        "StringEquals".into(),
        json!({ format!("aws:RequestTag/{TAG_OWNER}"): CALLER }),
    );
    conditions.insert(
        "Null".into(),
        json!({ format!("aws:RequestTag/{TAG_WORKSPACE}"): "false" }),
    );
    conditions.insert(
        "ForAllValues:StringLike".into(),
        json!({ "aws:TagKeys": keys }),
    );
    conditions
}

/// The developer's policy (`skiff aws-policy`).
pub fn developer_policy(options: &PolicyOptions) -> Value {
    let owned = json!({ "StringEquals": { format!("aws:ResourceTag/{TAG_OWNER}"): CALLER } });
    let ssm_owned = json!({ "StringEquals": { format!("ssm:resourceTag/{TAG_OWNER}"): CALLER } });
    let mut launch_instance = owner_request_tags(options);
    launch_instance.insert(
        "StringEquals".into(),
        json!({
            format!("aws:RequestTag/{TAG_OWNER}"): CALLER,
            "ec2:MetadataHttpTokens": "required"
        }),
    );
    let rules = &options.rules;
    if !rules.instance_types.is_empty() {
        launch_instance.insert(
            "StringLike".into(),
            json!({ "ec2:InstanceType": rules.instance_types }),
        );
    }
    if let Some(Value::Object(null)) = launch_instance.get_mut("Null") {
        for key in &rules.required_tags {
            null.insert(format!("aws:RequestTag/{key}"), json!("false"));
        }
    }
    // With a largest volume, volumes get a statement of their own that says so.
    let mut launched_beside_instance = launched_resources();
    if rules.max_volume_size.is_some() {
        launched_beside_instance.retain(|resource| *resource != VOLUMES);
    }
    let mut tag_on_create = owner_request_tags(options);
    tag_on_create.insert(
        "StringEquals".into(),
        json!({
            format!("aws:RequestTag/{TAG_OWNER}"): CALLER,
            "ec2:CreateAction": ["RunInstances", "CreateSecurityGroup"]
        }),
    );
    let mut tagged_at_creation = launched_resources();
    tagged_at_creation.insert(0, "arn:aws:ec2:*:*:instance/*");
    tagged_at_creation.push("arn:aws:ec2:*:*:security-group/*");
    let mut statements = vec![
        json!({
            "Sid": "SkiffRead",
            "Effect": "Allow",
            "Action": actions(Statement::Read),
            "Resource": "*"
        }),
        json!({
            "Sid": "SkiffCanonicalAmiParameters",
            "Effect": "Allow",
            "Action": actions(Statement::AmiParameters),
            "Resource": [AMI_PARAMETERS, TEAM_PARAMETERS]
        }),
        json!({
            "Sid": "SkiffReadInstanceProfile",
            "Effect": "Allow",
            "Action": actions(Statement::InstanceProfile),
            "Resource": format!("arn:aws:iam::*:instance-profile/{INSTANCE_ROLE}")
        }),
        json!({
            "Sid": "SkiffPassInstanceRoleToEc2",
            "Effect": "Allow",
            "Action": actions(Statement::PassRole),
            "Resource": format!("arn:aws:iam::*:role/{INSTANCE_ROLE}"),
            "Condition": { "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } }
        }),
        json!({
            "Sid": "SkiffLaunchOwnedInstances",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": launch_instance
        }),
        json!({
            "Sid": "SkiffLaunchOwnedVolumesAndInterfaces",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": launched_beside_instance,
            "Condition": owner_request_tags(options)
        }),
        json!({
            "Sid": "SkiffLaunchFromImagesAndNetworks",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances"],
            "Resource": [
                "arn:aws:ec2:*::image/*",
                "arn:aws:ec2:*:*:subnet/*",
                "arn:aws:ec2:*:*:security-group/*"
            ]
        }),
        json!({
            "Sid": "SkiffCreateOwnedSecurityGroups",
            "Effect": "Allow",
            "Action": ["ec2:CreateSecurityGroup"],
            "Resource": "arn:aws:ec2:*:*:security-group/*",
            "Condition": owner_request_tags(options)
        }),
        json!({
            "Sid": "SkiffCreateSecurityGroupsInVpcs",
            "Effect": "Allow",
            "Action": ["ec2:CreateSecurityGroup"],
            "Resource": "arn:aws:ec2:*:*:vpc/*"
        }),
        json!({
            "Sid": "SkiffTagOnlyWhileCreating",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": tagged_at_creation,
            "Condition": tag_on_create
        }),
        json!({
            "Sid": "SkiffManageOwnInstances",
            "Effect": "Allow",
            "Action": [
                "ec2:GetConsoleOutput",
                "ec2:StartInstances",
                "ec2:StopInstances",
                "ec2:TerminateInstances"
            ],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": owned
        }),
        json!({
            "Sid": "SkiffCancelOwnSpotRequests",
            "Effect": "Allow",
            "Action": ["ec2:CancelSpotInstanceRequests"],
            "Resource": "arn:aws:ec2:*:*:spot-instances-request/*",
            "Condition": owned
        }),
        json!({
            "Sid": "SkiffManageOwnSecurityGroups",
            "Effect": "Allow",
            "Action": ["ec2:DeleteSecurityGroup", "ec2:RevokeSecurityGroupIngress"],
            "Resource": "arn:aws:ec2:*:*:security-group/*",
            "Condition": owned
        }),
        json!({
            "Sid": "SkiffRunCommandDocument",
            "Effect": "Allow",
            "Action": actions(Statement::Commands),
            "Resource": format!("arn:aws:ssm:*:*:document/{RUN_COMMAND_DOCUMENT}")
        }),
        json!({
            "Sid": "SkiffRunCommandOnOwnInstances",
            "Effect": "Allow",
            "Action": actions(Statement::Commands),
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": ssm_owned
        }),
        json!({
            "Sid": "SkiffSessionDocument",
            "Effect": "Allow",
            "Action": ["ssm:StartSession"],
            "Resource": format!("arn:aws:ssm:*:*:document/{SESSION_DOCUMENT}")
        }),
        json!({
            "Sid": "SkiffSessionsToOwnInstances",
            "Effect": "Allow",
            "Action": ["ssm:StartSession"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": {
                "StringEquals": { format!("ssm:resourceTag/{TAG_OWNER}"): CALLER },
                // Without it, a session that names no document gets the default shell document.
                "BoolIfExists": { "ssm:SessionDocumentAccessCheck": "true" }
            }
        }),
        json!({
            "Sid": "SkiffOwnSessions",
            "Effect": "Allow",
            "Action": ["ssm:ResumeSession", "ssm:TerminateSession"],
            "Resource": "arn:aws:ssm:*:*:session/*",
            // Session Manager tags every session with the `aws:userid` of who started it. A session's id holds the
            // session name only (not the role id), so `session/${aws:userid}-*` would never match for an SSO user.
            "Condition": {
                "StringLike": { "ssm:resourceTag/aws:ssmmessages:session-id": CALLER }
            }
        }),
    ];
    if let Some(max) = rules.max_volume_size {
        let mut volume = owner_request_tags(options);
        volume.insert(
            "NumericLessThanEquals".into(),
            json!({ "ec2:VolumeSize": max.to_string() }),
        );
        statements.insert(
            6,
            json!({
                "Sid": "SkiffLaunchOwnedVolumesUpToTheTeamsSize",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances"],
                "Resource": VOLUMES,
                "Condition": volume
            }),
        );
    }
    if let Some(key) = &options.kms_key {
        // What launching with an encrypted root volume needs of its key, and only through EC2: the developer
        // cannot decrypt anything with it directly, and a grant can go only to an AWS resource (the volume).
        statements.push(json!({
            "Sid": "SkiffEncryptRootVolumesWithOneKey",
            "Effect": "Allow",
            "Action": [
                "kms:DescribeKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
                "kms:Decrypt"
            ],
            "Resource": key,
            "Condition": { "StringLike": { "kms:ViaService": "ec2.*.amazonaws.com" } }
        }));
        statements.push(json!({
            "Sid": "SkiffGrantTheKeyToVolumes",
            "Effect": "Allow",
            "Action": ["kms:CreateGrant"],
            "Resource": key,
            "Condition": {
                "Bool": { "kms:GrantIsForAWSResource": "true" },
                "StringLike": { "kms:ViaService": "ec2.*.amazonaws.com" }
            }
        }));
    }
    if let Some(zone) = &options.dns_zone {
        statements.push(json!({
            "Sid": "SkiffFindHostedZone",
            "Effect": "Allow",
            "Action": ["route53:ListHostedZonesByName"],
            "Resource": "*"
        }));
        statements.push(json!({
            "Sid": "SkiffDnsRecordsInOneZone",
            "Effect": "Allow",
            "Action": [
                "route53:ChangeResourceRecordSets",
                "route53:GetHostedZone",
                "route53:ListResourceRecordSets"
            ],
            "Resource": format!("arn:aws:route53:::hostedzone/{zone}")
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The operator's policy (`skiff aws-policy --admin`): everyone's workspaces seen, stopped, deleted and enrolled
/// into, for `list --all` and clean-ups. Every change is limited to what carries a `skiff:workspace` tag, which only
/// a launch can write.
pub fn operator_policy(options: &PolicyOptions) -> Value {
    let workspace = json!({ "Null": { format!("aws:ResourceTag/{TAG_WORKSPACE}"): "false" } });
    let ssm_workspace = json!({ "Null": { format!("ssm:resourceTag/{TAG_WORKSPACE}"): "false" } });
    let mut statements = vec![
        json!({
            "Sid": "SkiffOperatorRead",
            "Effect": "Allow",
            "Action": actions(Statement::Read),
            "Resource": "*"
        }),
        json!({
            "Sid": "SkiffOperatorStopAndDeleteWorkspaces",
            "Effect": "Allow",
            "Action": [
                "ec2:GetConsoleOutput",
                "ec2:StopInstances",
                "ec2:TerminateInstances"
            ],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": workspace.clone()
        }),
        json!({
            "Sid": "SkiffOperatorCancelWorkspaceSpotRequests",
            "Effect": "Allow",
            "Action": ["ec2:CancelSpotInstanceRequests"],
            "Resource": "arn:aws:ec2:*:*:spot-instances-request/*",
            "Condition": workspace.clone()
        }),
        json!({
            "Sid": "SkiffOperatorDeleteWorkspaceGroups",
            "Effect": "Allow",
            "Action": ["ec2:DeleteSecurityGroup"],
            "Resource": "arn:aws:ec2:*:*:security-group/*",
            "Condition": workspace
        }),
        json!({
            "Sid": "SkiffOperatorRunCommandDocument",
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": format!("arn:aws:ssm:*:*:document/{RUN_COMMAND_DOCUMENT}")
        }),
        json!({
            "Sid": "SkiffOperatorEnrollIntoWorkspaces",
            "Effect": "Allow",
            "Action": ["ssm:SendCommand"],
            "Resource": "arn:aws:ec2:*:*:instance/*",
            "Condition": ssm_workspace
        }),
    ];
    if let Some(zone) = &options.dns_zone {
        statements.push(json!({
            "Sid": "SkiffOperatorDnsRecordsInOneZone",
            "Effect": "Allow",
            "Action": [
                "route53:ChangeResourceRecordSets",
                "route53:GetHostedZone",
                "route53:ListResourceRecordSets"
            ],
            "Resource": format!("arn:aws:route53:::hostedzone/{zone}")
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// The permissions boundary of the instance role: at most what Session Manager's agent needs (the actions of
/// `AmazonSSMManagedInstanceCore`) and decrypting with the key `aws-setup --kms-key` names (the role's own
/// inline policy picks the key). Whatever policy is ever attached to the role,
/// the instance (and so anyone with a root shell on it) can do no more.
pub fn instance_boundary() -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SkiffInstanceSessionManagerOnly",
                "Effect": "Allow",
                "Action": [
                    "ec2messages:AcknowledgeMessage",
                    "ec2messages:DeleteMessage",
                    "ec2messages:FailMessage",
                    "ec2messages:GetEndpoint",
                    "ec2messages:GetMessages",
                    "ec2messages:SendReply",
                    "ssm:DescribeAssociation",
                    "ssm:DescribeDocument",
                    "ssm:GetDeployablePatchSnapshotForInstance",
                    "ssm:GetDocument",
                    "ssm:GetManifest",
                    "ssm:ListAssociations",
                    "ssm:ListInstanceAssociations",
                    "ssm:PutComplianceItems",
                    "ssm:PutConfigurePackageResult",
                    "ssm:PutInventory",
                    "ssm:UpdateAssociationStatus",
                    "ssm:UpdateInstanceAssociationStatus",
                    "ssm:UpdateInstanceInformation",
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel"
                ],
                "Resource": "*"
            },
            {
                "Sid": "SkiffInstanceVolumeKey",
                "Effect": "Allow",
                "Action": ["kms:Decrypt"],
                "Resource": "*"
            },
            {
                // Reading images from ECR, when `aws-setup --ecr` gave the role a policy for its own account's
                // repositories; never pushing.
                "Sid": "SkiffInstanceEcrPull",
                "Effect": "Allow",
                "Action": ECR_PULL,
                "Resource": "*"
            }
        ]
    })
}

/// What pulling an image from ECR takes: a login token, and the image's manifest and layers.
pub const ECR_PULL: [&str; 4] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetAuthorizationToken",
    "ecr:GetDownloadUrlForLayer",
];

/// The role's policy of `aws-setup --ecr`: a login token (which has no resource), and reading the repositories of
/// `account` (in `partition`) only.
pub fn ecr_read(partition: &str, account: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SkiffEcrLogin",
                "Effect": "Allow",
                "Action": ["ecr:GetAuthorizationToken"],
                "Resource": "*"
            },
            {
                "Sid": "SkiffEcrPullThisAccount",
                "Effect": "Allow",
                "Action": [
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:BatchGetImage",
                    "ecr:GetDownloadUrlForLayer"
                ],
                "Resource": format!("arn:{partition}:ecr:*:{account}:repository/*")
            }
        ]
    })
}

/// A policy as `skiff aws-policy` prints it.
pub fn policy_text(policy: &Value) -> String {
    serde_json::to_string_pretty(policy).expect("a JSON value always serialises")
}

/// `skiff aws-policy [--admin]`: prints the developer's IAM policy (or the operator's), as JSON for
/// `aws iam create-policy`.
pub fn command(args: &crate::cli::AwsPolicyArgs) -> anyhow::Result<i32> {
    let mut options = PolicyOptions::new(args.dns_zone.as_deref(), &args.tag_key)?;
    if let Some(key) = &args.kms_key {
        options = options.with_kms_key(key)?;
    }
    if let Some(file) = &args.team {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading the team's file {}", file.display()))?;
        let team = super::team::Team::from_file(&text)
            .with_context(|| format!("the team's file {}", file.display()))?;
        options = options.with_rules(team.rules)?;
    }
    let document = if args.admin {
        operator_policy(&options)
    } else {
        developer_policy(&options)
    };
    println!("{}", policy_text(&document));
    Ok(0)
}
