//! Living in a workspace: what travels from the laptop into the dev container. The laptop's git identity is set
//! for the remote user where the container has none, and a hostile identity stays data.

use skiff_tests::{Sandbox, require_docker};

/// A sandbox whose git (for `skiff`, as the laptop's) has `name` and `email` as its global identity.
fn with_identity(name: &str, email: &str) -> Sandbox {
    let mut sandbox = Sandbox::new();
    let config = sandbox.root.path().join("laptop.gitconfig");
    std::fs::write(
        &config,
        format!(
            "[user]\n\tname = \"{}\"\n\temail = {email}\n",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        ),
    )
    .unwrap();
    sandbox.set_env("GIT_CONFIG_GLOBAL", Some(config.into_os_string()));
    sandbox.set_env("GIT_CONFIG_NOSYSTEM", Some("1".into()));
    sandbox
}

fn git_config(sandbox: &Sandbox, name: &str, key: &str) -> String {
    sandbox
        .ok(&["exec", name, "--", "git", "config", "--get", key])
        .trim_end_matches('\n')
        .to_owned()
}

#[test]
fn the_laptops_git_identity_is_set_where_the_container_has_none_and_stays_data() {
    require_docker();
    // Shell syntax in the name: set as the container's identity byte for byte, never run.
    let hostile = "Ada $(touch /tmp/pwned-name) `touch /tmp/pwned-tick`; touch /tmp/pwned-semi";
    let sandbox = with_identity(hostile, "ada@example.com");
    let project = sandbox.project("image", "identity");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(git_config(&sandbox, "identity", "user.name"), hostile);
    assert_eq!(
        git_config(&sandbox, "identity", "user.email"),
        "ada@example.com"
    );
    let pwned = sandbox.run(&[
        "exec",
        "identity",
        "--",
        "sh",
        "-c",
        "ls /tmp/pwned-* 2>/dev/null",
    ]);
    assert!(
        pwned.stdout.is_empty(),
        "the identity ran as a command: {}",
        String::from_utf8_lossy(&pwned.stdout)
    );
    sandbox.ok(&["delete", "--yes", "identity"]);
}

#[test]
fn an_identity_the_container_already_has_is_kept() {
    require_docker();
    let sandbox = with_identity("Laptop Person", "laptop@example.com");
    let project = sandbox.project("image", "identity-kept");
    // The image (here its onCreateCommand, which runs before `up` says ready) has a name but no email.
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        r#"{
            "image": "debian:bookworm",
            "remoteUser": "root",
            "onCreateCommand": "git config --global user.name 'Image Person'"
        }"#,
    )
    .unwrap();
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(
        git_config(&sandbox, "identity-kept", "user.name"),
        "Image Person"
    );
    assert_eq!(
        git_config(&sandbox, "identity-kept", "user.email"),
        "laptop@example.com",
        "what the container lacks comes from the laptop"
    );
    sandbox.ok(&["delete", "--yes", "identity-kept"]);
}
