//! RunInstances, with every safety the workspace needs set explicitly: IMDSv2 required with hop limit 1, an
//! encrypted gp3 root volume deleted with the instance, `InstanceInitiatedShutdownBehavior=stop` (the agent's
//! poweroff stops the machine and keeps its disk), no key pair, the skiff tags on everything the launch creates
//! (instance, volume, network interface, spot request: the developer's policy requires the owner tag on each), and
//! a client token so a repeated call cannot make a second instance.

use std::collections::BTreeMap;
use std::time::Instant;

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, InstanceType, MarketType, ResourceType, ShutdownBehavior,
    SpotInstanceType, SpotMarketOptions, TagSpecification, VolumeType,
};
use base64::Engine as _;

use super::ami::Image;
use super::network::Placement;
use super::{Aws, TAG_OWNER, TAG_OWNER_ARN, TAG_WORKSPACE, aws_error, ec2_tag, error_code};

/// The tag that holds the root volume's size in GiB, as launched.
pub const TAG_VOLUME_GIB: &str = "skiff:volume-gib";

/// Everything RunInstances needs.
#[derive(Debug, Clone)]
pub struct LaunchSpec<'a> {
    pub workspace: &'a str,
    /// The caller's `aws:userid`.
    pub owner: &'a str,
    /// The caller's ARN, for people to read.
    pub owner_arn: &'a str,
    pub image: &'a Image,
    pub instance_type: &'a str,
    pub placement: &'a Placement,
    pub security_group: &'a str,
    pub instance_profile: &'a str,
    /// Whether the profile was just made, so IAM may not have propagated it to EC2 yet.
    pub fresh_profile: bool,
    pub user_data: &'a str,
    pub volume_gib: i32,
    pub kms_key: Option<&'a str>,
    pub spot: bool,
    pub tags: &'a BTreeMap<String, String>,
    pub client_token: &'a str,
}

/// SHA-256 of `text` as lowercase hex.
pub fn short_hash(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The client token of one launch of a workspace: the same for every retry of that launch (it comes from the
/// local record's nonce), different after a delete, and at most 64 characters as EC2 requires.
pub fn client_token(owner: &str, region: &str, workspace: &str, nonce: &str) -> String {
    short_hash(&format!(
        "skiff-launch\n{owner}\n{region}\n{workspace}\n{nonce}"
    ))
}

/// The tags of the instance and its volume.
pub fn tags<'a>(spec: &'a LaunchSpec<'a>) -> Vec<(&'a str, String)> {
    let mut tags = vec![
        (TAG_WORKSPACE, spec.workspace.to_owned()),
        (TAG_OWNER, spec.owner.to_owned()),
        (TAG_OWNER_ARN, spec.owner_arn.to_owned()),
        ("Name", format!("skiff-{}", spec.workspace)),
        // What the disk costs is priced from its size (`status`), which EC2's DescribeInstances does not give.
        (TAG_VOLUME_GIB, spec.volume_gib.to_string()),
    ];
    for (key, value) in spec.tags {
        tags.push((key.as_str(), value.clone()));
    }
    tags
}

impl Aws {
    /// Launches the instance; returns its id. A fresh instance profile that EC2 cannot see yet is retried.
    pub async fn run_instance(&self, spec: &LaunchSpec<'_>) -> anyhow::Result<String> {
        let tags = tags(spec);
        let tag_specification = |resource: ResourceType| {
            let mut builder = TagSpecification::builder().resource_type(resource);
            for (key, value) in &tags {
                builder = builder.tags(ec2_tag(key, value));
            }
            builder.build()
        };
        let mut ebs = EbsBlockDevice::builder()
            .volume_size(spec.volume_gib)
            .volume_type(VolumeType::Gp3)
            .encrypted(true)
            .delete_on_termination(true);
        if let Some(key) = spec.kms_key {
            ebs = ebs.kms_key_id(key);
        }
        let mut request = self
            .ec2
            .run_instances()
            .image_id(&spec.image.image_id)
            .instance_type(InstanceType::from(spec.instance_type))
            .min_count(1)
            .max_count(1)
            .subnet_id(&spec.placement.subnet_id)
            .security_group_ids(spec.security_group)
            .iam_instance_profile(
                IamInstanceProfileSpecification::builder()
                    .name(spec.instance_profile)
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&spec.image.root_device_name)
                    .ebs(ebs.build())
                    .build(),
            )
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Stop)
            .user_data(base64::engine::general_purpose::STANDARD.encode(spec.user_data))
            .tag_specifications(tag_specification(ResourceType::Instance))
            .tag_specifications(tag_specification(ResourceType::Volume))
            .tag_specifications(tag_specification(ResourceType::NetworkInterface))
            .client_token(spec.client_token);
        if spec.spot {
            request = request
                .tag_specifications(tag_specification(ResourceType::SpotInstancesRequest))
                .instance_market_options(
                    InstanceMarketOptionsRequest::builder()
                        .market_type(MarketType::Spot)
                        .spot_options(
                            SpotMarketOptions::builder()
                                .spot_instance_type(SpotInstanceType::Persistent)
                                .instance_interruption_behavior(InstanceInterruptionBehavior::Stop)
                                .build(),
                        )
                        .build(),
                );
        }
        let started = Instant::now();
        loop {
            match request.clone().send().await {
                Ok(output) => {
                    return output
                        .instances
                        .unwrap_or_default()
                        .into_iter()
                        .find_map(|instance| instance.instance_id)
                        .ok_or_else(|| anyhow::anyhow!("RunInstances returned no instance"));
                }
                Err(error)
                    if spec.fresh_profile
                        && super::iam::is_propagation_error(
                            error_code(&error),
                            aws_sdk_ec2::error::ProvideErrorMetadata::message(&error),
                        )
                        && started.elapsed() < super::iam::PROPAGATION_PATIENCE =>
                {
                    // IAM is eventually consistent: a new instance profile takes a few seconds to reach EC2.
                    // The client token keeps these retries from ever making two instances.
                    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
                }
                Err(error) => {
                    let hint = match error_code(&error) {
                        Some(code)
                            if code.starts_with("InvalidParameterValue")
                                && code.contains("Profile") =>
                        {
                            " (the instance profile could not be attached; check it exists and you may pass it: iam:PassRole)"
                        }
                        Some("InsufficientInstanceCapacity") => {
                            " (try another --availability-zone or --instance-type)"
                        }
                        Some("Unsupported") => {
                            " (try another --availability-zone or --instance-type)"
                        }
                        _ => "",
                    };
                    return Err(aws_error(
                        &format!(
                            "launching the instance of workspace {}{hint}",
                            spec.workspace
                        ),
                        &error,
                    ));
                }
            }
        }
    }
}
