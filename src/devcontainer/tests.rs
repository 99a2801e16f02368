//! Unit tests of the devcontainer module, and a table test that parses every devcontainer.json in the shared test material.
//!
//! Contents: parsing (JSONC, legacy migration, errors), discovery, kind dispatch and paths, substitution, ids, the shared corpus.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

fn file() -> PathBuf {
    PathBuf::from("/work/project/.devcontainer/devcontainer.json")
}

fn parse_ok(text: &str) -> (DevContainer, Vec<String>) {
    match parse(&file(), text) {
        Ok(parsed) => parsed,
        Err(error) => panic!("parse failed: {error}"),
    }
}

// Parsing.

#[test]
fn comments_trailing_commas_and_comment_inside_array() {
    let text = r#"
        /* A header block before the object, as in almost every template. */
        // And a line comment.
        {
            "image": "ubuntu", // comment after a value
            "forwardPorts": [
                3000, // a comment inside an array
                /* another */ "db:5432",
            ],
            "onCreateCommand": [
                // Install common tooling.
                "dnf", "install",
            ],
            "containerEnv": { "A": "1", },
        }
    "#;
    let (config, warnings) = parse_ok(text);
    assert_eq!(config.image.as_deref(), Some("ubuntu"));
    assert_eq!(
        config.forward_ports,
        Some(vec![
            ForwardPort::Port(3000),
            ForwardPort::HostPort {
                host: "db".to_string(),
                port: 5432
            }
        ])
    );
    assert_eq!(
        config.on_create_command,
        Some(LifecycleCommand::Exec(vec![
            "dnf".to_string(),
            "install".to_string()
        ]))
    );
    assert_eq!(
        config.container_env,
        Some(BTreeMap::from([("A".to_string(), "1".to_string())]))
    );
    assert_eq!(warnings, Vec::<String>::new());
}

#[test]
fn byte_order_mark_is_skipped() {
    let (config, _) = parse_ok("\u{feff}{\"image\": \"ubuntu\"}");
    assert_eq!(config.image.as_deref(), Some("ubuntu"));
}

#[test]
fn legacy_vscode_properties_move_into_customizations() {
    let text = r#"{
        "image": "ubuntu",
        "extensions": ["legacy.one"],
        "settings": { "a": 1, "b": 1 },
        "devPort": 8000,
        "customizations": { "vscode": { "extensions": ["new.one"], "settings": { "b": 2 } }, "other": true }
    }"#;
    let (config, warnings) = parse_ok(text);
    let customizations = Value::Object(config.customizations.clone().unwrap());
    // As in the reference CLI: existing extensions first, existing settings win, devPort moves when unset.
    assert_eq!(
        customizations,
        json!({
            "vscode": { "extensions": ["new.one", "legacy.one"], "settings": { "a": 1, "b": 2 }, "devPort": 8000 },
            "other": true
        })
    );
    assert!(
        config.other.is_empty(),
        "legacy properties left behind: {:?}",
        config.other
    );
    assert_eq!(
        warnings,
        vec![
            r#""extensions" is a legacy property; read as "customizations.vscode.extensions""#,
            r#""settings" is a legacy property; read as "customizations.vscode.settings""#,
            r#""devPort" is a legacy property; read as "customizations.vscode.devPort""#,
        ]
    );
}

#[test]
fn legacy_dockerfile_and_context_become_build() {
    let text = r#"{ "dockerFile": "../Dockerfile.dev", "context": "..", "build": { "args": { "A": "b" } } }"#;
    let (config, warnings) = parse_ok(text);
    let build = config.build.clone().unwrap();
    assert_eq!(build.dockerfile.as_deref(), Some("../Dockerfile.dev"));
    assert_eq!(build.context.as_deref(), Some(".."));
    assert_eq!(
        build.args,
        Some(BTreeMap::from([("A".to_string(), "b".to_string())]))
    );
    assert_eq!(config.kind(), Ok(ConfigKind::Dockerfile));
    assert_eq!(warnings.len(), 2, "{warnings:?}");

    // The reference CLI ignores `build.context` when the legacy `dockerFile` is set, and `context` without `dockerFile`.
    let (config, warnings) =
        parse_ok(r#"{ "dockerFile": "Dockerfile", "build": { "context": ".." } }"#);
    assert_eq!(config.build.unwrap().context, None);
    assert!(
        warnings
            .iter()
            .any(|warning| warning.contains(r#""build.context" is ignored"#)),
        "{warnings:?}"
    );
    let (config, warnings) = parse_ok(r#"{ "image": "ubuntu", "context": ".." }"#);
    assert_eq!(config.other.get("context"), Some(&json!("..")));
    assert_eq!(
        warnings,
        vec![r#""context" is ignored without the legacy "dockerFile"; use "build.context""#]
    );
}

#[test]
fn unknown_properties_are_kept_and_reported() {
    let (config, warnings) = parse_ok(r#"{ "image": "ubuntu", "shinyNewThing": { "x": [1] } }"#);
    assert_eq!(
        config.other.get("shinyNewThing"),
        Some(&json!({ "x": [1] }))
    );
    assert_eq!(
        warnings,
        vec![r#"unknown property "shinyNewThing" is ignored"#]
    );
    let serialised = serde_json::to_value(&config).unwrap();
    assert_eq!(
        serialised,
        json!({ "image": "ubuntu", "shinyNewThing": { "x": [1] } })
    );
}

#[test]
fn syntax_error_reports_line_and_column() {
    // The position is where the comma belongs: right after `80`, line 3 column 5.
    let text = "{\n  \"forwardPorts\": [8000,\n  80\n  443]\n}\n";
    let error = parse(&file(), text).unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Syntax {
                line: 3,
                column: 5,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "/work/project/.devcontainer/devcontainer.json:3:5: expected comma"
    );
}

#[test]
fn stray_text_before_the_object_is_a_syntax_error() {
    // A fork of microsoft/vscode had a word before `{`; the reference CLI's fault-tolerant parser would read garbage from it.
    let error = parse(&file(), "oops{\n  \"image\": \"ubuntu\"\n}\n").unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Syntax {
                line: 1,
                column: 1,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn json5_liberties_are_syntax_errors() {
    for text in [
        r#"{ image: "ubuntu" }"#,
        r#"{ "image": 'ubuntu' }"#,
        r#"{ "appPort": 0x10 }"#,
    ] {
        let error = parse(&file(), text).unwrap_err();
        assert!(
            matches!(error, ConfigError::Syntax { .. }),
            "{text}: {error:?}"
        );
    }
}

#[test]
fn top_level_must_be_an_object() {
    for text in ["[]", "\"image\"", "", "  // only a comment\n"] {
        let error = parse(&file(), text).unwrap_err();
        assert!(
            matches!(error, ConfigError::NotAnObject { .. }),
            "{text:?}: {error:?}"
        );
    }
    assert_eq!(
        parse(&file(), "[]").unwrap_err().to_string(),
        "/work/project/.devcontainer/devcontainer.json: must contain a JSON object ({ ... }) at the top level"
    );
}

#[test]
fn type_error_names_the_property() {
    let error = parse(&file(), r#"{ "image": "ubuntu", "forwardPorts": "abc" }"#).unwrap_err();
    let ConfigError::Invalid {
        property, message, ..
    } = &error
    else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(property, "forwardPorts");
    assert!(message.contains("expected a sequence"), "{message}");
    assert!(
        error.to_string().starts_with(
            "/work/project/.devcontainer/devcontainer.json: property \"forwardPorts\": "
        ),
        "{error}"
    );

    // Inside a property, the message starts with the full path.
    let cases = [
        (
            r#"{ "forwardPorts": [3000, "not a port"] }"#,
            "forwardPorts",
            "forwardPorts[1]: ",
        ),
        (
            r#"{ "forwardPorts": [70000] }"#,
            "forwardPorts",
            "forwardPorts[0]: ",
        ),
        (
            r#"{ "build": { "dockerfile": "D", "args": { "X": 1 } } }"#,
            "build",
            "build.args.X: ",
        ),
        (
            r#"{ "image": "u", "postCreateCommand": 5 }"#,
            "postCreateCommand",
            "expected a command string",
        ),
        (
            r#"{ "image": "u", "mounts": [{ "type": "tmpfs", "target": "/x" }] }"#,
            "mounts",
            "mounts[0]: ",
        ),
        (
            r#"{ "image": "u", "hostRequirements": { "gpu": "maybe" } }"#,
            "hostRequirements",
            "hostRequirements.gpu: ",
        ),
        (r#"{ "dockerFile": 5 }"#, "dockerFile", "expected a string"),
    ];
    for (text, expected_property, expected_message) in cases {
        match parse(&file(), text) {
            Err(ConfigError::Invalid {
                property, message, ..
            }) => {
                assert_eq!(property, expected_property, "{text}");
                assert!(message.contains(expected_message), "{text}: {message}");
            }
            other => panic!("{text}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn property_forms_parse_and_round_trip() {
    let text = r#"{
        "$schema": "https://example.com/schema.json",
        "name": "all forms",
        "build": { "dockerfile": "Dockerfile", "cacheFrom": "a:latest", "options": ["--platform", "linux/amd64"], "target": "dev" },
        "appPort": [3000, "8000:8010"],
        "mounts": ["source=x,target=/x,type=volume", { "type": "bind", "source": "/h", "target": "/c" }, { "type": "volume", "target": "/v" }],
        "remoteEnv": { "SET": "1", "UNSET": null },
        "updateRemoteUserUID": false,
        "userEnvProbe": "interactiveShell",
        "shutdownAction": "stopContainer",
        "waitFor": "postCreateCommand",
        "portsAttributes": { "3000": { "label": "web", "onAutoForward": "openBrowserOnce", "protocol": "https" } },
        "otherPortsAttributes": { "onAutoForward": "silent" },
        "hostRequirements": { "cpus": 2, "memory": "8gb", "gpu": "optional" },
        "features": { "ghcr.io/x/y:1": {}, "./local": { "opt": true }, "git-lfs": "latest", "sshd": false },
        "secrets": { "TOKEN": { "description": "a token", "documentationUrl": "https://example.com" } },
        "initializeCommand": { "a": "echo a", "b": ["echo", "b"] },
        "postStartCommand": "echo start"
    }"#;
    let (config, warnings) = parse_ok(text);
    assert_eq!(warnings, Vec::<String>::new());
    let build = config.build.as_ref().unwrap();
    assert_eq!(
        build.cache_from.as_ref().unwrap().as_slice(),
        ["a:latest".to_string()]
    );
    assert_eq!(config.app_port.as_ref().unwrap().as_slice().len(), 2);
    let mounts: Vec<String> = config
        .mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(Mount::to_mount_spec)
        .collect();
    assert_eq!(
        mounts,
        [
            "source=x,target=/x,type=volume",
            "type=bind,src=/h,dst=/c",
            "type=volume,dst=/v"
        ]
    );
    assert_eq!(
        config.remote_env.as_ref().unwrap().get("UNSET"),
        Some(&None)
    );
    assert_eq!(config.update_remote_user_uid, Some(false));
    assert_eq!(config.wait_for, Some(WaitFor::PostCreateCommand));
    assert_eq!(
        config.host_requirements.as_ref().unwrap().gpu,
        Some(GpuRequirement::Optional)
    );
    let features = config.features.as_ref().unwrap();
    assert_eq!(
        features["git-lfs"],
        FeatureValue::Version("latest".to_string())
    );
    assert_eq!(features["sshd"], FeatureValue::Enabled(false));
    let Some(LifecycleCommand::Parallel(commands)) = &config.initialize_command else {
        panic!(
            "expected the parallel form: {:?}",
            config.initialize_command
        );
    };
    assert_eq!(
        commands["b"],
        SimpleCommand::Exec(vec!["echo".to_string(), "b".to_string()])
    );
    let names: Vec<&str> = config
        .lifecycle_commands()
        .iter()
        .map(|(name, _)| *name)
        .collect();
    assert_eq!(names, ["initializeCommand", "postStartCommand"]);

    // Serialising gives back the same JSON (keys aside), and parsing that gives back the same model.
    let serialised = serde_json::to_value(&config).unwrap();
    let original: Value = jsonc_parser::parse_to_serde_value(text, &Default::default()).unwrap();
    assert_eq!(serialised, original);
    let (again, _) = parse_ok(&serialised.to_string());
    assert_eq!(again, config);
}

// Kind dispatch and paths.

#[test]
fn kind_dispatch_order() {
    let kind = |text: &str| parse_ok(text).0.kind();
    assert_eq!(kind(r#"{ "image": "u" }"#), Ok(ConfigKind::Image));
    assert_eq!(
        kind(r#"{ "build": { "dockerfile": "D" } }"#),
        Ok(ConfigKind::Dockerfile)
    );
    assert_eq!(
        kind(r#"{ "dockerComposeFile": "c.yml", "service": "s" }"#),
        Ok(ConfigKind::Compose)
    );
    // Dockerfile and image are tested before compose, as in the reference CLI.
    assert_eq!(
        kind(r#"{ "image": "u", "dockerComposeFile": "c.yml" }"#),
        Ok(ConfigKind::Image)
    );
    assert_eq!(
        kind(r#"{ "build": { "dockerfile": "D" }, "dockerComposeFile": "c.yml" }"#),
        Ok(ConfigKind::Dockerfile)
    );
    assert_eq!(
        kind(r#"{ "image": "u", "build": { "dockerfile": "D" } }"#),
        Err(KindError::ImageAndBuild)
    );
    assert_eq!(
        kind(r#"{ "image": "u", "build": { "args": {} } }"#),
        Err(KindError::ImageAndBuild)
    );
    assert_eq!(
        kind(r#"{ "build": { "args": {} } }"#),
        Err(KindError::Missing)
    );
    assert_eq!(kind(r#"{ "name": "nothing" }"#), Err(KindError::Missing));
}

#[test]
fn image_and_build_together_is_an_error_naming_file_and_both_properties() {
    let workspace = tempfile::tempdir().unwrap();
    let config_file = workspace.path().join(".devcontainer.json");
    std::fs::write(
        &config_file,
        r#"{ "image": "u", "build": { "dockerfile": "Dockerfile" } }"#,
    )
    .unwrap();
    let error = load(workspace.path(), None).unwrap_err();
    assert!(
        matches!(&error, ConfigError::Kind { problem: KindError::ImageAndBuild, file } if file == &config_file),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&config_file.display().to_string()),
        "{message}"
    );
    assert!(message.contains(r#""image" and "build""#), "{message}");

    std::fs::write(&config_file, r#"{ "name": "x" }"#).unwrap();
    let error = load(workspace.path(), None).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            r#"{}: missing one of "image", "build.dockerfile" or "dockerComposeFile""#,
            config_file.display()
        )
    );
}

#[test]
fn dockerfile_and_context_paths() {
    let config_file = Path::new("/ws/.devcontainer/cpu/devcontainer.json");
    // pytorch: the Dockerfile is one level up, the context is the config's own folder.
    let (config, _) =
        parse_ok(r#"{ "build": { "dockerfile": "../Dockerfile", "context": "./" } }"#);
    assert_eq!(
        config.dockerfile_path(config_file),
        Some(PathBuf::from("/ws/.devcontainer/Dockerfile"))
    );
    assert_eq!(
        config.context_dir(config_file),
        Some(PathBuf::from("/ws/.devcontainer/cpu"))
    );
    // Without a context the reference CLI uses the Dockerfile's folder (the spec says ".").
    let (config, _) = parse_ok(r#"{ "build": { "dockerfile": "../../Dockerfile" } }"#);
    assert_eq!(config.context_dir(config_file), Some(PathBuf::from("/ws")));
    let (config, _) =
        parse_ok(r#"{ "build": { "dockerfile": "Dockerfile", "context": "../../.." } }"#);
    assert_eq!(config.context_dir(config_file), Some(PathBuf::from("/")));
    let (config, _) = parse_ok(r#"{ "image": "u" }"#);
    assert_eq!(config.dockerfile_path(config_file), None);
    assert_eq!(config.context_dir(config_file), None);

    let (config, _) = parse_ok(
        r#"{ "dockerComposeFile": ["../docker-compose.yml", "docker-compose.yml"], "service": "app" }"#,
    );
    assert_eq!(
        config.compose_files(Path::new("/ws/.devcontainer/devcontainer.json")),
        [
            PathBuf::from("/ws/docker-compose.yml"),
            PathBuf::from("/ws/.devcontainer/docker-compose.yml")
        ]
    );
}

#[test]
fn workspace_folder_defaults() {
    let local = Path::new("/home/me/project");
    assert_eq!(
        DevContainer::default_workspace_folder(local),
        "/workspaces/project"
    );
    let (image, _) = parse_ok(r#"{ "image": "u" }"#);
    assert_eq!(
        image.effective_workspace_folder(local),
        "/workspaces/project"
    );
    let (compose, _) = parse_ok(r#"{ "dockerComposeFile": "c.yml", "service": "s" }"#);
    assert_eq!(compose.effective_workspace_folder(local), "/");
    let (explicit, _) = parse_ok(r#"{ "image": "u", "workspaceFolder": "/src" }"#);
    assert_eq!(explicit.effective_workspace_folder(local), "/src");
}

// Discovery.

#[test]
fn discovery_prefers_the_devcontainer_folder() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    std::fs::create_dir(root.join(".devcontainer")).unwrap();
    std::fs::write(root.join(".devcontainer.json"), r#"{ "image": "root" }"#).unwrap();
    assert_eq!(
        find_config(root, None).unwrap(),
        root.join(".devcontainer.json")
    );
    std::fs::write(
        root.join(".devcontainer/devcontainer.json"),
        r#"{ "image": "folder" }"#,
    )
    .unwrap();
    assert_eq!(
        find_config(root, None).unwrap(),
        root.join(".devcontainer/devcontainer.json")
    );

    let loaded = load(root, None).unwrap();
    assert_eq!(loaded.config.image.as_deref(), Some("folder"));
    assert_eq!(loaded.kind, ConfigKind::Image);
    assert_eq!(loaded.workspace_folder, root);
    let basename = root.file_name().unwrap().to_string_lossy();
    assert_eq!(
        loaded.effective_workspace_folder(),
        format!("/workspaces/{basename}")
    );
}

#[test]
fn not_found_lists_both_paths() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    let error = find_config(root, None).unwrap_err();
    let first = root.join(".devcontainer/devcontainer.json");
    let second = root.join(".devcontainer.json");
    assert!(
        matches!(&error, ConfigError::NotFound { looked_in, .. } if looked_in == &[first.clone(), second.clone()]),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "no devcontainer.json in {}: looked for {} and {}; create one or pass --config",
            root.display(),
            first.display(),
            second.display()
        )
    );

    // A config in a sub-folder is not picked, but the message points at it.
    std::fs::create_dir_all(root.join(".devcontainer/cpu")).unwrap();
    std::fs::write(root.join(".devcontainer/cpu/devcontainer.json"), "{}").unwrap();
    let error = find_config(root, None).unwrap_err();
    assert!(
        error.to_string().ends_with(&format!(
            "create one or pass --config (found {}, which needs --config)",
            root.join(".devcontainer/cpu/devcontainer.json").display()
        )),
        "{error}"
    );
}

#[test]
fn explicit_config_must_exist_and_be_named_devcontainer_json() {
    let workspace = tempfile::tempdir().unwrap();
    let root = workspace.path();
    let sub = root.join(".devcontainer/cpu/devcontainer.json");
    std::fs::create_dir_all(sub.parent().unwrap()).unwrap();
    std::fs::write(&sub, r#"{ "image": "cpu" }"#).unwrap();
    assert_eq!(
        find_config(Path::new("/elsewhere"), Some(&sub)).unwrap(),
        sub
    );
    assert_eq!(
        load(root, Some(&sub)).unwrap().config.image.as_deref(),
        Some("cpu")
    );

    // A relative path is relative to the current directory.
    let relative = Path::new("no-such-dir/devcontainer.json");
    match find_config(root, Some(relative)) {
        Err(ConfigError::ConfigFileMissing { file }) => {
            assert_eq!(file, std::env::current_dir().unwrap().join(relative));
        }
        other => panic!("expected ConfigFileMissing, got {other:?}"),
    }

    let wrong_name = root.join("config.json");
    std::fs::write(&wrong_name, "{}").unwrap();
    let error = find_config(root, Some(&wrong_name)).unwrap_err();
    assert!(
        matches!(error, ConfigError::BadFileName { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .ends_with("a config file must be named devcontainer.json or .devcontainer.json")
    );
}

// Substitution.

fn local_context() -> LocalContext {
    LocalContext {
        local_workspace_folder: PathBuf::from("/home/me/project"),
        config_file: file(),
        env: HashMap::from([
            ("HOME".to_string(), "/home/me".to_string()),
            ("EMPTY".to_string(), String::new()),
        ]),
    }
}

#[test]
fn local_substitution() {
    let (mut config, _) = parse_ok(
        r#"{
        "image": "u",
        "workspaceFolder": "/workspaces/${localWorkspaceFolderBasename}",
        "containerEnv": {
            "HOME_DIR": "${localEnv:HOME}",
            "ALIAS": "${env:HOME}",
            "DEFAULTED": "${localEnv:NOT_SET:fallback}",
            "EMPTY_NOT_DEFAULTED": "${localEnv:EMPTY:fallback}",
            "UNSET": "[${localEnv:NOT_SET}]",
            "FOLDER": "${localWorkspaceFolder}",
            "CONTAINER": "${containerWorkspaceFolder}|${containerWorkspaceFolderBasename}",
            "LATER": "${containerEnv:PATH} ${devcontainerId}",
            "UNKNOWN": "${templateOption:imageVariant} ${nope} ${templateOption:imageVariant}",
            "UNCLOSED": "${localEnv:HOME",
            "NEWLINE": "${localEnv:\nHOME} $${localEnv:HOME}"
        },
        "runArgs": ["--label", "x=${localWorkspaceFolderBasename}"],
        "customizations": { "${localEnv:HOME}": "keys are not substituted" }
    }"#,
    );
    let unknown = substitute_local(&mut config, &local_context()).unwrap();
    assert_eq!(unknown, ["${templateOption:imageVariant}", "${nope}"]);
    let env = config.container_env.as_ref().unwrap();
    let expected = [
        ("HOME_DIR", "/home/me"),
        ("ALIAS", "/home/me"),
        ("DEFAULTED", "fallback"),
        ("EMPTY_NOT_DEFAULTED", ""),
        ("UNSET", "[]"),
        ("FOLDER", "/home/me/project"),
        ("CONTAINER", "/workspaces/project|project"),
        ("LATER", "${containerEnv:PATH} ${devcontainerId}"),
        (
            "UNKNOWN",
            "${templateOption:imageVariant} ${nope} ${templateOption:imageVariant}",
        ),
        ("UNCLOSED", "${localEnv:HOME"),
        ("NEWLINE", "${localEnv:\nHOME} $/home/me"),
    ];
    for (name, value) in expected {
        assert_eq!(env[name], value, "{name}");
    }
    assert_eq!(
        config.workspace_folder.as_deref(),
        Some("/workspaces/project")
    );
    assert_eq!(config.run_args.as_ref().unwrap()[1], "x=project");
    assert!(
        config
            .customizations
            .as_ref()
            .unwrap()
            .contains_key("${localEnv:HOME}")
    );
}

#[test]
fn container_workspace_folder_defaults_per_kind() {
    let (mut compose, _) = parse_ok(
        r#"{ "dockerComposeFile": "c.yml", "service": "s", "postCreateCommand": "ls ${containerWorkspaceFolder}" }"#,
    );
    substitute_local(&mut compose, &local_context()).unwrap();
    assert_eq!(
        compose.post_create_command,
        Some(LifecycleCommand::Shell("ls /".to_string()))
    );
    let (mut image, _) =
        parse_ok(r#"{ "image": "u", "postCreateCommand": ["ls", "${containerWorkspaceFolder}"] }"#);
    substitute_local(&mut image, &local_context()).unwrap();
    assert_eq!(
        image.post_create_command,
        Some(LifecycleCommand::Exec(vec![
            "ls".to_string(),
            "/workspaces/project".to_string()
        ]))
    );
}

#[test]
fn env_variable_without_a_name_is_an_error() {
    let (mut config, _) = parse_ok(r#"{ "image": "u", "remoteEnv": { "X": "${localEnv}" } }"#);
    let error = substitute_local(&mut config, &local_context()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "remoteEnv.X: ${localEnv} names no variable; write ${localEnv:NAME}"
    );
}

#[test]
fn container_env_and_devcontainer_id_passes() {
    let mut value = json!({
        "remoteEnv": { "PATH": "/extra:${containerEnv:PATH}", "MISSING": "${containerEnv:NOPE:default}", "LOCAL": "${localEnv:HOME}" },
        "mounts": ["source=cache-${devcontainerId},target=/cache,type=volume"]
    });
    let container_env = HashMap::from([("PATH".to_string(), "/usr/bin".to_string())]);
    substitute_container_env(&mut value, &container_env).unwrap();
    substitute_devcontainer_id(&mut value, "abc");
    assert_eq!(
        value,
        json!({
            "remoteEnv": { "PATH": "/extra:/usr/bin", "MISSING": "default", "LOCAL": "${localEnv:HOME}" },
            "mounts": ["source=cache-abc,target=/cache,type=volume"]
        })
    );
    let error =
        substitute_container_env(&mut json!(["${containerEnv}"]), &container_env).unwrap_err();
    assert!(matches!(error, ConfigError::Variable { .. }), "{error:?}");
}

// Ids.

#[test]
fn devcontainer_id_vectors() {
    let labels = BTreeMap::from([("a".to_string(), "b".to_string())]);
    assert_eq!(
        devcontainer_id(&labels),
        "1mqafr5h2iu6dhh3k1m4vtnuhml2uiec4s7bntt1v0f25ao63i1n"
    );
    let labels = id_labels(
        Path::new("/home/user/proj"),
        Path::new("/home/user/proj/.devcontainer/devcontainer.json"),
    );
    assert_eq!(
        labels,
        BTreeMap::from([
            (
                LABEL_LOCAL_FOLDER.to_string(),
                "/home/user/proj".to_string()
            ),
            (
                LABEL_CONFIG_FILE.to_string(),
                "/home/user/proj/.devcontainer/devcontainer.json".to_string()
            ),
        ])
    );
    assert_eq!(
        devcontainer_id(&labels),
        "17lm1qiejea4sikebnfe3bsdiueeed44rk7kqhetqup8ndnjubjp"
    );
}

// The shared corpus.

/// What a shared config is expected to do, derived from its raw JSON keys by the dispatch rule of NOTES.md §0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expected {
    Kind(ConfigKind),
    KindError(KindError),
    /// Not JSONC at all, like the microsoft/vscode fork NOTES.md mentions (stray text before `{`; not in the material yet).
    SyntaxError,
}

/// Configs that are meant to fail, with why and how.
const EXPECTED_FAILURES: &[(&str, &str, Expected)] = &[(
    "reference-tests/configs/set-up-with-config/devcontainer.json",
    "a config for `devcontainer set-up` on an existing container: it has no image, Dockerfile or compose file",
    Expected::KindError(KindError::Missing),
)];

/// Kinds checked by hand against NOTES.md §6b (and by reading the files), not derived by a rule.
const HAND_CHECKED_KINDS: &[(&str, ConfigKind)] = &[
    (
        "real-world/other/mastodon__mastodon.devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "real-world/other/rails__rails.devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "real-world/other/nextcloud__server.devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "real-world/other/apache__airflow.mysql.devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "real-world/other/pytorch__pytorch.cpu.devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "real-world/other/python__cpython.devcontainer.json",
        ConfigKind::Image,
    ),
    (
        "real-world/other/home-assistant__core.OLD.devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "real-world/other/github__docs.OLD.devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "real-world/other/dotnet__runtime.OLD.devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "real-world/other/devcontainers__cli.devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "real-world/templates/src/go/.devcontainer/devcontainer.json",
        ConfigKind::Image,
    ),
    (
        "real-world/templates/src/kubernetes-helm/.devcontainer/devcontainer.json",
        ConfigKind::Image,
    ),
    (
        "real-world/templates/src/docker-existing-dockerfile/.devcontainer/devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "real-world/templates/src/docker-existing-docker-compose/.devcontainer/devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "real-world/templates/src/javascript-node-postgres/.devcontainer/devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "real-world/images/src/universal/.devcontainer/devcontainer.json",
        ConfigKind::Dockerfile,
    ),
    (
        "reference-tests/configs/image-with-parallel-initialize-command/.devcontainer.json",
        ConfigKind::Image,
    ),
    (
        "reference-tests/configs/compose-image-with-mounts/.devcontainer/devcontainer.json",
        ConfigKind::Compose,
    ),
    (
        "reference-tests/configs/dockerfile-with-parallel-commands/.devcontainer.json",
        ConfigKind::Dockerfile,
    ),
];

/// The shared test material: `$SKIFF_SHARED_DIR/devcontainer`, else `../shared/devcontainer` beside the repository.
fn shared_devcontainer_dir() -> PathBuf {
    let folder = match std::env::var_os("SKIFF_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared).join("devcontainer"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/devcontainer"),
    };
    assert!(
        folder.is_dir(),
        "the shared devcontainer test material is missing: looked in {}; set SKIFF_SHARED_DIR to the shared folder \
         (the one containing devcontainer/NOTES.md)",
        folder.display()
    );
    folder
}

/// Every `devcontainer.json` and `*.devcontainer.json` under `folder`, sorted.
fn config_files(folder: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name == "devcontainer.json" || name.ends_with(".devcontainer.json")
                })
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The §0 dispatch rule applied to the raw JSON, before migration and without our model.
fn expected_from_raw(raw: &Value) -> Expected {
    let has = |key: &str| raw.get(key).is_some();
    let build_dockerfile = raw
        .get("build")
        .and_then(|build| build.get("dockerfile"))
        .is_some();
    if has("image") && (has("build") || has("dockerFile")) {
        Expected::KindError(KindError::ImageAndBuild)
    } else if has("dockerFile") || build_dockerfile {
        Expected::Kind(ConfigKind::Dockerfile)
    } else if has("image") {
        Expected::Kind(ConfigKind::Image)
    } else if has("dockerComposeFile") {
        Expected::Kind(ConfigKind::Compose)
    } else {
        Expected::KindError(KindError::Missing)
    }
}

/// What checking a folder of configs found.
struct CorpusReport {
    files: usize,
    counts: BTreeMap<String, usize>,
    misses: Vec<String>,
}

/// Parses every config under `folder` and compares the outcome with the §0 rule, the hand checks and the expected failures.
fn check_corpus(
    folder: &Path,
    expected_failures: &[(&str, &str, Expected)],
    hand_checked_kinds: &[(&str, ConfigKind)],
) -> CorpusReport {
    let files = config_files(folder);
    let mut misses = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut seen = Vec::new();
    for path in &files {
        let relative = path
            .strip_prefix(folder)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        seen.push(relative.clone());
        let text = std::fs::read_to_string(path).unwrap();
        let expected_failure = expected_failures
            .iter()
            .find(|(name, _, _)| *name == relative);
        if let Some((_, reason, Expected::SyntaxError)) = expected_failure {
            match parse(path, &text) {
                Err(ConfigError::Syntax { .. }) => {
                    *counts.entry("syntax error".to_string()).or_default() += 1;
                }
                other => misses.push(format!(
                    "{relative}: listed to fail with a syntax error ({reason}) but got {other:?}"
                )),
            }
            continue;
        }
        // The lenient default options of jsonc-parser, so the expectation does not depend on our parser settings.
        let raw: Value = match jsonc_parser::parse_to_serde_value(&text, &Default::default()) {
            Ok(raw) => raw,
            Err(error) => {
                misses.push(format!("{relative}: not even lenient JSONC: {error}"));
                continue;
            }
        };
        let mut expected = expected_from_raw(&raw);
        if let Some((_, kind)) = hand_checked_kinds
            .iter()
            .find(|(name, _)| *name == relative)
        {
            if expected != Expected::Kind(*kind) {
                misses.push(format!(
                    "{relative}: the §0 rule says {expected:?}, a hand check says {kind}"
                ));
            }
            expected = Expected::Kind(*kind);
        }
        if let Some((_, reason, failure)) = expected_failure
            && expected != *failure
        {
            misses.push(format!(
                "{relative}: listed to fail with {failure:?} ({reason}) but the §0 rule says {expected:?}"
            ));
        }

        let config = match parse(path, &text) {
            Ok((config, _warnings)) => config,
            Err(error) => {
                misses.push(format!("{relative}: {error}"));
                continue;
            }
        };
        let actual = match config.kind() {
            Ok(kind) => Expected::Kind(kind),
            Err(problem) => Expected::KindError(problem),
        };
        if actual != expected {
            misses.push(format!("{relative}: expected {expected:?}, got {actual:?}"));
        }
        if matches!(actual, Expected::KindError(_)) && expected_failure.is_none() {
            misses.push(format!(
                "{relative}: fails with {actual:?} but is not in EXPECTED_FAILURES"
            ));
        }
        *counts
            .entry(match actual {
                Expected::Kind(kind) => kind.to_string(),
                Expected::KindError(problem) => format!("kind error ({problem:?})"),
                Expected::SyntaxError => "syntax error".to_string(),
            })
            .or_default() += 1;

        // The client sends the model to the agent as JSON, so it must come back the same.
        let json = serde_json::to_string(&config).unwrap();
        match parse(path, &json) {
            Ok((again, _)) if again == config => {}
            Ok((again, _)) => misses.push(format!(
                "{relative}: round trip changed the model:\n{config:?}\n{again:?}"
            )),
            Err(error) => misses.push(format!("{relative}: round trip failed: {error}")),
        }
    }

    for (name, _, _) in expected_failures {
        if !seen.iter().any(|seen| seen == name) {
            misses.push(format!("{name}: listed in EXPECTED_FAILURES but not found"));
        }
    }
    for (name, _) in hand_checked_kinds {
        if !seen.iter().any(|seen| seen == name) {
            misses.push(format!(
                "{name}: listed in HAND_CHECKED_KINDS but not found"
            ));
        }
    }

    CorpusReport {
        files: files.len(),
        counts,
        misses,
    }
}

#[test]
fn every_shared_config_parses() {
    let folder = shared_devcontainer_dir();
    let report = check_corpus(&folder, EXPECTED_FAILURES, HAND_CHECKED_KINDS);
    println!(
        "{} shared configs in {}: {:?}",
        report.files,
        folder.display(),
        report.counts
    );
    assert!(
        report.misses.is_empty(),
        "{} of {} shared configs did not parse as expected:\n{}",
        report.misses.len(),
        report.files,
        report.misses.join("\n")
    );
    // The material had 159 configs when this test was written; far fewer means the walk is broken, not that all is well.
    assert!(
        report.files >= 150,
        "only {} configs found under {}",
        report.files,
        folder.display()
    );
}

/// The corpus check itself must notice misses, or a green `every_shared_config_parses` means nothing.
#[test]
fn corpus_check_reports_every_kind_of_miss() {
    let folder = tempfile::tempdir().unwrap();
    let write = |relative: &str, text: &str| {
        let path = folder.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("image/devcontainer.json", r#"{ "image": "u" }"#);
    write("stray/devcontainer.json", "oops { \"image\": \"u\" }");
    write("setup/devcontainer.json", r#"{ "remoteUser": "x" }"#);
    write(
        "unlisted-broken/.devcontainer.json",
        r#"{ "image": "u", "forwardPorts": "abc" }"#,
    );
    write("unlisted-missing/a.devcontainer.json", r#"{ "name": "x" }"#);
    write("not-a-config.json", "not json");
    let expected_failures = [
        (
            "stray/devcontainer.json",
            "stray text",
            Expected::SyntaxError,
        ),
        (
            "setup/devcontainer.json",
            "no kind",
            Expected::KindError(KindError::Missing),
        ),
        (
            "image/devcontainer.json",
            "wrongly listed",
            Expected::KindError(KindError::Missing),
        ),
        (
            "gone/devcontainer.json",
            "stale entry",
            Expected::SyntaxError,
        ),
    ];
    let hand_checked = [("image/devcontainer.json", ConfigKind::Compose)];
    let report = check_corpus(folder.path(), &expected_failures, &hand_checked);

    assert_eq!(report.files, 5);
    let misses = report.misses.join("\n");
    for expected in [
        "image/devcontainer.json: the §0 rule says Kind(Image), a hand check says compose",
        "image/devcontainer.json: listed to fail with KindError(Missing)",
        "unlisted-broken/.devcontainer.json: ",
        "property \"forwardPorts\"",
        "unlisted-missing/a.devcontainer.json: fails with KindError(Missing) but is not in EXPECTED_FAILURES",
        "gone/devcontainer.json: listed in EXPECTED_FAILURES but not found",
    ] {
        assert!(
            misses.contains(expected),
            "missing {expected:?} in:\n{misses}"
        );
    }
    assert!(!misses.contains("stray/"), "{misses}");
    assert!(!misses.contains("setup/"), "{misses}");
    assert_eq!(report.counts.get("syntax error"), Some(&1));
}

#[test]
fn shared_real_world_details() {
    let folder = shared_devcontainer_dir().join("real-world/other");
    let read = |name: &str| {
        let path = folder.join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        parse(&path, &text).unwrap()
    };

    // python/cpython: comments inside an array, and the object form mixing strings and arrays.
    let (cpython, _) = read("python__cpython.devcontainer.json");
    let Some(LifecycleCommand::Exec(argv)) = &cpython.on_create_command else {
        panic!("{:?}", cpython.on_create_command);
    };
    assert_eq!(argv.len(), 7);
    let Some(LifecycleCommand::Parallel(commands)) = &cpython.post_create_command else {
        panic!("{:?}", cpython.post_create_command);
    };
    assert_eq!(
        commands["umask fix: /tmp"],
        SimpleCommand::Exec(
            ["sudo", "setfacl", "-bnR", "/tmp"]
                .map(String::from)
                .to_vec()
        )
    );

    // pytorch: a sub-folder config whose Dockerfile is one level up.
    let config_file = Path::new("/ws/.devcontainer/cpu/devcontainer.json");
    let (pytorch, _) = read("pytorch__pytorch.cpu.devcontainer.json");
    assert_eq!(
        pytorch.context_dir(config_file),
        Some(PathBuf::from("/ws/.devcontainer/cpu"))
    );
    assert_eq!(
        pytorch.workspace_folder.as_deref(),
        Some("/workspace/pytorch")
    );

    // home-assistant: legacy dockerFile and context, a numeric appPort, and legacy vscode properties.
    let (home_assistant, warnings) = read("home-assistant__core.OLD.devcontainer.json");
    let build = home_assistant.build.as_ref().unwrap();
    assert_eq!(build.dockerfile.as_deref(), Some("../Dockerfile.dev"));
    assert_eq!(build.context.as_deref(), Some(".."));
    assert_eq!(
        home_assistant.app_port,
        Some(AppPort::One(PortSpec::Number(8123)))
    );
    assert_eq!(warnings.len(), 4, "{warnings:?}");

    // mastodon: trailing commas everywhere, port attributes and waitFor.
    let (mastodon, _) = read("mastodon__mastodon.devcontainer.json");
    assert_eq!(mastodon.wait_for, Some(WaitFor::PostCreateCommand));
    assert_eq!(
        mastodon.ports_attributes.as_ref().unwrap()["4000"].on_auto_forward,
        Some(OnAutoForward::Silent)
    );
}

// The spec's schema: our rules (`schema`) and the model against `schema/devContainer.base.schema.json`.

/// The spec's base schema, from the shared material.
fn base_schema() -> serde_json::Value {
    let path = shared_devcontainer_dir().join("schema/devContainer.base.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("the spec's schema {}: {error}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// What a schema node is made of besides itself: the node its `$ref` points at, and the branches of its
/// `allOf`, `oneOf` and `anyOf`.
fn schema_parts<'a>(
    schema: &'a serde_json::Value,
    node: &'a serde_json::Value,
) -> Vec<&'a serde_json::Value> {
    let mut parts = Vec::new();
    if let Some(reference) = node.get("$ref").and_then(|reference| reference.as_str()) {
        parts.push(
            schema
                .pointer(reference.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("the schema's {reference} resolves")),
        );
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        parts.extend(
            node.get(combinator)
                .and_then(|branches| branches.as_array())
                .into_iter()
                .flatten(),
        );
    }
    parts
}

/// The `properties` of every object the schema describes at `node`, through its parts (the top level's
/// branches included).
fn schema_properties(
    schema: &serde_json::Value,
    node: &serde_json::Value,
    into: &mut Vec<(String, serde_json::Value)>,
) {
    if let Some(properties) = node
        .get("properties")
        .and_then(|properties| properties.as_object())
    {
        for (name, property) in properties {
            into.push((name.clone(), property.clone()));
        }
    }
    for part in schema_parts(schema, node) {
        schema_properties(schema, part, into);
    }
}

/// Every string a property's schema enumerates, through its parts.
fn schema_enum(schema: &serde_json::Value, node: &serde_json::Value) -> Vec<String> {
    let mut values: Vec<String> = node
        .get("enum")
        .and_then(|values| values.as_array())
        .into_iter()
        .flatten()
        .filter_map(|value| value.as_str().map(str::to_owned))
        .collect();
    for part in schema_parts(schema, node) {
        values.extend(schema_enum(schema, part));
    }
    values
}

fn unknown_warnings(warnings: &[String]) -> Vec<&String> {
    warnings
        .iter()
        .filter(|warning| warning.contains("unknown property"))
        .collect()
}

#[test]
fn every_property_the_schema_names_is_known_and_every_value_it_lists_is_accepted() {
    let schema = base_schema();
    // The top level, the objects below it that the schema closes, and where a test config puts each.
    let mut top = Vec::new();
    schema_properties(&schema, &schema, &mut top);
    let mut checked = 0;
    for (name, property) in &top {
        // The legacy properties are migrated, and `build` is checked below.
        if [
            "dockerFile",
            "context",
            "extensions",
            "settings",
            "devPort",
            "build",
        ]
        .contains(&name.as_str())
        {
            continue;
        }
        let (_, warnings) = parse_ok(&format!(r#"{{ "image": "u", "{name}": null }}"#));
        assert!(
            unknown_warnings(&warnings).is_empty(),
            "{name}: {warnings:?}"
        );
        let values = schema_enum(&schema, property);
        for value in &values {
            let (_, warnings) = parse(
                &file(),
                &format!(r#"{{ "image": "u", "{name}": "{value}" }}"#),
            )
            .unwrap_or_else(|error| panic!("{name} = {value:?} is in the schema: {error}"));
            assert!(warnings.is_empty(), "{name} = {value:?}: {warnings:?}");
        }
        if !values.is_empty() && property.get("type") == Some(&Value::from("string")) {
            let (_, warnings) = parse_ok(&format!(
                r#"{{ "image": "u", "{name}": "notInTheSchema" }}"#
            ));
            assert!(
                warnings.len() == 1 && warnings[0].starts_with(&format!("\"{name}\": ")),
                "{name} = \"notInTheSchema\": {warnings:?}"
            );
        }
        checked += 1;
    }
    assert!(
        checked > 50,
        "the schema's top level has more properties than {checked}"
    );
    // Where in the schema, the object's name in warnings, and a config that puts properties in it.
    type Placement = (&'static str, &'static str, fn(&str) -> String);
    let nested: [Placement; 4] = [
        (
            "/definitions/dockerfileContainer/oneOf/0/properties/build",
            "build",
            |inner| format!(r#"{{ "build": {{ "dockerfile": "D", {inner} }} }}"#),
        ),
        (
            "/definitions/devContainerCommon/properties/hostRequirements",
            "hostRequirements",
            |inner| format!(r#"{{ "image": "u", "hostRequirements": {{ {inner} }} }}"#),
        ),
        (
            "/definitions/devContainerCommon/properties/otherPortsAttributes",
            "otherPortsAttributes",
            |inner| format!(r#"{{ "image": "u", "otherPortsAttributes": {{ {inner} }} }}"#),
        ),
        (
            "/definitions/devContainerCommon/properties/portsAttributes/patternProperties/(^\\d+(-\\d+)?$)|(.+)",
            "portsAttributes.3000",
            |inner| {
                format!(r#"{{ "image": "u", "portsAttributes": {{ "3000": {{ {inner} }} }} }}"#)
            },
        ),
    ];
    for (pointer, object, config) in nested {
        let node = schema
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the schema has {pointer}"));
        let mut properties = Vec::new();
        schema_properties(&schema, node, &mut properties);
        assert!(
            !properties.is_empty(),
            "{object} has properties in the schema"
        );
        for (name, property) in &properties {
            let (_, warnings) = parse_ok(&config(&format!(r#""{name}": null"#)));
            assert!(
                unknown_warnings(&warnings).is_empty(),
                "{object}.{name}: {warnings:?}"
            );
            let values = schema_enum(&schema, property);
            for value in &values {
                let (_, warnings) = parse(&file(), &config(&format!(r#""{name}": "{value}""#)))
                    .unwrap_or_else(|error| {
                        panic!("{object}.{name} = {value:?} is in the schema: {error}")
                    });
                assert!(
                    warnings.is_empty(),
                    "{object}.{name} = {value:?}: {warnings:?}"
                );
            }
            // Only a property that is nothing but a string enumeration is read leniently; `gpu` (a boolean,
            // "optional" or an object) sizes the machine, so a value outside it stays an error.
            if !values.is_empty() && property.get("type") == Some(&Value::from("string")) {
                let (_, warnings) = parse_ok(&config(&format!(r#""{name}": "notInTheSchema""#)));
                assert!(
                    warnings.len() == 1
                        && warnings[0].starts_with(&format!("\"{object}.{name}\": ")),
                    "{object}.{name} = \"notInTheSchema\": {warnings:?}"
                );
            }
        }
        // And the schema closes it: anything else is reported.
        let (_, warnings) = parse_ok(&config(r#""notInTheSchema": 1"#));
        assert_eq!(
            warnings,
            [format!(
                r#"unknown property "{object}.notInTheSchema" is ignored"#
            )],
            "{object}"
        );
    }
}

#[test]
fn what_the_schema_requires_and_the_reference_cli_does_without_is_a_warning() {
    let (_, warnings) = parse_ok(r#"{ "dockerComposeFile": "c.yml", "service": "s" }"#);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("\"workspaceFolder\" is required"),
        "{warnings:?}"
    );
    let (_, warnings) =
        parse_ok(r#"{ "dockerComposeFile": "c.yml", "service": "s", "workspaceFolder": "/w" }"#);
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn an_enumerated_value_outside_the_schema_is_a_warning_and_the_default_applies() {
    let (config, warnings) = parse_ok(
        r#"{
        "image": "u",
        "userEnvProbe": "bash",
        "shutdownAction": "x",
        "waitFor": 3,
        "portsAttributes": { "3000": { "protocol": "ftp", "onAutoForward": "silent" } },
        "otherPortsAttributes": { "onAutoForward": "shout" }
    }"#,
    );
    assert_eq!(config.user_env_probe, None);
    assert_eq!(config.shutdown_action, None);
    assert_eq!(config.wait_for, None);
    let port = &config.ports_attributes.as_ref().unwrap()["3000"];
    assert_eq!(port.protocol, None);
    assert_eq!(port.on_auto_forward, Some(OnAutoForward::Silent));
    assert_eq!(
        config
            .other_ports_attributes
            .as_ref()
            .unwrap()
            .on_auto_forward,
        None
    );
    for (path, named) in [
        ("userEnvProbe", "`bash`"),
        ("shutdownAction", "`x`"),
        ("waitFor", "3"),
        ("portsAttributes.3000.protocol", "`ftp`"),
        ("otherPortsAttributes.onAutoForward", "`shout`"),
    ] {
        assert!(
            warnings
                .iter()
                .any(|warning| warning.starts_with(&format!("\"{path}\": "))
                    && warning.contains(named)
                    && warning.contains("the default applies")),
            "no warning for {path} naming {named}: {warnings:?}"
        );
    }
    assert_eq!(warnings.len(), 5, "{warnings:?}");
    // What the client sends the agent leaves the ignored values out, so the agent reads it without a warning.
    let sent = serde_json::to_string(&config).unwrap();
    let (_, again) = parse_ok(&sent);
    assert!(again.is_empty(), "{again:?}");
}
