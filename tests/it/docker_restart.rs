//! The Docker daemon restarted under skiff, on a private daemon of the test's own (`skiff_tests::dockerd`), so the
//! machine's shared engine never restarts under the other tests.
//! A restart stops every container, as a real daemon's shutdown does; the agent stays up and must carry on.
//!
//! - A command running through `skiff exec` ends with an error that says what happened, not a hang, and the next
//!   `skiff exec` works: the agent reaches the daemon again, starts the dev container again (running its
//!   `postStartCommand`, as a start does) and places the process server again.
//! - An `up` cut by a restart during a lifecycle command fails naming Docker, and the next `up` converges: one
//!   container, every lifecycle command done once (the one cut short runs again).
//! - An `up` cut by a restart during the image build fails naming Docker, and the next `up` builds and converges.
//! - After a restart, `skiff status` answers and the idle countdown still stops the workspace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use skiff_tests::dockerd::Dockerd;
use skiff_tests::{BASE_IMAGE, Reaped, Sandbox, require_docker, wait_until};

/// A private daemon with the base image, and a sandbox whose skiff (and so whose agent) uses it.
/// The sandbox is returned second so a test that binds both in this order drops it first: its workspaces are
/// deleted while the daemon still runs.
fn rig() -> (Dockerd, Sandbox) {
    require_docker();
    let dockerd = Dockerd::new();
    dockerd.load_image(BASE_IMAGE);
    let mut sandbox = Sandbox::new();
    sandbox.set_env("DOCKER_HOST", Some(dockerd.host().into()));
    (dockerd, sandbox)
}

/// A workspace folder `name` in the sandbox with `devcontainer.json` (and any other files of `.devcontainer`).
fn project(sandbox: &Sandbox, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let folder = sandbox.root.path().join("projects").join(name);
    std::fs::create_dir_all(folder.join(".devcontainer")).expect("making the project");
    for (file, contents) in files {
        std::fs::write(folder.join(".devcontainer").join(file), contents).expect("writing a file");
    }
    folder
}

/// Lines of a file in the workspace folder (written by lifecycle commands through the bind mount).
fn lines(folder: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(folder.join(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The ids of the containers of the private daemon, running or not.
fn containers(dockerd: &Dockerd) -> Vec<String> {
    let output = dockerd
        .docker()
        .args(["ps", "-aq", "--no-trunc"])
        .output()
        .expect("running docker ps");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The command lines of the processes in a container of the private daemon.
fn processes(dockerd: &Dockerd, container: &str) -> String {
    let output = dockerd
        .docker()
        .args(["exec", container, "ps", "-eo", "args"])
        .output()
        .expect("running docker exec");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The error skiff ended with (its progress lines before it may name Docker on their own, as a build's do).
fn error_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rfind(|line| line.starts_with("skiff: "))
        .unwrap_or_default()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_exec_cut_by_a_docker_restart_fails_clearly_and_the_next_exec_brings_the_container_back() {
    let (mut dockerd, sandbox) = rig();
    let folder = project(
        &sandbox,
        "restart-exec",
        &[(
            "devcontainer.json",
            &format!(
                r#"{{ "image": "{BASE_IMAGE}",
                     "postStartCommand": "echo started >> /workspaces/restart-exec/post-start.log" }}"#
            ),
        )],
    );
    sandbox.ok(&["up", folder.to_str().unwrap()]);
    let container = sandbox.container_of("restart-exec");
    assert!(
        wait_until(Duration::from_secs(10), || lines(&folder, "post-start.log")
            .len()
            == 1)
        .is_some(),
        "postStartCommand ran once after up"
    );

    let mut command = Reaped(
        sandbox
            .skiff()
            .args([
                "exec",
                "restart-exec",
                "--",
                "sh",
                "-c",
                "echo running; exec sleep 300",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting skiff exec"),
    );
    let mut stdout = BufReader::new(command.0.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    stdout
        .read_line(&mut line)
        .expect("reading the command's output");
    assert_eq!(line.trim(), "running");

    let restarted = Instant::now();
    dockerd.restart();
    let ended = wait_until(Duration::from_secs(20), || {
        command.0.try_wait().expect("polling skiff exec").is_some()
    });
    assert!(
        ended.is_some(),
        "skiff exec still runs {:?} after Docker restarted: it hangs",
        restarted.elapsed()
    );
    let status = command.0.wait().expect("skiff exec's status");
    let mut stderr = String::new();
    std::io::Read::read_to_string(
        command.0.stderr.as_mut().expect("piped stderr"),
        &mut stderr,
    )
    .expect("reading skiff exec's stderr");
    assert!(!status.success(), "a command cut short cannot succeed");
    assert!(
        stderr.contains("stopped while `sh -c echo running; exec sleep 300` ran")
            && stderr.contains("Docker restarted"),
        "the error says the dev container stopped under the command and names Docker: {status}: {stderr}"
    );

    // The next command works: the agent reaches the new daemon and starts the dev container again.
    let output = sandbox.ok(&["exec", "restart-exec", "--", "echo", "back"]);
    assert_eq!(output.trim(), "back");
    assert_eq!(
        sandbox.container_of("restart-exec"),
        container,
        "the same dev container, started again"
    );
    assert_eq!(containers(&dockerd), std::slice::from_ref(&container));
    assert_eq!(
        lines(&folder, "post-start.log").len(),
        2,
        "postStartCommand ran for the new start"
    );
    assert!(
        processes(&dockerd, &container).contains("/.skiff/skiff-procd --listen"),
        "the process server runs in the dev container again:\n{}",
        processes(&dockerd, &container)
    );
}

#[test]
fn an_up_cut_by_a_docker_restart_during_a_lifecycle_command_fails_clearly_and_the_next_up_converges()
 {
    let (mut dockerd, sandbox) = rig();
    // Each command notes its start and its end in the workspace folder, which the test reads on this side.
    let folder = project(
        &sandbox,
        "restart-up",
        &[(
            "devcontainer.json",
            &format!(
                r#"{{ "image": "{BASE_IMAGE}",
                     "waitFor": "postCreateCommand",
                     "onCreateCommand": "echo on-create >> /workspaces/restart-up/hooks.log",
                     "postCreateCommand": "echo begun >> /workspaces/restart-up/post-create.log && sleep 8 && echo post-create >> /workspaces/restart-up/hooks.log" }}"#
            ),
        )],
    );
    let mut up = Reaped(
        sandbox
            .skiff()
            .args(["up", folder.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting skiff up"),
    );
    assert!(
        wait_until(Duration::from_secs(30), || !lines(
            &folder,
            "post-create.log"
        )
        .is_empty())
        .is_some(),
        "postCreateCommand began"
    );
    dockerd.restart();
    assert!(
        wait_until(Duration::from_secs(20), || up
            .0
            .try_wait()
            .expect("polling skiff up")
            .is_some())
        .is_some(),
        "skiff up still runs after Docker restarted: it hangs"
    );
    let status = up.0.wait().expect("skiff up's status");
    let mut stderr = String::new();
    std::io::Read::read_to_string(up.0.stderr.as_mut().expect("piped stderr"), &mut stderr)
        .expect("reading skiff up's stderr");
    assert!(
        !status.success(),
        "an up cut short cannot succeed:\n{stderr}"
    );
    assert!(
        error_line(&stderr).contains("stopped while its postCreateCommand ran: Docker restarted"),
        "the error says the container stopped under the hook and names Docker:\n{stderr}"
    );

    let again = sandbox.run(&["up", folder.to_str().unwrap()]);
    assert!(
        again.status.success(),
        "the next up converges: {}",
        stderr_of(&again)
    );
    assert_eq!(containers(&dockerd).len(), 1, "one container");
    assert_eq!(
        lines(&folder, "hooks.log"),
        ["on-create", "post-create"],
        "each lifecycle command done once, the one cut short again"
    );
}

#[test]
fn an_up_cut_by_a_docker_restart_during_the_build_fails_clearly_and_the_next_up_builds() {
    let (mut dockerd, sandbox) = rig();
    let folder = project(
        &sandbox,
        "restart-build",
        &[
            (
                "devcontainer.json",
                r#"{ "build": { "dockerfile": "Dockerfile" },
                         "postCreateCommand": "cat /etc/built >> /workspaces/restart-build/hooks.log" }"#,
            ),
            (
                "Dockerfile",
                // The step ends at once on the SIGTERM a daemon's shutdown sends (as PID 1 it must trap it).
                &format!(
                    "FROM {BASE_IMAGE}\nRUN trap 'exit 143' TERM; sleep 8 & wait; echo built > /etc/built\n"
                ),
            ),
        ],
    );
    let mut up = Reaped(
        sandbox
            .skiff()
            .args(["up", folder.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting skiff up"),
    );
    // The build's RUN step runs in a container of the private daemon.
    assert!(
        wait_until(Duration::from_secs(30), || !dockerd_running_containers(
            &dockerd
        )
        .is_empty())
        .is_some(),
        "the build's step started"
    );
    dockerd.restart();
    assert!(
        wait_until(Duration::from_secs(20), || up
            .0
            .try_wait()
            .expect("polling skiff up")
            .is_some())
        .is_some(),
        "skiff up still runs after Docker restarted: it hangs"
    );
    let status = up.0.wait().expect("skiff up's status");
    let mut stderr = String::new();
    std::io::Read::read_to_string(up.0.stderr.as_mut().expect("piped stderr"), &mut stderr)
        .expect("reading skiff up's stderr");
    assert!(
        !status.success(),
        "an up cut short cannot succeed:\n{stderr}"
    );
    assert!(
        error_line(&stderr).contains("docker engine unreachable"),
        "the error says Docker went away (not that the Dockerfile failed):\n{stderr}"
    );

    let again = sandbox.run(&["up", folder.to_str().unwrap()]);
    assert!(
        again.status.success(),
        "the next up converges: {}",
        stderr_of(&again)
    );
    let running = dockerd_running_containers(&dockerd);
    assert_eq!(running.len(), 1, "one container runs: {running:?}");
    assert!(
        wait_until(Duration::from_secs(10), || lines(&folder, "hooks.log")
            == ["built"])
        .is_some(),
        "the image was built and postCreateCommand ran once: {:?}",
        lines(&folder, "hooks.log")
    );
}

/// The ids of the running containers of the private daemon.
fn dockerd_running_containers(dockerd: &Dockerd) -> Vec<String> {
    let output = dockerd
        .docker()
        .args(["ps", "-q", "--no-trunc"])
        .output()
        .expect("running docker ps");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn after_a_docker_restart_status_answers_and_the_idle_countdown_still_stops_the_workspace() {
    const TIMEOUT: Duration = Duration::from_secs(6);
    let (mut dockerd, sandbox) = rig();
    let folder = project(
        &sandbox,
        "restart-idle",
        &[(
            "devcontainer.json",
            &format!(r#"{{ "image": "{BASE_IMAGE}" }}"#),
        )],
    );
    sandbox.ok(&["up", "--idle-timeout", "6s", folder.to_str().unwrap()]);
    dockerd.restart();

    // The container stopped with the daemon; status says so, and the agent still counts down.
    let status: serde_json::Value =
        serde_json::from_str(&sandbox.ok(&["status", "restart-idle", "--json"]))
            .expect("status --json is JSON");
    assert_eq!(status["agent_running"], true, "{status}");
    assert_eq!(status["container_state"], "stopped", "{status}");
    assert!(status["docker_error"].is_null(), "{status}");
    assert_eq!(status["idle"]["timeout_seconds"], 6, "{status}");

    // A command brings the container back and is activity; then nothing happens until the countdown ends.
    sandbox.ok(&["exec", "restart-idle", "--", "true"]);
    let used = Instant::now();
    let status: serde_json::Value =
        serde_json::from_str(&sandbox.ok(&["status", "restart-idle", "--json"]))
            .expect("status --json is JSON");
    assert_eq!(status["container_state"], "running", "{status}");
    let container = status["container_id"]
        .as_str()
        .expect("a container id")
        .to_owned();
    assert!(
        status["idle"]["stops_in_seconds"]
            .as_u64()
            .is_some_and(|seconds| seconds <= 6),
        "{status}"
    );
    let stopped = wait_until(TIMEOUT + Duration::from_secs(10), || {
        let output = dockerd
            .docker()
            .args(["inspect", "--format", "{{.State.Running}}", &container])
            .output()
            .expect("running docker inspect");
        String::from_utf8_lossy(&output.stdout).trim() == "false"
    });
    assert!(
        stopped.is_some(),
        "the idle countdown stopped the dev container"
    );
    assert!(
        used.elapsed() >= TIMEOUT - Duration::from_millis(500),
        "not before the timeout: {:?}",
        used.elapsed()
    );
    let listed = sandbox.ok(&["list", "--json"]);
    assert!(
        listed.contains("\"state\": \"stopped\""),
        "the agent exited after stopping it: {listed}"
    );
}
