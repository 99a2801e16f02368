//! `skiff aws-policy`: the least-privilege IAM policy a skiff user needs, derived from the calls skiff makes.
//!
//! [`PERMISSIONS`] lists every AWS call this module's siblings make (a unit test reads their source and fails
//! when a call is missing here), plus the permission AWS checks without a call of its own (`iam:PassRole`) and those
//! of the Session Manager tunnel. Mutations are limited to resources tagged `skiff:workspace`, IAM to the
//! `skiff-instance` role and profile, DNS changes to hosted zones.

use serde_json::{Value, json};

use super::TAG_WORKSPACE;
use super::iam::INSTANCE_ROLE;

/// Which statement of the policy grants an action; each has its own resources and conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Statement {
    /// Reading, on every resource: describes never change anything.
    Read,
    /// Making instances and security groups, and tagging them as they are made.
    Create,
    /// Changing or removing only what carries a `skiff:workspace` tag.
    ManageTagged,
    /// skiff's own role and instance profile.
    InstanceRole,
    /// Handing skiff's role to EC2, and to nothing else.
    PassRole,
    /// Run Command with `AWS-RunShellScript`, on skiff's instances only.
    Commands,
    /// Session Manager port forwarding to skiff's instances.
    Sessions,
    /// The optional DNS record, in hosted zones (`--dns-zone`).
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

/// Every permission skiff uses.
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
    permission("ec2:GetConsoleOutput", Statement::Read, "skiff logs --boot"),
    permission(
        "ssm:GetParameter",
        Statement::Read,
        "Canonical's public Ubuntu AMI parameters",
    ),
    permission(
        "ssm:GetCommandInvocation",
        Statement::Read,
        "waiting for skiff enroll's Run Command",
    ),
    permission(
        "ec2:RunInstances",
        Statement::Create,
        "launching a workspace",
    ),
    permission(
        "ec2:CreateSecurityGroup",
        Statement::Create,
        "the workspace's group with no ingress",
    ),
    permission(
        "ec2:CreateTags",
        Statement::Create,
        "tags given at creation (tag specifications), and the DNS record's tags",
    ),
    permission(
        "ec2:StartInstances",
        Statement::ManageTagged,
        "skiff up of a stopped workspace",
    ),
    permission("ec2:StopInstances", Statement::ManageTagged, "skiff stop"),
    permission(
        "ec2:TerminateInstances",
        Statement::ManageTagged,
        "skiff delete",
    ),
    permission(
        "ec2:DeleteSecurityGroup",
        Statement::ManageTagged,
        "skiff delete",
    ),
    permission(
        "ec2:RevokeSecurityGroupIngress",
        Statement::ManageTagged,
        "keeping the workspace's group free of ingress",
    ),
    permission(
        "iam:CreateRole",
        Statement::InstanceRole,
        "the skiff-instance role, once per account",
    ),
    permission(
        "iam:AttachRolePolicy",
        Statement::InstanceRole,
        "AmazonSSMManagedInstanceCore on the role",
    ),
    permission(
        "iam:PutRolePolicy",
        Statement::InstanceRole,
        "kms:Decrypt on --kms-key",
    ),
    permission(
        "iam:CreateInstanceProfile",
        Statement::InstanceRole,
        "the skiff-instance profile",
    ),
    permission(
        "iam:GetInstanceProfile",
        Statement::InstanceRole,
        "checking the profile (or --instance-profile)",
    ),
    permission(
        "iam:AddRoleToInstanceProfile",
        Statement::InstanceRole,
        "the role in its profile",
    ),
    permission(
        "iam:RemoveRoleFromInstanceProfile",
        Statement::InstanceRole,
        "skiff delete --purge",
    ),
    permission(
        "iam:DeleteInstanceProfile",
        Statement::InstanceRole,
        "skiff delete --purge",
    ),
    permission(
        "iam:DetachRolePolicy",
        Statement::InstanceRole,
        "skiff delete --purge",
    ),
    permission(
        "iam:DeleteRolePolicy",
        Statement::InstanceRole,
        "skiff delete --purge",
    ),
    permission(
        "iam:DeleteRole",
        Statement::InstanceRole,
        "skiff delete --purge",
    ),
    permission(
        "iam:PassRole",
        Statement::PassRole,
        "launching with the skiff-instance profile",
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
        "ssm:DescribeInstanceInformation",
        Statement::Read,
        "waiting for the instance to be online in SSM",
    ),
    permission(
        "route53:ListHostedZonesByName",
        Statement::Read,
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

/// The IAM actions that AWS checks without a call of their own, or that the tunnel makes (`client::tunnel`).
pub const NOT_CALLED_HERE: &[&str] = &[
    "iam:PassRole",
    "ssm:StartSession",
    "ssm:ResumeSession",
    "ssm:TerminateSession",
];

fn actions(statement: Statement) -> Vec<&'static str> {
    let mut actions: Vec<&str> = PERMISSIONS
        .iter()
        .filter(|permission| permission.statement == statement)
        .map(|permission| permission.action)
        .collect();
    actions.sort_unstable();
    actions
}

/// The policy document.
pub fn policy() -> Value {
    let tagged = json!({ "Null": { format!("aws:ResourceTag/{TAG_WORKSPACE}"): "false" } });
    let ssm_tagged = json!({ "Null": { format!("ssm:resourceTag/{TAG_WORKSPACE}"): "false" } });
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SkiffRead",
                "Effect": "Allow",
                "Action": actions(Statement::Read),
                "Resource": "*"
            },
            {
                "Sid": "SkiffCreate",
                "Effect": "Allow",
                "Action": actions(Statement::Create),
                "Resource": "*"
            },
            {
                "Sid": "SkiffManageTaggedResources",
                "Effect": "Allow",
                "Action": actions(Statement::ManageTagged),
                "Resource": "*",
                "Condition": tagged
            },
            {
                "Sid": "SkiffInstanceRole",
                "Effect": "Allow",
                "Action": actions(Statement::InstanceRole),
                "Resource": [
                    format!("arn:aws:iam::*:role/{INSTANCE_ROLE}"),
                    "arn:aws:iam::*:instance-profile/*"
                ]
            },
            {
                "Sid": "SkiffPassInstanceRole",
                "Effect": "Allow",
                "Action": actions(Statement::PassRole),
                "Resource": format!("arn:aws:iam::*:role/{INSTANCE_ROLE}"),
                "Condition": { "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } }
            },
            {
                "Sid": "SkiffRunCommandDocument",
                "Effect": "Allow",
                "Action": actions(Statement::Commands),
                "Resource": "arn:aws:ssm:*::document/AWS-RunShellScript"
            },
            {
                "Sid": "SkiffRunCommandOnWorkspaces",
                "Effect": "Allow",
                "Action": actions(Statement::Commands),
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": ssm_tagged
            },
            {
                "Sid": "SkiffSessionDocument",
                "Effect": "Allow",
                "Action": ["ssm:StartSession"],
                "Resource": "arn:aws:ssm:*::document/AWS-StartPortForwardingSession"
            },
            {
                "Sid": "SkiffSessionsToWorkspaces",
                "Effect": "Allow",
                "Action": ["ssm:StartSession"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": ssm_tagged
            },
            {
                "Sid": "SkiffOwnSessions",
                "Effect": "Allow",
                "Action": ["ssm:ResumeSession", "ssm:TerminateSession"],
                "Resource": "arn:aws:ssm:*:*:session/${aws:userid}-*"
            },
            {
                "Sid": "SkiffDnsRecords",
                "Effect": "Allow",
                "Action": actions(Statement::Dns),
                "Resource": "arn:aws:route53:::hostedzone/*"
            }
        ]
    })
}

/// The policy as `skiff aws-policy` prints it.
pub fn policy_text() -> String {
    serde_json::to_string_pretty(&policy()).expect("a JSON value always serialises")
}
