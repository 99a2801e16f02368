//! The `devcontainer.metadata` label: reading its entries, making the entries of Features and of devcontainer.json, and
//! merging them by the reference CLI's rules (`imageMetadata.ts mergeConfiguration`).
//!
//! Entries are plain JSON objects, in order: base image entries, then Features in install order, then devcontainer.json.
//! Booleans `init`/`privileged` are OR'ed, `capAdd`/`securityOpt` are unions, mounts are collected with the last one per
//! target winning, lifecycle commands are collected per hook with their origin, env maps merge per key, and the single
//! values (`remoteUser`, `waitFor`, ...) take the last entry that sets them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use skiff::devcontainer::{
    DevContainer, FeatureManifest, LifecycleCommand, Mount, UserEnvProbe, WaitFor,
};

/// One metadata entry.
pub type Entry = Map<String, Value>;

/// The properties of devcontainer.json that go into its metadata entry (`pickConfigProperties`).
const CONFIG_PROPERTIES: &[&str] = &[
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "waitFor",
    "customizations",
    "mounts",
    "containerEnv",
    "containerUser",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "remoteUser",
    "userEnvProbe",
    "remoteEnv",
    "overrideCommand",
    "portsAttributes",
    "otherPortsAttributes",
    "forwardPorts",
    "shutdownAction",
    "updateRemoteUserUID",
    "hostRequirements",
];

/// The properties of devcontainer.json that apply to an existing container without a rebuild (`pickUpdateableConfigProperties`).
const UPDATABLE_PROPERTIES: &[&str] = &["remoteUser", "userEnvProbe", "remoteEnv"];

/// The properties of a Feature that go into its entry (`pickFeatureProperties`), after its `id`.
const FEATURE_PROPERTIES: &[&str] = &[
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
    "init",
    "privileged",
    "capAdd",
    "securityOpt",
    "entrypoint",
    "mounts",
    "customizations",
];

/// The in-container lifecycle hooks, in the order they run.
pub const HOOKS: [&str; 5] = [
    "onCreateCommand",
    "updateContentCommand",
    "postCreateCommand",
    "postStartCommand",
    "postAttachCommand",
];

/// What `entries` ask of VS Code, as it merges them: `customizations.vscode.extensions` of each entry in order, each
/// extension once (ids compare without case), an `-ID` removing an earlier ID; `customizations.vscode.settings`
/// merged per key, later entries winning.
pub fn vscode(entries: &[Entry]) -> (Vec<String>, Map<String, Value>) {
    let mut extensions: Vec<String> = Vec::new();
    let mut settings = Map::new();
    for entry in entries {
        let Some(vscode) = entry
            .get("customizations")
            .and_then(|customizations| customizations.get("vscode"))
        else {
            continue;
        };
        for id in vscode
            .get("extensions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            // `-ID` removes ID; an id that is not one (`--x`) is kept for the client to refuse by name.
            match id
                .strip_prefix('-')
                .filter(|removed| !removed.is_empty() && !removed.starts_with('-'))
            {
                Some(removed) => {
                    extensions.retain(|known| !known.eq_ignore_ascii_case(removed));
                }
                None if !extensions
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(id)) =>
                {
                    extensions.push(id.to_owned());
                }
                None => {}
            }
        }
        if let Some(more) = vscode.get("settings").and_then(Value::as_object) {
            for (key, value) in more {
                settings.insert(key.clone(), value.clone());
            }
        }
    }
    (extensions, settings)
}

/// Reads a `devcontainer.metadata` label: a JSON array of entries, or (as the reference CLI also accepts) one object.
/// A label that is not JSON is reported and ignored, as the reference CLI does.
pub fn entries_from_label(label: Option<&str>) -> Result<Vec<Entry>, String> {
    let Some(label) = label.filter(|label| !label.trim().is_empty()) else {
        return Ok(Vec::new());
    };
    match serde_json::from_str::<Value>(label) {
        Ok(Value::Array(items)) => Ok(items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(entry) => Some(entry),
                _ => None,
            })
            .collect()),
        Ok(Value::Object(entry)) => Ok(vec![entry]),
        Ok(other) => Err(format!(
            "the devcontainer.metadata label is neither an array nor an object: {other}"
        )),
        Err(error) => Err(format!(
            "the devcontainer.metadata label is not JSON ({error})"
        )),
    }
}

fn pick(object: &Value, keys: &[&str]) -> Entry {
    keys.iter()
        .filter_map(|key| Some(((*key).to_owned(), object.get(*key)?.clone())))
        .collect()
}

/// The entry of devcontainer.json.
pub fn config_entry(config: &DevContainer) -> Entry {
    pick(
        &serde_json::to_value(config).unwrap_or_default(),
        CONFIG_PROPERTIES,
    )
}

/// The entry of devcontainer.json's properties that apply to an existing container.
pub fn updatable_entry(config: &DevContainer) -> Entry {
    pick(
        &serde_json::to_value(config).unwrap_or_default(),
        UPDATABLE_PROPERTIES,
    )
}

/// The entry of a Feature, under the id the user wrote (`./tiger`).
pub fn feature_entry(user_id: &str, manifest: &FeatureManifest) -> Entry {
    let mut entry = Entry::new();
    entry.insert("id".to_owned(), Value::String(user_id.to_owned()));
    entry.extend(pick(
        &serde_json::to_value(manifest).unwrap_or_default(),
        FEATURE_PROPERTIES,
    ));
    entry
}

/// The label value for `entries`: a JSON array, empty entries left out as the reference CLI does.
pub fn label_value(entries: &[Entry]) -> String {
    Value::Array(
        entries
            .iter()
            .filter(|entry| !entry.is_empty())
            .cloned()
            .map(Value::Object)
            .collect(),
    )
    .to_string()
}

/// One lifecycle command and where it came from (a Feature's id, or `devcontainer.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub origin: String,
    pub command: LifecycleCommand,
}

/// The merged configuration of a dev container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub init: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub security_opt: Vec<String>,
    /// Feature entrypoints, in order.
    pub entrypoints: Vec<String>,
    /// Mounts; one per target, the last one winning, in the order of their last occurrence.
    pub mounts: Vec<Mount>,
    pub container_env: BTreeMap<String, String>,
    pub remote_env: BTreeMap<String, Option<String>>,
    pub container_user: Option<String>,
    pub remote_user: Option<String>,
    pub user_env_probe: Option<UserEnvProbe>,
    pub update_remote_user_uid: Option<bool>,
    pub override_command: Option<bool>,
    pub wait_for: Option<WaitFor>,
    pub shutdown_action: Option<String>,
    /// Lifecycle commands per hook (indexed like [`HOOKS`]), in entry order.
    pub hooks: [Vec<HookCommand>; 5],
}

impl Merged {
    /// The commands of hook `name` (one of [`HOOKS`]).
    pub fn hook(&self, name: &str) -> &[HookCommand] {
        HOOKS
            .iter()
            .position(|hook| *hook == name)
            .map_or(&[], |index| self.hooks[index].as_slice())
    }
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(flag)) => *flag,
        Some(Value::String(text)) => !text.is_empty(),
        Some(Value::Number(number)) => number.as_f64().is_some_and(|number| number != 0.0),
        Some(Value::Array(_) | Value::Object(_)) => true,
        Some(Value::Null) | None => false,
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// The target of a mount, for "same target, last wins".
fn mount_target(mount: &Mount) -> String {
    match mount {
        Mount::Object(object) => object.target.clone(),
        Mount::Spec(spec) => spec
            .split(',')
            .filter_map(|part| part.split_once('='))
            .find(|(key, _)| matches!(key.trim(), "target" | "dst" | "destination"))
            .map(|(_, value)| value.to_owned())
            .unwrap_or_default(),
    }
}

/// Merges entries by the reference rules; entries later in the list win.
pub fn merge(entries: &[Entry]) -> Merged {
    let mut merged = Merged::default();
    let last_string = |key: &str| {
        entries
            .iter()
            .rev()
            .find_map(|entry| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .filter(|text| !text.is_empty())
            })
            .map(str::to_owned)
    };
    let last_bool = |key: &str| {
        entries
            .iter()
            .rev()
            .find_map(|entry| entry.get(key).and_then(Value::as_bool))
    };
    merged.init = entries.iter().any(|entry| truthy(entry.get("init")));
    merged.privileged = entries.iter().any(|entry| truthy(entry.get("privileged")));
    for entry in entries {
        for capability in strings(entry.get("capAdd")) {
            if !merged.cap_add.contains(&capability) {
                merged.cap_add.push(capability);
            }
        }
        for option in strings(entry.get("securityOpt")) {
            if !merged.security_opt.contains(&option) {
                merged.security_opt.push(option);
            }
        }
        if let Some(entrypoint) = entry.get("entrypoint").and_then(Value::as_str)
            && !entrypoint.is_empty()
        {
            merged.entrypoints.push(entrypoint.to_owned());
        }
        if let Some(Value::Object(env)) = entry.get("containerEnv") {
            for (key, value) in env {
                if let Some(value) = value.as_str() {
                    merged.container_env.insert(key.clone(), value.to_owned());
                }
            }
        }
        if let Some(Value::Object(env)) = entry.get("remoteEnv") {
            for (key, value) in env {
                merged
                    .remote_env
                    .insert(key.clone(), value.as_str().map(str::to_owned));
            }
        }
        let origin = entry
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("devcontainer.json")
            .to_owned();
        for (index, hook) in HOOKS.iter().enumerate() {
            let Some(value) = entry.get(*hook).filter(|value| truthy(Some(value))) else {
                continue;
            };
            if let Ok(command) = serde_json::from_value::<LifecycleCommand>(value.clone())
                && !command.is_empty()
            {
                merged.hooks[index].push(HookCommand {
                    origin: origin.clone(),
                    command,
                });
            }
        }
    }
    let all_mounts: Vec<Mount> = entries
        .iter()
        .filter_map(|entry| entry.get("mounts"))
        .filter_map(|mounts| serde_json::from_value::<Vec<Mount>>(mounts.clone()).ok())
        .flatten()
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<Mount> = all_mounts
        .into_iter()
        .rev()
        .filter(|mount| seen.insert(mount_target(mount)))
        .collect();
    kept.reverse();
    merged.mounts = kept;
    merged.container_user = last_string("containerUser");
    merged.remote_user = last_string("remoteUser");
    merged.user_env_probe = last_string("userEnvProbe")
        .and_then(|probe| serde_json::from_value(Value::String(probe)).ok());
    merged.update_remote_user_uid = last_bool("updateRemoteUserUID");
    merged.override_command = last_bool("overrideCommand");
    merged.wait_for =
        last_string("waitFor").and_then(|wait| serde_json::from_value(Value::String(wait)).ok());
    merged.shutdown_action = last_string("shutdownAction");
    merged
}

#[cfg(test)]
mod tests;
