//! `up` interrupted and raced on the local provider: the agent killed (SIGKILL, as a crash or an OOM kill would)
//! at each step of `up`, and two `up`s of one workspace at once. The next `up` converges on one running dev
//! container whose lifecycle commands ran, and nothing is duplicated.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;

use skiff_tests::{Sandbox, containers_with_label, is_running, require_docker};

/// A project whose `up` has a build, a container and a lifecycle command long enough to be interrupted in.
fn slow_project(sandbox: &Sandbox, name: &str) -> std::path::PathBuf {
    let folder = sandbox.root.path().join("projects").join(name);
    let devcontainer = folder.join(".devcontainer");
    std::fs::create_dir_all(&devcontainer).unwrap();
    std::fs::write(
        devcontainer.join("Dockerfile"),
        format!(
            "FROM {}\nARG NAME\nRUN sleep 3 && echo \"$NAME\" > /etc/built-for\n",
            skiff_tests::BASE_IMAGE
        ),
    )
    .unwrap();
    std::fs::write(
        devcontainer.join("devcontainer.json"),
        format!(
            r#"{{
  "build": {{ "dockerfile": "Dockerfile", "args": {{ "NAME": "{name}" }} }},
  "postCreateCommand": "sleep 3 && echo created >> /tmp/post-create-runs"
}}"#
        ),
    )
    .unwrap();
    folder
}

/// Starts `skiff up FOLDER`, kills the agent once `up` reports `marker`, and lets `up` end.
fn up_killed_at(sandbox: &Sandbox, folder: &Path, name: &str, marker: &str) {
    let mut up = sandbox
        .skiff()
        .args(["up", folder.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(up.stderr.take().unwrap()).lines();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = up.kill();
            let log =
                std::fs::read_to_string(sandbox.record(name).join("agent.log")).unwrap_or_default();
            panic!("`up` ended before it reported {marker:?}:\n{seen}\nthe agent's log:\n{log}");
        };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(marker) {
            break;
        }
    }
    sandbox.kill_agent(name);
    let status = up.wait().unwrap();
    assert!(
        !status.success(),
        "`up` cannot succeed when its agent was killed at {marker:?}:\n{seen}"
    );
}

/// After an interruption, `up` converges: it succeeds, there is one dev container and it runs, the image was built
/// for this workspace, and the post-create command ran to its end.
fn converges(sandbox: &Sandbox, folder: &Path, name: &str) {
    let output = sandbox.run(&["up", folder.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "the next `up` converges: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let containers = containers_with_label("skiff.workspace", name);
    assert_eq!(containers.len(), 1, "one dev container: {containers:?}");
    assert!(is_running(&containers[0]));
    assert_eq!(
        sandbox.ok(&["exec", name, "--", "cat", "/etc/built-for"]),
        format!("{name}\n")
    );
    let runs = sandbox.ok(&["exec", name, "--", "cat", "/tmp/post-create-runs"]);
    assert!(
        runs.lines().count() >= 1 && runs.lines().all(|line| line == "created"),
        "the post-create command ran to its end: {runs:?}"
    );
}

fn killed_during(marker: &str, name: &str) {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = slow_project(&sandbox, name);
    up_killed_at(&sandbox, &folder, name, marker);
    converges(&sandbox, &folder, name);
}

#[test]
fn an_agent_killed_while_building_then_up_converges() {
    killed_during("building image", "killed-building");
}

#[test]
fn an_agent_killed_while_starting_the_container_then_up_converges() {
    killed_during("creating a container", "killed-creating");
}

#[test]
fn an_agent_killed_during_the_post_create_command_then_up_converges() {
    killed_during("running postCreateCommand", "killed-lifecycle");
}

#[test]
fn two_ups_of_one_workspace_at_once_make_one_container() {
    require_docker();
    let sandbox = Sandbox::new();
    let name = "two-ups";
    let folder = slow_project(&sandbox, name);
    let ups: Vec<_> = (0..2)
        .map(|_| {
            sandbox
                .skiff()
                .args(["up", folder.to_str().unwrap()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for up in ups {
        let output = up.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "both `up`s succeed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let containers = containers_with_label("skiff.workspace", name);
    assert_eq!(containers.len(), 1, "one dev container: {containers:?}");
    let runs = sandbox.ok(&["exec", name, "--", "cat", "/tmp/post-create-runs"]);
    assert_eq!(runs, "created\n", "the post-create command ran once");
}
