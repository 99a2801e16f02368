//! Tests of metadata label reading and merging, against the reference CLI's rules.

use serde_json::json;

use super::*;

fn entry(value: Value) -> Entry {
    match value {
        Value::Object(entry) => entry,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn label_reads_an_array_or_one_object() {
    assert_eq!(
        entries_from_label(Some(r#"[{"id":"a"},{"remoteUser":"x"}]"#))
            .unwrap()
            .len(),
        2
    );
    let single = entries_from_label(Some(r#"{ "postCreateCommand": "touch /x" }"#)).unwrap();
    assert_eq!(single[0]["postCreateCommand"], "touch /x");
    assert!(entries_from_label(None).unwrap().is_empty());
    assert!(entries_from_label(Some("not json")).is_err());
}

#[test]
fn merge_follows_the_reference_rules() {
    let entries = vec![
        entry(
            json!({"id": "baseFeature", "init": false, "capAdd": ["A"], "remoteUser": "base",
            "mounts": ["type=volume,src=one,dst=/data"], "remoteEnv": {"X": "1", "Y": "base"}}),
        ),
        entry(
            json!({"id": "./feature", "init": true, "capAdd": ["A", "B"], "securityOpt": ["s"],
            "onCreateCommand": "feature-create", "entrypoint": "/entry.sh",
            "mounts": [{"type": "volume", "source": "two", "target": "/data"}]}),
        ),
        entry(
            json!({"onCreateCommand": ["config", "create"], "remoteUser": "me", "waitFor": "postCreateCommand",
            "remoteEnv": {"Y": "config", "Z": null}, "updateRemoteUserUID": false, "privileged": false}),
        ),
    ];
    let merged = merge(&entries);
    assert!(merged.init);
    assert!(!merged.privileged);
    assert_eq!(merged.cap_add, ["A", "B"]);
    assert_eq!(merged.security_opt, ["s"]);
    assert_eq!(merged.entrypoints, ["/entry.sh"]);
    assert_eq!(merged.remote_user.as_deref(), Some("me"));
    assert_eq!(merged.wait_for, Some(WaitFor::PostCreateCommand));
    assert_eq!(merged.update_remote_user_uid, Some(false));
    assert_eq!(merged.mounts.len(), 1, "same target: the last one wins");
    assert_eq!(
        merged.mounts[0].to_mount_spec(),
        "type=volume,src=two,dst=/data"
    );
    assert_eq!(
        merged.remote_env,
        BTreeMap::from([
            ("X".to_owned(), Some("1".to_owned())),
            ("Y".to_owned(), Some("config".to_owned())),
            ("Z".to_owned(), None),
        ])
    );
    let origins: Vec<&str> = merged
        .hook("onCreateCommand")
        .iter()
        .map(|hook| hook.origin.as_str())
        .collect();
    assert_eq!(origins, ["./feature", "devcontainer.json"]);
}

#[test]
fn feature_and_config_entries_pick_their_properties() {
    let manifest: FeatureManifest = serde_json::from_value(json!({
        "id": "tiger", "version": "1.0.0", "options": {"x": {"type": "string", "default": "1"}},
        "postStartCommand": "start", "privileged": true, "containerEnv": {"A": "1"}
    }))
    .unwrap();
    let entry = feature_entry("./tiger", &manifest);
    assert_eq!(
        Value::Object(entry),
        json!({"id": "./tiger", "postStartCommand": "start", "privileged": true})
    );
    let config: DevContainer = serde_json::from_value(json!({
        "image": "x", "remoteUser": "me", "postCreateCommand": "p", "runArgs": ["--init"]
    }))
    .unwrap();
    assert_eq!(
        Value::Object(config_entry(&config)),
        json!({"remoteUser": "me", "postCreateCommand": "p"})
    );
    assert_eq!(
        Value::Object(updatable_entry(&config)),
        json!({"remoteUser": "me"})
    );
    assert_eq!(
        label_value(&[Entry::new(), config_entry(&config)]),
        r#"[{"postCreateCommand":"p","remoteUser":"me"}]"#
    );
}

/// An image's extensions come first, then each Feature's, then devcontainer.json's, each once whatever its case;
/// `-ID` drops one an earlier entry brought; settings merge with the later entry winning.
#[test]
fn editor_customizations_merge_as_vs_code_merges_them() {
    let entries = vec![
        entry(json!({"customizations": {"vscode": {
            "extensions": ["ms-python.python", "eamodio.gitlens"],
            "settings": {"editor.tabSize": 2, "files.eol": "\n"}
        }}})),
        entry(
            json!({"id": "ghcr.io/devcontainers/features/rust:1", "customizations": {"vscode": {
                "extensions": ["rust-lang.rust-analyzer", "MS-Python.Python"]
            }}}),
        ),
        entry(json!({"customizations": {"jetbrains": {}}})),
        entry(json!({"customizations": {"vscode": {
            "extensions": ["-eamodio.gitlens", "tamasfe.even-better-toml", "--not-an-id"],
            "settings": {"editor.tabSize": 4}
        }}})),
    ];
    let (extensions, settings) = vscode(&entries);
    assert_eq!(
        extensions,
        vec![
            "ms-python.python",
            "rust-lang.rust-analyzer",
            "tamasfe.even-better-toml",
            "--not-an-id"
        ],
        "an id that is not one stays for the client to refuse by name"
    );
    assert_eq!(
        Value::Object(settings),
        json!({"editor.tabSize": 4, "files.eol": "\n"})
    );
}
