//! What the spec's schema (`devContainer.base.schema.json`) says beyond what the model's types already check,
//! as rules of our own, reported as warnings the way the reference CLI's users see a schema-aware editor's: the
//! objects the schema closes, whose unknown properties are ignored, and the properties it requires that the
//! reference CLI does without.
//!
//! The schema itself is not shipped (it belongs to the spec); a test checks these rules and the model against
//! it: every property it names is known here, every value it enumerates is accepted, and nothing else is.

use super::model::{DevContainer, PortAttributes};

/// Warnings for what the schema would reject and the reference CLI runs anyway. The top level's unknown
/// properties are reported by `parse` itself.
pub(crate) fn warnings(config: &DevContainer) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut unknown = |object: &str, keys: &mut dyn Iterator<Item = &String>| {
        for key in keys {
            warnings.push(format!("unknown property \"{object}.{key}\" is ignored"));
        }
    };
    if let Some(build) = &config.build {
        unknown("build", &mut build.other.keys());
    }
    if let Some(host) = &config.host_requirements {
        unknown("hostRequirements", &mut host.other.keys());
    }
    if let Some(ports) = &config.ports_attributes {
        for (port, attributes) in ports {
            unknown(
                &format!("portsAttributes.{port}"),
                &mut attributes.other.keys(),
            );
        }
    }
    if let Some(PortAttributes { other, .. }) = &config.other_ports_attributes {
        unknown("otherPortsAttributes", &mut other.keys());
    }
    if config.docker_compose_file.is_some() && config.workspace_folder.is_none() {
        warnings.push(
            "\"workspaceFolder\" is required with \"dockerComposeFile\" by the spec; the service's root (/) is used, as the reference CLI does".to_owned(),
        );
    }
    if let Some(build) = &config.build
        && build.dockerfile.is_none()
    {
        warnings.push("\"build\" has no \"dockerfile\", which the spec requires".to_owned());
    }
    warnings
}
