//! The machine image: Ubuntu 24.04 LTS from Canonical's public SSM parameters (with a DescribeImages fallback,
//! for partitions and emulators without them), for the architecture of the instance type; or the user's AMI,
//! checked against that architecture. Also the default instance type for a devcontainer's `hostRequirements`.

use skiff::devcontainer::HostRequirements;

use super::{Aws, aws_error, error_code, filter};

/// Canonical's AWS account, the owner of the official Ubuntu images.
pub const CANONICAL_OWNER: &str = "099720109477";

/// A CPU architecture as EC2 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    X86_64,
    Arm64,
}

impl Architecture {
    /// EC2's name (`x86_64`, `arm64`).
    pub fn ec2_name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }

    /// Ubuntu's and Debian's name (`amd64`, `arm64`).
    pub fn debian_name(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// Rust's target name (`x86_64`, `aarch64`), as release files of skiffd are named.
    pub fn rust_name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "aarch64",
        }
    }

    fn from_ec2(name: &str) -> Option<Self> {
        match name {
            "x86_64" => Some(Self::X86_64),
            "arm64" => Some(Self::Arm64),
            _ => None,
        }
    }
}

/// What the instance type offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceTypeInfo {
    pub name: String,
    pub architecture: Architecture,
    pub vcpus: i32,
    pub memory_mib: i64,
}

/// The chosen image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub image_id: String,
    pub name: String,
    pub root_device_name: String,
}

/// The smallest general-purpose type that meets `hostRequirements` (CPUs and memory), else t3.large.
pub fn instance_type_for(requirements: Option<&HostRequirements>) -> &'static str {
    // (type, vCPUs, memory GiB), smallest first; t3 for burstable small machines, m6i beyond.
    const LADDER: &[(&str, u32, u64)] = &[
        ("t3.large", 2, 8),
        ("t3.xlarge", 4, 16),
        ("t3.2xlarge", 8, 32),
        ("m6i.4xlarge", 16, 64),
        ("m6i.8xlarge", 32, 128),
        ("m6i.16xlarge", 64, 256),
    ];
    let Some(requirements) = requirements else {
        return super::config::DEFAULT_INSTANCE_TYPE;
    };
    let cpus = requirements.cpus.unwrap_or(0);
    let memory_gib = requirements
        .memory
        .as_deref()
        .and_then(parse_bytes)
        .map_or(0, |bytes| bytes.div_ceil(1 << 30));
    LADDER
        .iter()
        .find(|(_, ladder_cpus, ladder_memory)| {
            *ladder_cpus >= cpus && *ladder_memory >= memory_gib
        })
        .map_or(LADDER[LADDER.len() - 1].0, |(name, _, _)| name)
}

/// Bytes from devcontainer.json's size text: a number with an optional `tb`, `gb`, `mb` or `kb` suffix.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (number, unit) = match text.find(|character: char| character.is_ascii_alphabetic()) {
        Some(index) => text.split_at(index),
        None => (text.as_str(), ""),
    };
    let number: f64 = number.trim().parse().ok()?;
    let multiplier: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "kb" => 1024.0,
        "mb" => 1024.0 * 1024.0,
        "gb" => 1024.0 * 1024.0 * 1024.0,
        "tb" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * multiplier;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "checked finite and non-negative; sizes are far below u64::MAX"
    )]
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes.ceil() as u64)
}

impl Aws {
    /// The instance type's architecture and size; an unknown type is a clear error.
    pub async fn instance_type(&self, name: &str) -> anyhow::Result<InstanceTypeInfo> {
        let unknown = || {
            anyhow::anyhow!(
                "instance type {name} does not exist in region {}; pass --instance-type with one such as t3.large (x86_64) or m7g.large (arm64)",
                self.region
            )
        };
        let output = self
            .ec2
            .describe_instance_types()
            .instance_types(aws_sdk_ec2::types::InstanceType::from(name))
            .send()
            .await
            .map_err(|error| {
                if error_code(&error).is_some_and(|code| code.starts_with("InvalidInstanceType")) {
                    unknown()
                } else {
                    aws_error(&format!("looking up instance type {name}"), &error)
                }
            })?;
        let info = output
            .instance_types
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(unknown)?;
        let architectures: Vec<String> = info
            .processor_info
            .and_then(|processor| processor.supported_architectures)
            .unwrap_or_default()
            .iter()
            .map(|architecture| architecture.as_str().to_owned())
            .collect();
        // Prefer 64-bit ARM where it is offered alone; x86_64 types also list i386, which skiff ignores.
        let architecture = architectures
            .iter()
            .filter_map(|name| Architecture::from_ec2(name))
            .next()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "instance type {name} runs {}, and skiffd runs only on x86_64 and arm64; pass another --instance-type",
                    architectures.join(", ")
                )
            })?;
        Ok(InstanceTypeInfo {
            name: name.to_owned(),
            architecture,
            vcpus: info
                .v_cpu_info
                .and_then(|cpu| cpu.default_v_cpus)
                .unwrap_or(0),
            memory_mib: info
                .memory_info
                .and_then(|memory| memory.size_in_mib)
                .unwrap_or(0),
        })
    }

    /// The image to launch: `given` after checking its architecture, else Ubuntu 24.04 LTS for `architecture`.
    pub async fn image(
        &self,
        given: Option<&str>,
        architecture: Architecture,
    ) -> anyhow::Result<Image> {
        let image_id = match given {
            Some(image_id) => image_id.to_owned(),
            None => match self.ubuntu_from_parameter(architecture).await? {
                Some(image_id) => image_id,
                None => self.ubuntu_from_images(architecture).await?,
            },
        };
        let output = self
            .ec2
            .describe_images()
            .image_ids(&image_id)
            .send()
            .await
            .map_err(|error| {
                if error_code(&error).is_some_and(|code| code.starts_with("InvalidAMIID")) {
                    anyhow::anyhow!(
                        "AMI {image_id} does not exist in region {} (or you may not use it); pass another --ami, or leave it out for Ubuntu 24.04",
                        self.region
                    )
                } else {
                    aws_error(&format!("looking up AMI {image_id}"), &error)
                }
            })?;
        let image = output
            .images
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "AMI {image_id} does not exist in region {}; pass another --ami",
                    self.region
                )
            })?;
        let image_architecture = image
            .architecture
            .as_ref()
            .map(|architecture| architecture.as_str().to_owned())
            .unwrap_or_default();
        if image_architecture != architecture.ec2_name() {
            anyhow::bail!(
                "AMI {image_id} is for {}, but the instance type runs {}; pass an {} AMI, or an instance type for {} (such as {})",
                if image_architecture.is_empty() {
                    "an unknown architecture"
                } else {
                    &image_architecture
                },
                architecture.ec2_name(),
                architecture.ec2_name(),
                if image_architecture.is_empty() {
                    "it"
                } else {
                    &image_architecture
                },
                if image_architecture == "arm64" {
                    "m7g.large"
                } else {
                    "t3.large"
                },
            );
        }
        Ok(Image {
            image_id,
            name: image.name.unwrap_or_default(),
            root_device_name: image.root_device_name.unwrap_or_else(|| "/dev/sda1".into()),
        })
    }

    /// Canonical's public SSM parameter for the current Ubuntu 24.04 image, if the region has it.
    async fn ubuntu_from_parameter(
        &self,
        architecture: Architecture,
    ) -> anyhow::Result<Option<String>> {
        let name = format!(
            "/aws/service/canonical/ubuntu/server/24.04/stable/current/{}/hvm/ebs-gp3/ami-id",
            architecture.debian_name()
        );
        match self.ssm.get_parameter().name(&name).send().await {
            Ok(output) => Ok(output.parameter.and_then(|parameter| parameter.value)),
            Err(error) if error_code(&error) == Some("ParameterNotFound") => Ok(None),
            Err(error) => {
                // The parameter is a convenience: any failure falls back to DescribeImages, which says more.
                tracing::debug!(error = %aws_sdk_ssm::error::DisplayErrorContext(&error), "reading {name}");
                Ok(None)
            }
        }
    }

    /// The newest Ubuntu 24.04 image Canonical published for `architecture`.
    async fn ubuntu_from_images(&self, architecture: Architecture) -> anyhow::Result<String> {
        let output = self
            .ec2
            .describe_images()
            .owners(CANONICAL_OWNER)
            .filters(filter(
                "name",
                &format!(
                    "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{}-server-*",
                    architecture.debian_name()
                ),
            ))
            .filters(filter("architecture", architecture.ec2_name()))
            .filters(filter("state", "available"))
            .send()
            .await
            .map_err(|error| aws_error("looking up the Ubuntu 24.04 AMI", &error))?;
        output
            .images
            .unwrap_or_default()
            .into_iter()
            .filter(|image| image.image_id.is_some())
            .max_by(|left, right| left.creation_date.cmp(&right.creation_date))
            .and_then(|image| image.image_id)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "found no Ubuntu 24.04 {} AMI from Canonical in region {}; pass --ami AMI_ID",
                    architecture.ec2_name(),
                    self.region
                )
            })
    }
}
