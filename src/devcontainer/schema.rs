//! What the spec's schema (`devContainer.base.schema.json`) says beyond what the model's types already check,
//! as rules of our own, reported as warnings the way the reference CLI's users see a schema-aware editor's: the
//! objects the schema closes, whose unknown properties are ignored; the properties it requires that the
//! reference CLI does without; and values outside a property's enumeration, which are ignored so the
//! property's default applies.
//!
//! The schema itself is not shipped (it belongs to the spec); a test checks these rules and the model against
//! it: every property it names is known here, every value it enumerates is accepted, and nothing else is.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::model::{
    DevContainer, OnAutoForward, PortAttributes, PortProtocol, ShutdownAction, UserEnvProbe,
    WaitFor,
};

/// Warnings for enumerated properties whose value is outside the enumeration, read from the file's top-level
/// object before the model (which leaves such values out, so their defaults apply).
pub(crate) fn enum_warnings(object: &Map<String, Value>) -> Vec<String> {
    let mut warnings = Vec::new();
    check::<UserEnvProbe>(&mut warnings, "userEnvProbe", object.get("userEnvProbe"));
    check::<ShutdownAction>(
        &mut warnings,
        "shutdownAction",
        object.get("shutdownAction"),
    );
    check::<WaitFor>(&mut warnings, "waitFor", object.get("waitFor"));
    let mut port_attributes = |path: &str, attributes: &Value| {
        check::<PortProtocol>(
            &mut warnings,
            &format!("{path}.protocol"),
            attributes.get("protocol"),
        );
        check::<OnAutoForward>(
            &mut warnings,
            &format!("{path}.onAutoForward"),
            attributes.get("onAutoForward"),
        );
    };
    if let Some(Value::Object(ports)) = object.get("portsAttributes") {
        for (port, attributes) in ports {
            port_attributes(&format!("portsAttributes.{port}"), attributes);
        }
    }
    if let Some(attributes) = object.get("otherPortsAttributes") {
        port_attributes("otherPortsAttributes", attributes);
    }
    warnings
}

fn check<T: DeserializeOwned>(warnings: &mut Vec<String>, path: &str, value: Option<&Value>) {
    if let Some(value) = value.filter(|value| !value.is_null())
        && let Err(error) = serde_json::from_value::<T>(value.clone())
    {
        warnings.push(format!(
            "\"{path}\": {error}; the value is ignored and the default applies"
        ));
    }
}

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
