//! Tests of compose project naming, reading `compose config` output and the override file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;

#[test]
fn project_names_follow_the_reference_rules() {
    let workspace = Path::new("/tmp/skiff-no-such-folder/My Project");
    let in_devcontainer = vec![workspace.join(".devcontainer/docker-compose.yml")];
    let plain = BTreeMap::new();
    assert_eq!(
        project_name(
            &plain,
            workspace,
            &in_devcontainer,
            &["services: {}".into()]
        ),
        "myproject_devcontainer"
    );
    let elsewhere = vec![PathBuf::from("/srv/Other.App/docker-compose.yml")];
    assert_eq!(
        project_name(&plain, workspace, &elsewhere, &[String::new()]),
        "otherapp"
    );
    assert_eq!(
        project_name(
            &plain,
            workspace,
            &in_devcontainer,
            &["version: '3.8'\nname: custom-project-name\n".into()]
        ),
        "custom-project-name"
    );
    let env = BTreeMap::from([("CUSTOM_NAME".to_owned(), "From-Env".to_owned())]);
    assert_eq!(
        project_name(
            &env,
            workspace,
            &in_devcontainer,
            &["name: ${CUSTOM_NAME}\n".into()]
        ),
        "from-env"
    );
    let env = BTreeMap::from([("COMPOSE_PROJECT_NAME".to_owned(), "Forced".to_owned())]);
    assert_eq!(
        project_name(&env, workspace, &in_devcontainer, &[String::new()]),
        "forced"
    );
}

#[test]
fn service_info_from_v1_yaml_and_v2_json() {
    let yaml = "services:\n  app:\n    build:\n      context: /x\n    image: ubuntu:latest\n    user: node\n  db:\n    image: mongo\nversion: '3.8'\n";
    assert_eq!(
        service_info(yaml, "app"),
        Some(ServiceInfo {
            image: Some("ubuntu:latest".into()),
            has_build: true,
            user: Some("node".into())
        })
    );
    assert_eq!(
        service_info(yaml, "db").unwrap().image.as_deref(),
        Some("mongo")
    );
    assert_eq!(service_info(yaml, "web"), None);
    let json = r#"{"services": {"app": {"image": "x:1"}}}"#;
    assert_eq!(
        service_info(json, "app").unwrap().image.as_deref(),
        Some("x:1")
    );
}

#[test]
fn override_file_escapes_dollars_and_declares_named_volumes() {
    let mut merged = metadata::Merged::default();
    merged.container_env.insert("A".into(), "cost $5".into());
    merged.init = true;
    let labels = BTreeMap::from([("devcontainer.metadata".to_owned(), "[]".to_owned())]);
    let mounts = vec![
        devcontainer::Mount::Spec("type=volume,src=cache,dst=/cache".into()),
        devcontainer::Mount::Spec("type=volume,dst=/anon".into()),
    ];
    let text = override_file(
        Some("3.8"),
        "app",
        Some("proj-app-features"),
        &labels,
        &merged,
        Some("echo $x"),
        &mounts,
    );
    assert!(
        text.starts_with(
            "version: \"3.8\"\nservices:\n  \"app\":\n    image: \"proj-app-features\"\n"
        ),
        "{text}"
    );
    assert!(text.contains("\"A\": \"cost $$5\""), "{text}");
    assert!(
        text.contains("entrypoint: [\"/bin/sh\", \"-c\", \"echo $$x\", \"-\"]"),
        "{text}"
    );
    assert!(text.contains("    init: true\n"), "{text}");
    assert!(
        text.contains(r#"- {"source":"cache","target":"/cache","type":"volume"}"#),
        "{text}"
    );
    assert!(text.ends_with("volumes:\n  \"cache\": {}\n"), "{text}");
}
