//! Variable substitution (`${localEnv:HOME}`, `${containerWorkspaceFolder}`, ...) in the three passes of the spec.
//!
//! The client runs the local pass (`substitute_local`) right after loading; `${devcontainerId}` is substituted once the id labels are
//! known (`substitute_devcontainer_id`), and the agent substitutes `${containerEnv:...}` once the container exists
//! (`substitute_container_env`).
//! Like the reference CLI (`variableSubstitution.ts`), every pass rewrites string values only (never object keys), matches
//! `${...}` up to the first `}` on the same line, splits on `:` (so a default cannot contain `:`), and leaves variables it does not
//! know verbatim.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::ConfigError;
use super::model::DevContainer;
use super::parse::deserialize;

/// What the local pass substitutes from: the machine running the client.
#[derive(Debug, Clone)]
pub struct LocalContext {
    /// The workspace folder on the local machine (`${localWorkspaceFolder}`), as given, not the git root.
    pub local_workspace_folder: PathBuf,
    /// The config file being substituted, for error messages.
    pub config_file: PathBuf,
    /// The local environment (`${localEnv:VAR}` and its alias `${env:VAR}`).
    pub env: HashMap<String, String>,
}

impl LocalContext {
    /// A context with this process's environment (variables whose name or value is not UTF-8 are left out).
    pub fn from_process_env(local_workspace_folder: &Path, config_file: &Path) -> LocalContext {
        let env = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        LocalContext {
            local_workspace_folder: local_workspace_folder.to_path_buf(),
            config_file: config_file.to_path_buf(),
            env,
        }
    }
}

/// Substitutes the local variables in every string of `config` and returns the variables it did not know, once each, as written
/// (e.g. `${templateOption:imageVariant}`), so the caller can warn about them.
///
/// Knows `${localEnv:VAR[:default]}` and `${env:VAR[:default]}` (an unset variable without a default becomes `""`),
/// `${localWorkspaceFolder}`, `${localWorkspaceFolderBasename}`, `${containerWorkspaceFolder}` and `${containerWorkspaceFolderBasename}`.
/// The container workspace folder is `DevContainer::effective_workspace_folder`, itself substituted first.
/// `${containerEnv:...}` and `${devcontainerId}` are left for their own passes and not reported.
pub fn substitute_local(
    config: &mut DevContainer,
    context: &LocalContext,
) -> Result<Vec<String>, ConfigError> {
    let mut unknown = Vec::new();
    let local_folder = context
        .local_workspace_folder
        .to_string_lossy()
        .into_owned();
    let local_basename = context
        .local_workspace_folder
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();

    let resolver = |container_folder: Option<&str>,
                    expression: &Expression<'_>,
                    unknown: &mut Vec<String>|
     -> Result<Option<String>, ConfigError> {
        let value = match expression.name {
            "env" | "localEnv" => Some(lookup(&context.env, expression)?),
            "localWorkspaceFolder" => Some(local_folder.clone()),
            "localWorkspaceFolderBasename" => Some(local_basename.clone()),
            "containerWorkspaceFolder" => container_folder.map(str::to_string),
            "containerWorkspaceFolderBasename" => {
                container_folder.map(|folder| posix_basename(folder).to_string())
            }
            "containerEnv" | "devcontainerId" => None,
            _ => {
                if !unknown.iter().any(|seen| seen == expression.text) {
                    unknown.push(expression.text.to_string());
                }
                None
            }
        };
        Ok(value)
    };

    let container_folder = substitute_string(
        &config.effective_workspace_folder(&context.local_workspace_folder),
        "workspaceFolder",
        &mut |expression| resolver(None, expression, &mut unknown),
    )?;

    let invalid = |property: String, message: String| ConfigError::Invalid {
        file: context.config_file.clone(),
        property,
        message,
    };
    let mut value = serde_json::to_value(&*config)
        .map_err(|error| invalid(String::new(), error.to_string()))?;
    substitute_value(&mut value, "", &mut |expression| {
        resolver(Some(&container_folder), expression, &mut unknown)
    })?;
    let Value::Object(object) = value else {
        return Err(invalid(
            String::new(),
            "the substituted config is not an object".to_string(),
        ));
    };
    *config = deserialize(&context.config_file, object)?;
    Ok(unknown)
}

/// The local environment variables `config` reads (`${localEnv:VAR}` and `${env:VAR}`), sorted, once each, without
/// substituting anything: what `up` shows before it runs an untrusted repository's configuration.
pub fn local_env_names(config: &DevContainer) -> Vec<String> {
    let mut names = Vec::new();
    let Ok(mut value) = serde_json::to_value(config) else {
        return names;
    };
    let result: Result<(), ConfigError> = substitute_value(&mut value, "", &mut |expression| {
        if matches!(expression.name, "env" | "localEnv")
            && let Some(name) = expression.arguments.first()
            && !names.iter().any(|seen| seen == name)
        {
            names.push((*name).to_string());
        }
        Ok(None)
    });
    // The resolver above never fails.
    debug_assert!(result.is_ok());
    names.sort();
    names
}

/// Substitutes `${containerEnv:VAR[:default]}` in every string of `value` from the container's environment (its `Config.Env`);
/// an unset variable without a default becomes `""`.
pub fn substitute_container_env(
    value: &mut Value,
    container_env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    substitute_value(value, "", &mut |expression| match expression.name {
        "containerEnv" => Ok(Some(lookup(container_env, expression)?)),
        _ => Ok(None),
    })
}

/// Substitutes `${devcontainerId}` in every string of `value` (see `devcontainer_id`).
pub fn substitute_devcontainer_id(value: &mut Value, devcontainer_id: &str) {
    let result: Result<(), ConfigError> =
        substitute_value(value, "", &mut |expression| match expression.name {
            "devcontainerId" => Ok(Some(devcontainer_id.to_string())),
            _ => Ok(None),
        });
    // The resolver above never fails.
    debug_assert!(result.is_ok());
}

/// One `${name:arg:...}` occurrence.
struct Expression<'a> {
    /// The whole expression, `${` to `}`.
    text: &'a str,
    name: &'a str,
    arguments: Vec<&'a str>,
    /// Where the expression is, e.g. `remoteEnv.PATH`.
    property: &'a str,
}

/// What a pass does with one expression: `Some(text)` replaces it, `None` leaves it verbatim.
type Resolve<'r> = dyn FnMut(&Expression<'_>) -> Result<Option<String>, ConfigError> + 'r;

/// Looks up `${kind:VAR[:default]}` in `env`: the value, else the default, else `""`; no variable name is an error.
fn lookup(
    env: &HashMap<String, String>,
    expression: &Expression<'_>,
) -> Result<String, ConfigError> {
    let Some(name) = expression.arguments.first() else {
        return Err(ConfigError::Variable {
            property: expression.property.to_string(),
            expression: expression.text.to_string(),
            variable: expression.name.to_string(),
        });
    };
    Ok(env
        .get(*name)
        .cloned()
        .or_else(|| {
            expression
                .arguments
                .get(1)
                .map(|default| default.to_string())
        })
        .unwrap_or_default())
}

/// The last component of a POSIX path (`path.posix.basename`): `/a/b/` gives `b`, `/` gives the empty string.
fn posix_basename(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// Substitutes in every string inside `value`, tracking the property path for error messages.
fn substitute_value(
    value: &mut Value,
    property: &str,
    resolve: &mut Resolve<'_>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(text) => {
            if text.contains("${") {
                *text = substitute_string(text, property, resolve)?;
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_value(item, &format!("{property}[{index}]"), resolve)?;
            }
        }
        Value::Object(object) => {
            for (key, item) in object.iter_mut() {
                let path = if property.is_empty() {
                    key.clone()
                } else {
                    format!("{property}.{key}")
                };
                substitute_value(item, &path, resolve)?;
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

/// Substitutes in one string, matching like the JavaScript regular expression `/\$\{(.*?)\}/g`.
fn substitute_string(
    text: &str,
    property: &str,
    resolve: &mut Resolve<'_>,
) -> Result<String, ConfigError> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after_open = &rest[start + 2..];
        // In JavaScript `.` does not match line terminators, so an expression ends at the first `}` on the same line or not at all.
        let end = after_open.find(['}', '\n', '\r', '\u{2028}', '\u{2029}']);
        match end {
            Some(end) if after_open[end..].starts_with('}') => {
                let inner = &after_open[..end];
                let expression_text = &rest[start..start + 2 + end + 1];
                let mut parts = inner.split(':');
                let expression = Expression {
                    text: expression_text,
                    name: parts.next().unwrap_or_default(),
                    arguments: parts.collect(),
                    property,
                };
                result.push_str(&rest[..start]);
                match resolve(&expression)? {
                    Some(replacement) => result.push_str(&replacement),
                    None => result.push_str(expression_text),
                }
                rest = &after_open[end + 1..];
            }
            _ => {
                // No expression starts at this `$`; the next one may start right after it.
                result.push_str(&rest[..start + 1]);
                rest = &rest[start + 1..];
            }
        }
    }
    result.push_str(rest);
    Ok(result)
}
