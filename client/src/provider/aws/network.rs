//! Where the instance goes: the given subnet, or a subnet of the given VPC, or the default VPC's default subnet
//! (in the given availability zone); and its security group: one per workspace with **no ingress rules at
//! all**, or the user's own group, refused when it lets in the whole internet unless that is allowed explicitly.

use aws_sdk_ec2::types::{IpPermission, SecurityGroup, Subnet};

use super::{Aws, TAG_OWNER, TAG_WORKSPACE, aws_error, ec2_tag, error_code, filter};

/// The subnet chosen for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub vpc_id: String,
    pub subnet_id: String,
    pub availability_zone: String,
}

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest<'a> {
    pub subnet: Option<&'a str>,
    pub vpc: Option<&'a str>,
    pub availability_zone: Option<&'a str>,
}

impl Aws {
    /// Chooses the subnet, checking what the user gave before anything is created.
    pub async fn placement(&self, request: &NetworkRequest<'_>) -> anyhow::Result<Placement> {
        if let Some(subnet_id) = request.subnet {
            let subnets = self
                .ec2
                .describe_subnets()
                .subnet_ids(subnet_id)
                .send()
                .await
                .map_err(|error| {
                    if error_code(&error).is_some_and(|code| code.starts_with("InvalidSubnet")) {
                        anyhow::anyhow!(
                            "subnet {subnet_id} does not exist in region {}; pass a subnet of this region (`aws ec2 describe-subnets`) or another --region",
                            self.region
                        )
                    } else {
                        aws_error(&format!("looking up subnet {subnet_id}"), &error)
                    }
                })?;
            let subnet = subnets
                .subnets
                .unwrap_or_default()
                .into_iter()
                .next()
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "subnet {subnet_id} does not exist in region {}",
                        self.region
                    )
                })?;
            let placement = placement_of(&subnet)?;
            if let Some(vpc) = request.vpc
                && vpc != placement.vpc_id
            {
                anyhow::bail!(
                    "subnet {subnet_id} is in VPC {}, not in VPC {vpc} given with --vpc; pass a subnet of {vpc}, or leave out --vpc",
                    placement.vpc_id
                );
            }
            if let Some(zone) = request.availability_zone
                && zone != placement.availability_zone
            {
                anyhow::bail!(
                    "subnet {subnet_id} is in availability zone {}, not in {zone} given with --availability-zone; leave one of them out",
                    placement.availability_zone
                );
            }
            return Ok(placement);
        }
        let vpc_id = match request.vpc {
            Some(vpc) => {
                let found = self
                    .ec2
                    .describe_vpcs()
                    .vpc_ids(vpc)
                    .send()
                    .await
                    .map_err(|error| {
                        if error_code(&error).is_some_and(|code| code.starts_with("InvalidVpc")) {
                            anyhow::anyhow!(
                                "VPC {vpc} does not exist in region {}; pass a VPC of this region or another --region",
                                self.region
                            )
                        } else {
                            aws_error(&format!("looking up VPC {vpc}"), &error)
                        }
                    })?;
                if found.vpcs.unwrap_or_default().is_empty() {
                    anyhow::bail!("VPC {vpc} does not exist in region {}", self.region);
                }
                vpc.to_owned()
            }
            None => {
                let found = self
                    .ec2
                    .describe_vpcs()
                    .filters(filter("is-default", "true"))
                    .send()
                    .await
                    .map_err(|error| aws_error("looking up the default VPC", &error))?;
                found
                    .vpcs
                    .unwrap_or_default()
                    .into_iter()
                    .find_map(|vpc| vpc.vpc_id)
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "region {} has no default VPC; pass --subnet SUBNET_ID (or --vpc VPC_ID) to say where the instance goes",
                            self.region
                        )
                    })?
            }
        };
        let mut query = self
            .ec2
            .describe_subnets()
            .filters(filter("vpc-id", &vpc_id));
        if let Some(zone) = request.availability_zone {
            query = query.filters(filter("availability-zone", zone));
        }
        let subnets = query
            .send()
            .await
            .map_err(|error| aws_error(&format!("listing the subnets of VPC {vpc_id}"), &error))?
            .subnets
            .unwrap_or_default();
        // Prefer the zone's default subnet, then the lowest zone name, so the choice is the same every time.
        let chosen = subnets
            .iter()
            .filter(|subnet| {
                subnet
                    .state
                    .as_ref()
                    .is_none_or(|state| state.as_str() == "available")
            })
            .min_by_key(|subnet| {
                (
                    !subnet.default_for_az.unwrap_or(false),
                    subnet.availability_zone.clone().unwrap_or_default(),
                    subnet.subnet_id.clone().unwrap_or_default(),
                )
            })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "VPC {vpc_id} has no available subnet{}; pass --subnet SUBNET_ID",
                    request
                        .availability_zone
                        .map(|zone| format!(" in {zone}"))
                        .unwrap_or_default()
                )
            })?;
        placement_of(chosen)
    }

    /// The workspace's own security group (found by its tags, else made with no ingress rules), or the
    /// user's group after checking it.
    pub async fn security_group(
        &self,
        workspace: &str,
        owner: &str,
        vpc_id: &str,
        given: Option<&str>,
        allow_open: bool,
    ) -> anyhow::Result<String> {
        if let Some(group_id) = given {
            let group = self.describe_group(group_id).await?.ok_or_else(|| {
                anyhow::anyhow!(
                    "security group {group_id} does not exist in region {}; pass another --security-group",
                    self.region
                )
            })?;
            if group.vpc_id.as_deref() != Some(vpc_id) {
                anyhow::bail!(
                    "security group {group_id} is in VPC {}, but the instance goes into VPC {vpc_id}; pass a group of {vpc_id}",
                    group.vpc_id.as_deref().unwrap_or("?")
                );
            }
            if let Some(open) = open_ingress(&group)
                && !allow_open
            {
                anyhow::bail!(
                    "security group {group_id} allows ingress from {open}; skiff needs no inbound port, so this is refused; \
                     remove that rule, leave out --security-group (skiff makes one with no ingress), or pass --allow-open-security-group"
                );
            }
            return Ok(group_id.to_owned());
        }
        if let Some(group) = self.find_workspace_group(workspace, owner, vpc_id).await? {
            let group_id = group.group_id.clone().unwrap_or_default();
            self.revoke_all_ingress(&group).await?;
            return Ok(group_id);
        }
        let name = group_name(workspace, owner);
        let created = self
            .ec2
            .create_security_group()
            .group_name(&name)
            .description(format!(
                "skiff workspace {workspace}: no inbound rules, all traffic rides Session Manager"
            ))
            .vpc_id(vpc_id)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                    .tags(ec2_tag(TAG_WORKSPACE, workspace))
                    .tags(ec2_tag(TAG_OWNER, owner))
                    .tags(ec2_tag("Name", &name))
                    .build(),
            )
            .send()
            .await;
        match created {
            Ok(output) => output
                .group_id
                .ok_or_else(|| anyhow::anyhow!("CreateSecurityGroup returned no group id")),
            // CreateSecurityGroup takes no client token; its name is the idempotency key instead. A
            // concurrent or interrupted run made it already: use that one.
            Err(error) if error_code(&error) == Some("InvalidGroup.Duplicate") => {
                let group = self
                    .find_workspace_group(workspace, owner, vpc_id)
                    .await?
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "security group {name} exists in VPC {vpc_id} but is not tagged as workspace {workspace}'s; delete it or rename the workspace"
                        )
                    })?;
                self.revoke_all_ingress(&group).await?;
                Ok(group.group_id.unwrap_or_default())
            }
            Err(error) => Err(aws_error(
                &format!("creating security group {name} in VPC {vpc_id}"),
                &error,
            )),
        }
    }

    async fn describe_group(&self, group_id: &str) -> anyhow::Result<Option<SecurityGroup>> {
        match self
            .ec2
            .describe_security_groups()
            .group_ids(group_id)
            .send()
            .await
        {
            Ok(output) => Ok(output
                .security_groups
                .unwrap_or_default()
                .into_iter()
                .next()),
            Err(error)
                if error_code(&error).is_some_and(|code| code.starts_with("InvalidGroup")) =>
            {
                Ok(None)
            }
            Err(error) => Err(aws_error(
                &format!("looking up security group {group_id}"),
                &error,
            )),
        }
    }

    /// The workspace's own groups in any VPC (several only if something went wrong).
    pub(crate) async fn workspace_groups(
        &self,
        workspace: &str,
        owner: &str,
    ) -> anyhow::Result<Vec<SecurityGroup>> {
        let output = self
            .ec2
            .describe_security_groups()
            .filters(filter(&format!("tag:{TAG_WORKSPACE}"), workspace))
            .filters(filter(&format!("tag:{TAG_OWNER}"), owner))
            .send()
            .await
            .map_err(|error| {
                aws_error(
                    &format!("looking up workspace {workspace}'s security group"),
                    &error,
                )
            })?;
        Ok(output.security_groups.unwrap_or_default())
    }

    async fn find_workspace_group(
        &self,
        workspace: &str,
        owner: &str,
        vpc_id: &str,
    ) -> anyhow::Result<Option<SecurityGroup>> {
        Ok(self
            .workspace_groups(workspace, owner)
            .await?
            .into_iter()
            .find(|group| group.vpc_id.as_deref() == Some(vpc_id)))
    }

    /// Our group must have no ingress at all: anything someone added is removed, and said so.
    async fn revoke_all_ingress(&self, group: &SecurityGroup) -> anyhow::Result<()> {
        let permissions = group.ip_permissions.clone().unwrap_or_default();
        if permissions.is_empty() {
            return Ok(());
        }
        let group_id = group.group_id.as_deref().unwrap_or_default();
        tracing::warn!(
            group_id,
            "removing ingress rules from the workspace's security group"
        );
        eprintln!(
            "warning: security group {group_id} of this workspace had {} ingress rule(s); skiff removed them (it needs no inbound port)",
            permissions.len()
        );
        self.ec2
            .revoke_security_group_ingress()
            .group_id(group_id)
            .set_ip_permissions(Some(permissions))
            .send()
            .await
            .map_err(|error| {
                aws_error(&format!("removing ingress rules from {group_id}"), &error)
            })?;
        Ok(())
    }

    /// Deletes the workspace's own security groups; an instance's network interface can hold one for a while
    /// after termination, so a dependency error is retried for up to `patience`.
    pub(crate) async fn delete_workspace_groups(
        &self,
        workspace: &str,
        owner: &str,
        patience: std::time::Duration,
    ) -> anyhow::Result<usize> {
        let groups = self.workspace_groups(workspace, owner).await?;
        let deadline = std::time::Instant::now() + patience;
        for group in &groups {
            let group_id = group.group_id.as_deref().unwrap_or_default();
            loop {
                match self
                    .ec2
                    .delete_security_group()
                    .group_id(group_id)
                    .send()
                    .await
                {
                    Ok(_) => break,
                    Err(error) if error_code(&error) == Some("InvalidGroup.NotFound") => break,
                    Err(error)
                        if error_code(&error) == Some("DependencyViolation")
                            && std::time::Instant::now() < deadline =>
                    {
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                    Err(error) => {
                        return Err(aws_error(
                            &format!(
                                "deleting security group {group_id} of workspace {workspace} (run `skiff delete {workspace}` again later)"
                            ),
                            &error,
                        ));
                    }
                }
            }
        }
        Ok(groups.len())
    }
}

/// The per-workspace group's name: unique per owner too, because two people's `app` must not collide.
pub(crate) fn group_name(workspace: &str, owner: &str) -> String {
    format!(
        "skiff-{workspace}-{}",
        &super::launch::short_hash(owner)[..8]
    )
}

fn placement_of(subnet: &Subnet) -> anyhow::Result<Placement> {
    Ok(Placement {
        vpc_id: subnet
            .vpc_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the subnet has no VPC"))?,
        subnet_id: subnet.subnet_id.clone().unwrap_or_default(),
        availability_zone: subnet.availability_zone.clone().unwrap_or_default(),
    })
}

/// The first rule of `group` that lets in the whole internet, as the CIDR it names.
pub(crate) fn open_ingress(group: &SecurityGroup) -> Option<String> {
    group
        .ip_permissions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find_map(open_cidr)
}

fn open_cidr(permission: &IpPermission) -> Option<String> {
    let v4 = permission
        .ip_ranges
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|range| range.cidr_ip.as_deref())
        .find(|cidr| *cidr == "0.0.0.0/0");
    let v6 = permission
        .ipv6_ranges
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|range| range.cidr_ipv6.as_deref())
        .find(|cidr| *cidr == "::/0");
    v4.or(v6).map(str::to_owned)
}
