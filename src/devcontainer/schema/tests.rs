//! Tests of the schema warnings: none for the files the schema accepts (the spec's templates and images, checked with
//! python-jsonschema for NOTES.md §1d), and one naming the property for each kind of mistake.

use std::path::{Path, PathBuf};

use super::*;

fn shared_dir() -> PathBuf {
    let shared = match std::env::var_os("SKIFF_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"),
    };
    let folder = shared.join("devcontainer/real-world");
    assert!(
        folder.is_dir(),
        "the shared real-world configurations are missing: looked in {}; set SKIFF_SHARED_DIR to the shared folder",
        folder.display()
    );
    folder
}

fn configs_under(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap().filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            configs_under(&path, found);
        } else if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().ends_with("devcontainer.json"))
        {
            found.push(path);
        }
    }
}

fn warnings_of(text: &str) -> Vec<String> {
    let (config, _) = crate::devcontainer::parse(Path::new("/w/.devcontainer.json"), text).unwrap();
    schema_warnings(&config)
}

#[test]
fn the_spec_templates_and_images_have_no_schema_warnings() {
    let mut files = Vec::new();
    for part in ["templates", "images"] {
        configs_under(&shared_dir().join(part), &mut files);
    }
    assert!(files.len() >= 60, "found only {} files", files.len());
    let mut complaints = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (config, _) = crate::devcontainer::parse(file, &text).unwrap();
        for warning in schema_warnings(&config) {
            complaints.push(format!("{}: {warning}", file.display()));
        }
    }
    assert!(complaints.is_empty(), "{complaints:#?}");
}

#[test]
fn a_compose_configuration_without_workspace_folder_is_a_warning() {
    // apache/airflow's mysql configuration: schema-invalid, but the reference CLI runs it.
    let text =
        std::fs::read_to_string(shared_dir().join("other/apache__airflow.mysql.devcontainer.json"))
            .unwrap();
    let (config, _) =
        crate::devcontainer::parse(Path::new("/w/.devcontainer.json"), &text).unwrap();
    let warnings = schema_warnings(&config);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("workspaceFolder"), "{warnings:?}");
}

#[test]
fn mistakes_are_named_by_their_property() {
    let warnings = warnings_of(r#"{"build": {"dockerfile": "D", "secrets": 1}}"#);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.starts_with("\"build\"") && warning.contains("secrets")),
        "{warnings:?}"
    );
    let warnings = warnings_of(r#"{"image": "x", "shutdownAction": "stopCompose"}"#);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.starts_with("\"shutdownAction\"")),
        "{warnings:?}"
    );
    let warnings = warnings_of(r#"{"image": "x", "hostRequirements": {"cpus": 2, "gpus": true}}"#);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.starts_with("\"hostRequirements")),
        "{warnings:?}"
    );
    // Unknown top-level properties are the parser's to report, once.
    assert_eq!(
        warnings_of(r#"{"image": "x", "shinyNewThing": 1}"#),
        Vec::<String>::new()
    );
    assert_eq!(
        warnings_of(r#"{"image": "x", "forwardPorts": [3000, "db:5432"]}"#),
        Vec::<String>::new()
    );
}
