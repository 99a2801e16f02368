//! Bad input gets an error that names the thing and the fix.

use skiff_tests::{Sandbox, require_docker};

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn no_devcontainer_json_says_where_it_looked() {
    let sandbox = Sandbox::new();
    let project = sandbox.project("empty", "no-config");
    let output = sandbox.run(&["up", project.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(stderr.contains("no devcontainer.json in"), "{stderr}");
    assert!(
        stderr.contains(".devcontainer/devcontainer.json") && stderr.contains(".devcontainer.json"),
        "{stderr}"
    );
    assert!(
        sandbox.workspaces().is_empty(),
        "a failed up records nothing"
    );
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let sandbox = Sandbox::new();
    let project = sandbox.project("broken", "broken-json");
    let output = sandbox.run(&["up", project.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    let file = project.join(".devcontainer/devcontainer.json");
    assert!(
        stderr.contains(&format!("{}:3:", file.display())),
        "{stderr}"
    );
    assert!(
        sandbox.workspaces().is_empty(),
        "a failed up records nothing"
    );
}

#[test]
fn unknown_workspace_lists_the_known_ones() {
    let sandbox = Sandbox::new();
    let output = sandbox.run(&["exec", "ghost", "--", "true"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr_of(&output).trim(),
        "skiff: no workspace named ghost; there are no workspaces yet; create one with `skiff up PATH`"
    );
}

#[test]
fn unreachable_docker_names_the_socket_and_docker_host() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "no-docker");
    let output = sandbox
        .skiff()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["up", project.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("docker engine unreachable at unix:///nonexistent/docker.sock"),
        "{stderr}"
    );
    assert!(stderr.contains("DOCKER_HOST"), "{stderr}");
    // Stop the agent started with the broken DOCKER_HOST so the sandbox's cleanup uses a working one.
    let _ = sandbox.run(&["stop", "no-docker"]);
}
