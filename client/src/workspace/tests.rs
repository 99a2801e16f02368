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
        auto_start: true,
        git_credentials: true,
        dotfiles: None,
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

/// Whether an identity's key belongs to its certificate (rustls checks, building a configuration with them).
fn is_one_pair(identity: &Identity) -> bool {
    let trusted = std::sync::Arc::new(skiff::tls::TrustedClients::new(Vec::new(), None));
    skiff::tls::server_config(identity, trusted).is_ok()
}

#[test]
fn the_pair_check_tells_a_mixed_identity() {
    let one = Identity::generate("skiff-client").unwrap();
    let other = Identity::generate("skiff-client").unwrap();
    assert!(is_one_pair(&one));
    let mixed = Identity {
        certificate_pem: one.certificate_pem,
        private_key_pem: other.private_key_pem,
    };
    assert!(!is_one_pair(&mixed));
}

/// Bug: two `skiff up`s of one folder at once both made the workspace, each writing its own key and certificate
/// into the one folder; the agent then trusted a certificate whose key neither command held.
#[test]
fn commands_creating_one_workspace_at_once_end_with_one_whole_identity() {
    let home = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(Store::at(home.path().to_owned()));
    for round in 0..20 {
        let name = format!("race-{round}");
        let racers: Vec<_> = (0..4)
            .map(|_| {
                let store = std::sync::Arc::clone(&store);
                let name = name.clone();
                std::thread::spawn(move || store.create(record(&name, "/src/race")))
            })
            .collect();
        let results: Vec<_> = racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect();
        let made = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(made, 1, "one command makes it: {results:?}");
        for result in &results {
            if let Err(error) = result {
                assert!(
                    matches!(error, WorkspaceError::NameTaken { .. }),
                    "the others find it taken: {error}"
                );
            }
        }
        let workspace = store.get(&name).unwrap();
        let identity = workspace.identity().unwrap();
        assert!(
            is_one_pair(&identity),
            "the key and the certificate are one pair"
        );
    }
    assert_eq!(store.names().len(), 20, "no half-made workspace is listed");
}
