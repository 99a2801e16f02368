//! Tests of Feature resolution and install order against the reference CLI's expected orders
//! (`containerFeaturesOrder.test.ts`), using its fixtures from the shared test material, and of the generated layer.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

/// `$SKIFF_SHARED_DIR/devcontainer/reference-tests/container-features/feature-dependencies`, else `../shared/...` beside the
/// repository.
fn dependencies_dir() -> PathBuf {
    let shared = match std::env::var_os("SKIFF_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let folder =
        shared.join("devcontainer/reference-tests/container-features/feature-dependencies");
    assert!(
        folder.is_dir(),
        "the shared reference fixtures are missing: looked in {}; set SKIFF_SHARED_DIR to the shared folder",
        folder.display()
    );
    folder
}

/// Resolves the fixture `relative` (a workspace folder holding `.devcontainer/devcontainer.json`).
fn resolve_fixture(relative: &str) -> Result<Vec<ResolvedFeature>, FeatureError> {
    let workspace = dependencies_dir().join(relative);
    let config_file = workspace.join(".devcontainer/devcontainer.json");
    let text = std::fs::read_to_string(&config_file).expect("reading the fixture");
    let (config, _) = skiff::devcontainer::parse(&config_file, &text).expect("parsing the fixture");
    resolve_at(&config, &config_file, &workspace)
}

/// Resolves `config` read from `config_file` in `workspace`, with a cache nobody shares.
fn resolve_at(
    config: &DevContainer,
    config_file: &Path,
    workspace: &Path,
) -> Result<Vec<ResolvedFeature>, FeatureError> {
    let cache = tempfile::tempdir().expect("a temporary folder");
    let sources = Sources {
        config_folder: config_file.parent().unwrap_or(Path::new("/")),
        workspace,
        cache: cache.path(),
        events: None,
        limits: Limits::DEFAULT,
        logins: &[],
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(resolve(config, &sources))
}

fn order_of(relative: &str) -> Vec<(String, Value)> {
    resolve_fixture(relative)
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
        .into_iter()
        .map(|feature| (feature.user_id, Value::Object(feature.options)))
        .collect()
}

fn expected(list: &[(&str, Value)]) -> Vec<(String, Value)> {
    list.iter()
        .map(|(id, options)| ((*id).to_owned(), options.clone()))
        .collect()
}

#[test]
fn installs_after_local_simple() {
    assert_eq!(
        order_of("installsAfter/local-simple"),
        expected(&[("./c", json!({"magicNumber": "321"})), ("./a", json!({}))])
    );
}

#[test]
fn depends_on_local_simple() {
    assert_eq!(
        order_of("dependsOn/local-simple"),
        expected(&[("./b", json!({"magicNumber": "50"})), ("./a", json!({}))])
    );
}

#[test]
fn depends_on_with_options_sorts_rounds_by_options() {
    assert_eq!(
        order_of("dependsOn/local-with-options"),
        expected(&[
            ("./b", json!({})),
            ("./b", json!({"optA": "a", "optB": "a"})),
            ("./b", json!({"optA": "a", "optB": "b"})),
            ("./b", json!({"optA": "b", "optB": "a"})),
            ("./b", json!({"optA": "b", "optB": "b"})),
            ("./d", json!({})),
            ("./e", json!({})),
            ("./c", json!({})),
            ("./a", json!({"optA": "a", "optB": "b"})),
        ])
    );
}

#[test]
fn depends_on_and_installs_after() {
    assert_eq!(
        order_of("dependsOn-and-installsAfter/local-simple"),
        expected(&[("./c", json!({"magicNumber": "321"})), ("./a", json!({}))])
    );
}

#[test]
fn override_install_order() {
    let ids = |relative: &str| -> Vec<String> {
        order_of(relative).into_iter().map(|(id, _)| id).collect()
    };
    assert_eq!(
        ids("overrideFeatureInstallOrder/local-simple"),
        ["./c", "./b", "./d", "./a"]
    );
    assert_eq!(
        ids("overrideFeatureInstallOrder/local-intermediate"),
        ["./c", "./d", "./b", "./a"]
    );
    assert_eq!(
        ids("overrideFeatureInstallOrder/local-roundPriority"),
        ["./a", "./b", "./c"]
    );
}

#[test]
fn cycles_are_rejected_with_the_features_named() {
    for fixture in [
        "dependsOn/invalid-circular",
        "installsAfter/invalid-circular",
    ] {
        let error = resolve_fixture(fixture).unwrap_err();
        assert!(
            error.0.contains("cycle (./a, ./b, ./c)"),
            "{fixture}: {error}"
        );
    }
}

#[test]
fn an_unreachable_registry_is_named_with_the_fix() {
    // Nothing listens on port 9 of the loopback (discard is not run here), so the connection is refused at once.
    let config: DevContainer = serde_json::from_value(json!({
        "image": "x", "features": {"127.0.0.1:9/skiff-test/features/git:1": {}}
    }))
    .unwrap();
    let error = resolve_at(
        &config,
        Path::new("/w/.devcontainer/devcontainer.json"),
        Path::new("/w"),
    )
    .unwrap_err();
    assert!(
        error.0.starts_with("Feature \"127.0.0.1:9/skiff-test/features/git:1\": cannot reach registry 127.0.0.1:9 (http)"),
        "{error}"
    );
    assert!(
        error.0.contains("use it as a local Feature (\"./git\")"),
        "{error}"
    );
}

#[test]
fn legacy_ids_are_refused_with_the_fix() {
    let config: DevContainer = serde_json::from_value(json!({
        "image": "x", "features": {"myfeature": {}}
    }))
    .unwrap();
    let error =
        resolve_at(&config, Path::new("/w/.devcontainer.json"), Path::new("/w")).unwrap_err();
    assert!(error.0.contains("prepend its name with \"./\""), "{error}");
}

#[test]
fn local_features_outside_the_devcontainer_folder_are_refused() {
    let config: DevContainer = serde_json::from_value(json!({
        "image": "x", "features": {"./local-features/a": {}}
    }))
    .unwrap();
    let error =
        resolve_at(&config, Path::new("/w/.devcontainer.json"), Path::new("/w")).unwrap_err();
    assert!(
        error
            .0
            .contains("inside the workspace's .devcontainer folder"),
        "{error}"
    );
}

#[test]
fn option_env_and_layer() {
    let manifest: FeatureManifest = serde_json::from_value(json!({
        "id": "tiger", "version": "1.0.0",
        "options": {"greeting": {"type": "string", "default": "hey"}, "9-lives": {"type": "boolean", "default": true}},
        "containerEnv": {"PATH": "/tiger/bin:${PATH}"}
    }))
    .unwrap();
    let feature = ResolvedFeature {
        user_id: "./tiger".into(),
        folder: PathBuf::from("/nowhere"),
        resource: "/nowhere".into(),
        version: String::new(),
        options: serde_json::from_value(json!({"greeting": "hello"})).unwrap(),
        manifest,
    };
    assert_eq!(
        option_env(&feature),
        "GREETING=\"hello\"\n_LIVES=\"true\"\n"
    );
    let dockerfile = layer_dockerfile(&Layer {
        base_image: "base:1",
        image_user: "",
        container_user: "root",
        remote_user: "vscode",
        features: std::slice::from_ref(&feature),
    });
    assert!(
        dockerfile.starts_with("FROM base:1\nUSER root\n"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains(
            "ENV PATH=\"/tiger/bin:${PATH}\"\nCOPY tiger_0/ /tmp/dev-container-features/tiger_0/\n"
        ),
        "{dockerfile}"
    );
    assert!(dockerfile.ends_with("USER root\n"), "{dockerfile}");
}
