//! Turning the text of a devcontainer.json into a `DevContainer`: JSONC parsing, legacy property migration, and mapping type errors to
//! the property that has them.
//!
//! Discovery and file reading live in `load.rs`; nothing here touches the file system.

use std::path::Path;

use jsonc_parser::ParseOptions;
use serde_json::{Map, Value};

use super::error::ConfigError;
use super::model::DevContainer;

/// Parses the text of `config_file` into the model, with warnings about legacy and unknown properties and what
/// else the spec's schema would reject (`schema`).
///
/// Accepts JSONC as the reference CLI does: `//` and `/* */` comments anywhere and trailing commas.
/// Other JSON5 liberties (missing commas, single quotes, unquoted keys, hex numbers) are syntax errors.
/// Legacy properties are migrated before the model is read: top-level `extensions`, `settings` and `devPort` move into
/// `customizations.vscode`, and top-level `dockerFile` and `context` become `build.dockerfile` and `build.context`.
/// Warnings do not repeat the file name.
pub fn parse(config_file: &Path, text: &str) -> Result<(DevContainer, Vec<String>), ConfigError> {
    let value = parse_jsonc(config_file, text)?;
    let Value::Object(mut object) = value else {
        return Err(ConfigError::NotAnObject {
            file: config_file.to_path_buf(),
        });
    };
    let mut warnings = Vec::new();
    migrate_legacy_properties(config_file, &mut object, &mut warnings)?;
    let context_warned = object.contains_key("context");
    if context_warned {
        warnings.push(
            r#""context" is ignored without the legacy "dockerFile"; use "build.context""#
                .to_string(),
        );
    }
    warnings.extend(super::schema::enum_warnings(&object));
    let config = deserialize(config_file, object)?;
    for property in config.other.keys() {
        if property == "context" && context_warned {
            continue;
        }
        warnings.push(format!("unknown property \"{property}\" is ignored"));
    }
    warnings.extend(super::schema::warnings(&config));
    Ok((config, warnings))
}

/// Parses JSONC into a JSON value; an empty file is `null`.
pub(crate) fn parse_jsonc(config_file: &Path, text: &str) -> Result<Value, ConfigError> {
    // Editors on Windows like to start files with a byte order mark, which is not JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = ParseOptions {
        allow_comments: true,
        allow_trailing_commas: true,
        allow_missing_commas: false,
        allow_loose_object_property_names: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    jsonc_parser::parse_to_serde_value::<Value>(text, &options).map_err(|error| {
        ConfigError::Syntax {
            file: config_file.to_path_buf(),
            line: error.line_display(),
            column: error.column_display(),
            message: lowercase_first(&error.kind().to_string()),
        }
    })
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Rewrites legacy properties in place, as the reference CLI's `updateFromOldProperties` does, and reads the legacy `dockerFile`
/// and `context` into `build` the way its `getDockerfile` and `getDockerContextPath` do.
fn migrate_legacy_properties(
    config_file: &Path,
    object: &mut Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    migrate_vscode_properties(object, warnings);

    let Some(dockerfile) = object.remove("dockerFile") else {
        return Ok(());
    };
    let invalid = |property: &str, message: &str| ConfigError::Invalid {
        file: config_file.to_path_buf(),
        property: property.to_string(),
        message: message.to_string(),
    };
    if !dockerfile.is_string() {
        return Err(invalid(
            "dockerFile",
            "expected a string (the Dockerfile path)",
        ));
    }
    let context = object.remove("context");
    if context.as_ref().is_some_and(|context| !context.is_string()) {
        return Err(invalid(
            "context",
            "expected a string (the build context path)",
        ));
    }
    let build = object
        .entry("build")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(build) = build else {
        return Err(invalid("build", "expected an object"));
    };
    build.insert("dockerfile".to_string(), dockerfile);
    warnings.push(r#""dockerFile" is a legacy property; read as "build.dockerfile""#.to_string());
    // With the legacy `dockerFile`, the reference CLI takes the context only from the top-level `context`.
    let ignored_context = match context {
        Some(context) => {
            warnings.push(r#""context" is a legacy property; read as "build.context""#.to_string());
            build.insert("context".to_string(), context)
        }
        None => build.remove("context"),
    };
    if ignored_context.is_some() {
        warnings.push(
            r#""build.context" is ignored because the legacy "dockerFile" is set"#.to_string(),
        );
    }
    Ok(())
}

/// Moves top-level `extensions`, `settings` and `devPort` into `customizations.vscode`.
///
/// Like the reference CLI: extensions are appended to existing ones, settings already in `customizations.vscode` win, and `devPort`
/// only moves when `customizations.vscode.devPort` is unset.
/// When `customizations` or `customizations.vscode` is not an object the legacy properties are left alone, and reading the model
/// reports the bad `customizations`.
fn migrate_vscode_properties(object: &mut Map<String, Value>, warnings: &mut Vec<String>) {
    let extensions = object.get("extensions").is_some_and(is_truthy);
    let settings = object.get("settings").is_some_and(is_truthy);
    let dev_port = object.contains_key("devPort");
    if !(extensions || settings || dev_port) {
        return;
    }
    let customizations_ok = object.get("customizations").is_none_or(|customizations| {
        customizations
            .as_object()
            .is_some_and(|customizations| customizations.get("vscode").is_none_or(Value::is_object))
    });
    if !customizations_ok {
        return;
    }

    let mut vscode = object
        .get_mut("customizations")
        .and_then(Value::as_object_mut)
        .and_then(|customizations| customizations.remove("vscode"))
        .and_then(|vscode| match vscode {
            Value::Object(vscode) => Some(vscode),
            _ => None,
        })
        .unwrap_or_default();

    if extensions && let Some(legacy) = object.remove("extensions") {
        let mut merged = match vscode.remove("extensions") {
            Some(Value::Array(existing)) => existing,
            Some(Value::Null) | None => Vec::new(),
            Some(other) => vec![other],
        };
        match legacy {
            Value::Array(legacy) => merged.extend(legacy),
            other => merged.push(other),
        }
        vscode.insert("extensions".to_string(), Value::Array(merged));
        warnings.push(
            r#""extensions" is a legacy property; read as "customizations.vscode.extensions""#
                .to_string(),
        );
    }
    if settings && let Some(legacy) = object.remove("settings") {
        let mut merged = match legacy {
            Value::Object(legacy) => legacy,
            _ => Map::new(),
        };
        if let Some(Value::Object(existing)) = vscode.remove("settings") {
            merged.extend(existing);
        }
        vscode.insert("settings".to_string(), Value::Object(merged));
        warnings.push(
            r#""settings" is a legacy property; read as "customizations.vscode.settings""#
                .to_string(),
        );
    }
    if dev_port
        && !vscode.contains_key("devPort")
        && let Some(legacy) = object.remove("devPort")
    {
        vscode.insert("devPort".to_string(), legacy);
        warnings.push(
            r#""devPort" is a legacy property; read as "customizations.vscode.devPort""#
                .to_string(),
        );
    }

    let customizations = object
        .entry("customizations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(customizations) = customizations {
        customizations.insert("vscode".to_string(), Value::Object(vscode));
    }
}

/// JavaScript truthiness, because the reference CLI tests legacy properties with it.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(flag) => *flag,
        Value::Number(number) => number.as_f64().is_some_and(|number| number != 0.0),
        Value::String(text) => !text.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Reads the model, naming the property where a type error is.
pub(crate) fn deserialize(
    config_file: &Path,
    object: Map<String, Value>,
) -> Result<DevContainer, ConfigError> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|error| {
        let path = error.path();
        let property = path
            .iter()
            .find_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                _ => None,
            })
            .unwrap_or_else(|| path.to_string());
        let inner = error.inner().to_string();
        let message = if path.iter().count() > 1 {
            format!("{path}: {inner}")
        } else {
            inner
        };
        ConfigError::Invalid {
            file: config_file.to_path_buf(),
            property,
            message,
        }
    })
}
