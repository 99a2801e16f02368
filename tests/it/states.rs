//! Every command on a local workspace in every state it can be left in: stopped by `skiff stop`, stopped by its
//! idle timeout, and with its agent killed. Each command works (`exec` starts a stopped workspace), and `delete`
//! removes everything in each state (the sandbox checks, when it drops, that nothing is left).

use std::time::Duration;

use skiff_tests::{Sandbox, add_busybox, is_running, require_docker, wait_until};

/// The states a workspace is left in before the commands run.
#[derive(Debug, Clone, Copy)]
enum State {
    Stopped,
    IdleStopped,
    AgentKilled,
}

/// Brings up workspace `name` and leaves it in `state`; returns its container.
fn leave_in(sandbox: &Sandbox, name: &str, state: State) -> String {
    let project = sandbox.project("image", name);
    add_busybox(&project);
    let idle_timeout = match state {
        State::IdleStopped => "3s",
        State::Stopped | State::AgentKilled => "30m",
    };
    sandbox.ok(&[
        "up",
        "--idle-timeout",
        idle_timeout,
        project.to_str().unwrap(),
    ]);
    let container = sandbox.container_of(name);
    match state {
        State::Stopped => {
            sandbox.ok(&["stop", name]);
        }
        State::IdleStopped => {
            wait_until(Duration::from_secs(10), || !is_running(&container))
                .expect("the idle timeout stops it");
            // The agent exits right after stopping the container.
            std::thread::sleep(Duration::from_millis(500));
        }
        State::AgentKilled => {
            sandbox.kill_agent(name);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    container
}

/// The commands a user runs on a workspace they come back to, in this order, each of which must work or say what
/// to do; `delete` last.
fn every_command_works_or_says_what_to_do(state: State, name: &str) {
    require_docker();
    let sandbox = Sandbox::new();
    let container = leave_in(&sandbox, name, state);
    let expected_running = matches!(state, State::AgentKilled);
    assert_eq!(is_running(&container), expected_running, "{state:?}");

    let listed = sandbox.ok(&["list"]);
    assert!(listed.contains(name), "{listed}");
    let status = sandbox.ok(&["status", name]);
    assert!(status.contains(name), "{status}");
    sandbox.ok(&["logs", name]);
    // `exec` starts a stopped workspace (start on connect), so in every state it works.
    let exec = sandbox.succeeds(&["exec", name, "--", "echo", "here"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "here\n", "{state:?}");
    assert!(is_running(&container), "{state:?}: exec left it running");
    sandbox.ok(&["keepalive", name, "--for", "1m"]);
    sandbox.ok(&["stop", name]);
    assert!(!is_running(&container), "{state:?}: stopped");
    let deleted = sandbox.ok_stderr(&["delete", name, "--yes"]);
    assert!(!deleted.contains("error"), "{deleted}");
    let left = std::process::Command::new("docker")
        .args(["inspect", &container])
        .output()
        .unwrap();
    assert!(
        !left.status.success(),
        "{state:?}: delete removed the container"
    );
    assert!(
        sandbox.workspaces().is_empty(),
        "{state:?}: the record went"
    );
}

#[test]
fn a_stopped_workspace_answers_every_command() {
    every_command_works_or_says_what_to_do(State::Stopped, "state-stopped");
}

/// Bug: `skiff delete` after an idle stop answered "could not reach the agent at 127.0.0.1:…: Connection refused"
/// and left the exited dev container behind.
#[test]
fn an_idle_stopped_workspace_answers_every_command() {
    every_command_works_or_says_what_to_do(State::IdleStopped, "state-idle");
}

#[test]
fn a_workspace_whose_agent_was_killed_answers_every_command() {
    every_command_works_or_says_what_to_do(State::AgentKilled, "state-killed");
}

/// The narrowest form of the idle-stop bug: nothing between the idle stop and the delete.
#[test]
fn delete_right_after_an_idle_stop_removes_the_container() {
    require_docker();
    let sandbox = Sandbox::new();
    let container = leave_in(&sandbox, "state-idle-delete", State::IdleStopped);
    sandbox.ok(&["delete", "state-idle-delete", "--yes"]);
    assert!(
        !std::process::Command::new("docker")
            .args(["inspect", &container])
            .output()
            .unwrap()
            .status
            .success(),
        "the exited dev container is gone"
    );
}

/// `skiff list` says how long a stopped workspace has been stopped (from its agent's ledger), and names those stopped
/// for longer than `--stale` after the table; a duration it cannot read is refused with an example.
#[test]
fn list_says_how_long_a_workspace_has_been_stopped_and_names_the_stale_ones() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "stale");
    add_busybox(&project);
    sandbox.ok(&["up", project.to_str().unwrap()]);
    sandbox.ok(&["stop", "stale"]);
    std::thread::sleep(Duration::from_secs(2));
    let listed = sandbox.succeeds(&["list", "--stale", "1s"]);
    let table = String::from_utf8_lossy(&listed.stdout);
    let note = String::from_utf8_lossy(&listed.stderr);
    assert!(
        table.lines().any(|line| line.starts_with("stale")
            && line.contains("stopped ")
            && line.contains('s')),
        "{table}"
    );
    assert!(
        note.contains("stopped for more than 1s") && note.contains("stale (local "),
        "{note}"
    );
    let json: serde_json::Value = serde_json::from_str(&sandbox.ok(&["list", "--json"])).unwrap();
    assert!(json[0]["stopped_since_unix"].as_i64().is_some(), "{json:#}");
    let quiet = sandbox.succeeds(&["list"]);
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("stopped for more than"),
        "not stale at the 14-day default"
    );
    let refused = sandbox.run(&["list", "--stale", "soon"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("such as 14d"),
        "{refused:?}"
    );
    sandbox.ok(&["delete", "--yes", "stale"]);
}

/// `skiff prune --stopped-for`: shows the workspaces stopped for longer than asked, refuses without a terminal unless
/// `--yes` (deleting nothing), then deletes those and only those; a running workspace is never among them.
#[test]
fn prune_deletes_only_the_workspaces_stopped_longer_than_asked_after_showing_them() {
    require_docker();
    let sandbox = Sandbox::new();
    for name in ["pruned", "running"] {
        let project = sandbox.project("image", name);
        add_busybox(&project);
        sandbox.ok(&["up", project.to_str().unwrap()]);
    }
    sandbox.ok(&["stop", "pruned"]);
    std::thread::sleep(Duration::from_secs(2));

    let none = sandbox.succeeds(&["prune", "--stopped-for", "1h"]);
    assert!(
        String::from_utf8_lossy(&none.stderr)
            .contains("no workspace has been stopped for more than 1h"),
        "{none:?}"
    );
    let refused = sandbox.run(&["prune", "--stopped-for", "1s"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("stopped for more than 1s:")
            && stderr.contains("pruned (local ")
            && !stderr.contains("running (local ")
            && stderr.contains("pass --yes")
            && stderr.contains("nothing was deleted"),
        "{stderr}"
    );
    let names = |sandbox: &Sandbox| -> Vec<String> {
        let listed: serde_json::Value =
            serde_json::from_str(&sandbox.ok(&["list", "--json"])).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&sandbox), ["pruned", "running"]);
    let pruned = sandbox.succeeds(&["prune", "--stopped-for", "1s", "--yes"]);
    assert!(
        String::from_utf8_lossy(&pruned.stderr).contains("deleted workspace pruned"),
        "{pruned:?}"
    );
    assert_eq!(names(&sandbox), ["running"]);
    let bad = sandbox.run(&["prune", "--stopped-for", "a while"]);
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("such as 30d"),
        "{bad:?}"
    );
    sandbox.ok(&["delete", "--yes", "running"]);
}
