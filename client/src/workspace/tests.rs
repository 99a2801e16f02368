//! Tests of the workspace store.

use super::*;

fn record(name: &str, folder: &str) -> WorkspaceRecord {
    WorkspaceRecord {
        name: name.into(),
        provider: ProviderKind::Local,
        local_folder: folder.into(),
        config_file: format!("{folder}/.devcontainer.json").into(),
        idle_timeout: "30m".into(),
        aws: None,
    }
}

#[test]
fn unknown_workspace_lists_the_known_ones() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path().to_owned());
    let error = store.get("nope").unwrap_err().to_string();
    assert_eq!(
        error,
        "no workspace named nope; there are no workspaces yet; create one with `skiff up PATH`"
    );
    store.create(record("beta", "/b")).unwrap();
    store.create(record("alpha", "/a")).unwrap();
    let error = store.get("nope").unwrap_err().to_string();
    assert_eq!(
        error,
        "no workspace named nope; the workspaces are: alpha, beta (`skiff list` shows them)"
    );
}

#[test]
fn keys_are_private_and_names_unique() {
    let home = tempfile::tempdir().unwrap();
    let store = Store::at(home.path().to_owned());
    let workspace = store.create(record("app", "/src/app")).unwrap();
    let mode = std::fs::metadata(workspace.folder.join("client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(workspace.identity().unwrap().certificate_der().is_ok());
    let error = store
        .create(record("app", "/src/other"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("already exists for /src/app"), "{error}");
    assert_eq!(
        store
            .find_by_folder(Path::new("/src/app"))
            .unwrap()
            .unwrap()
            .name(),
        "app"
    );
}

#[test]
fn names_from_folders() {
    assert_eq!(name_from_folder(Path::new("/src/My Project")), "my-project");
    assert_eq!(name_from_folder(Path::new("/src/.hidden")), "hidden");
    assert_eq!(name_from_folder(Path::new("/")), "workspace");
    assert!(!valid_name("../x"));
    assert!(valid_name("app-2.x"));
}
