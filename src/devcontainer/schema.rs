//! Checking a configuration against the spec's JSON schema (`schema/devContainer.base.schema.json`, copied from
//! devcontainers/spec at c95ffeed, Draft 2019-09), reported as warnings and never as errors: the reference CLI does not
//! validate, and runs configurations the schema rejects (a compose configuration without `workspaceFolder`).
//!
//! The schema's top level is a `oneOf` over the three kinds of configuration, whose failures say only that no branch
//! matched; so the configuration is checked against the one branch of its kind (compose when it has
//! `dockerComposeFile`, Dockerfile when it has `build`, else image) with the schema's own definitions, which names the
//! property at fault. Unknown top-level properties are left to the parser, which already warns about them.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::{Value, json};

use super::model::DevContainer;

const SCHEMA: &str = include_str!("schema/devContainer.base.schema.json");

/// The definitions each kind of configuration must satisfy, all at once.
const BRANCHES: [(&str, &[&str]); 3] = [
    (
        "image",
        &["imageContainer", "nonComposeBase", "devContainerCommon"],
    ),
    (
        "dockerfile",
        &[
            "dockerfileContainer",
            "nonComposeBase",
            "devContainerCommon",
        ],
    ),
    ("compose", &["composeContainer", "devContainerCommon"]),
];

fn validator(branch: usize) -> Option<&'static jsonschema::Validator> {
    static VALIDATORS: OnceLock<Vec<Option<jsonschema::Validator>>> = OnceLock::new();
    VALIDATORS
        .get_or_init(|| {
            let base: Value = match serde_json::from_str(SCHEMA) {
                Ok(base) => base,
                Err(error) => {
                    tracing::warn!("the embedded devcontainer.json schema is not JSON: {error}");
                    return Vec::new();
                }
            };
            BRANCHES
                .iter()
                .map(|(kind, definitions)| {
                    let schema = json!({
                        "$schema": "https://json-schema.org/draft/2019-09/schema",
                        "definitions": base["definitions"],
                        "allOf": definitions
                            .iter()
                            .map(|name| json!({"$ref": format!("#/definitions/{name}")}))
                            .collect::<Vec<_>>(),
                        "unevaluatedProperties": false,
                    });
                    jsonschema::draft201909::new(&schema)
                        .map_err(|error| {
                            tracing::warn!("the devcontainer.json schema for {kind} configurations does not compile: {error}");
                        })
                        .ok()
                })
                .collect()
        })
        .get(branch)?
        .as_ref()
}

/// Where the schema disagrees with `config` (after legacy migration), one warning each, naming the property.
pub fn schema_warnings(config: &DevContainer) -> Vec<String> {
    let Ok(value) = serde_json::to_value(config) else {
        return Vec::new();
    };
    let branch = if value.get("dockerComposeFile").is_some() {
        2
    } else if value.get("build").is_some() {
        1
    } else {
        0
    };
    let Some(validator) = validator(branch) else {
        return Vec::new();
    };
    let mut warnings: Vec<String> = validator
        .iter_errors(&value)
        .flat_map(|error| leaves(&error))
        .filter(|(path, unknown_property, _)| !(path.is_empty() && *unknown_property))
        .map(|(path, _, message)| {
            if path.is_empty() {
                format!("does not match the spec's schema: {message}")
            } else {
                format!("\"{path}\" does not match the spec's schema: {message}")
            }
        })
        .collect();
    warnings.dedup();
    warnings
}

/// The errors that say what is wrong: a failed `oneOf` or `anyOf` says only that no branch matched, so it is replaced by the
/// errors of its closest branch (the one with the fewest, the deepest first). Each is (path, whether it is an unknown
/// property, message).
fn leaves(error: &jsonschema::ValidationError<'_>) -> Vec<(String, bool, String)> {
    let branches = match error.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            context
        }
        kind => {
            let path = error
                .instance_path()
                .as_str()
                .trim_start_matches('/')
                .to_owned();
            let unknown = matches!(kind, ValidationErrorKind::UnevaluatedProperties { .. });
            return vec![(path, unknown, lowercase_first(&error.to_string()))];
        }
    };
    let depth = |found: &[(String, bool, String)]| {
        found
            .iter()
            .map(|(path, _, _)| path.matches('/').count() + usize::from(!path.is_empty()))
            .max()
            .unwrap_or(0)
    };
    branches
        .iter()
        .map(|branch| {
            branch
                .iter()
                .flat_map(|error| leaves(error))
                .collect::<Vec<_>>()
        })
        .filter(|found| !found.is_empty())
        .min_by(|first, second| {
            first
                .len()
                .cmp(&second.len())
                .then_with(|| depth(second).cmp(&depth(first)))
        })
        .unwrap_or_else(|| vec![(String::new(), false, lowercase_first(&error.to_string()))])
}

/// The validator's messages start with a capital; ours do not.
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
