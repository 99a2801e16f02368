//! Start on connect: a command that uses a stopped workspace's dev container (`exec`, `ssh`, OpenSSH through
//! `skiff proxy`, `forward`, `logs -f`) starts the workspace with one line on standard error and carries on; two at
//! once start it once (its `postStartCommand` runs once); `--no-start` and the saved `auto-start=off` leave it
//! stopped with an error that says how to start it.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_tests::{
    Reaped, Sandbox, add_busybox, free_port, is_running, require_docker, wait_until,
};

/// The idle timeout the workspaces here stop by.
const IDLE: &str = "3s";

/// The line a command shows when it starts a stopped workspace.
const STARTING: &str = "is stopped; starting it";

/// A workspace of the image fixture whose `postStartCommand` appends a line to /root/post-start.log at each start,
/// brought up and left stopped by its idle timeout. Returns its container.
fn idle_stopped(sandbox: &Sandbox, name: &str) -> String {
    require_docker();
    let project = sandbox.project("image", name);
    add_busybox(&project);
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        r#"{
            "image": "debian:bookworm",
            "remoteUser": "root",
            "postStartCommand": "echo started >> /root/post-start.log"
        }"#,
    )
    .unwrap();
    sandbox.ok(&["up", "--idle-timeout", IDLE, project.to_str().unwrap()]);
    let container = sandbox.container_of(name);
    wait_for_idle_stop(sandbox, name, &container);
    container
}

/// Waits until the workspace's idle timeout has stopped its container and its agent has exited.
fn wait_for_idle_stop(sandbox: &Sandbox, name: &str, container: &str) {
    wait_until(Duration::from_secs(15), || !is_running(container))
        .expect("the idle timeout stops the dev container");
    let address = sandbox.record(name).join("agent/listen-address");
    wait_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&address)
            .ok()
            .and_then(|text| text.trim().parse::<std::net::SocketAddr>().ok())
            .is_none_or(|address| std::net::TcpStream::connect(address).is_err())
    })
    .expect("the agent exits after an idle stop");
}

/// How many times the dev container's `postStartCommand` has run (the container must be running).
fn starts(sandbox: &Sandbox, name: &str) -> usize {
    sandbox
        .ok(&["exec", name, "--", "cat", "/root/post-start.log"])
        .lines()
        .filter(|line| *line == "started")
        .count()
}

#[test]
fn exec_starts_an_idle_stopped_workspace_and_two_at_once_start_it_once() {
    let sandbox = Sandbox::new();
    let name = "start-exec";
    let container = idle_stopped(&sandbox, name);
    assert_eq!(
        sandbox.run(&["status", name]).status.code(),
        Some(0),
        "status works on a stopped workspace"
    );
    assert!(!is_running(&container), "status does not start it");

    let spawn = || {
        sandbox
            .skiff()
            .args(["exec", name, "--", "echo", "here"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let mut announced = 0;
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "exec after an idle stop: {stderr}");
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            "here\n",
            "{stderr}"
        );
        if stderr.contains(STARTING) {
            announced += 1;
            assert_eq!(
                stderr.lines().count(),
                1,
                "one line on standard error says what happens: {stderr}"
            );
        }
    }
    assert!(
        announced >= 1,
        "a command that starts the workspace says so"
    );
    assert!(is_running(&container), "the same container runs again");
    assert_eq!(
        starts(&sandbox, name),
        2,
        "postStartCommand ran at up and once more for the two commands that started it at once"
    );
    // Running now: the next command says nothing and starts nothing.
    let output = sandbox.succeeds(&["exec", name, "--", "true"]);
    assert!(output.stderr.is_empty(), "{output:?}");
    assert_eq!(starts(&sandbox, name), 2);
    sandbox.ok(&["delete", "--yes", name]);
}

#[test]
fn no_start_and_auto_start_off_leave_a_stopped_workspace_stopped() {
    let sandbox = Sandbox::new();
    let name = "start-refused";
    let container = idle_stopped(&sandbox, name);

    let refused = sandbox.fails(&["exec", "--no-start", name, "--", "true"]);
    assert!(
        refused.contains("is stopped") && refused.contains("--no-start"),
        "{refused}"
    );
    assert!(
        refused.contains("skiff up"),
        "says how to start it: {refused}"
    );
    assert!(!is_running(&container), "--no-start left it stopped");

    let saved = sandbox.ok_stderr(&["config", name, "auto-start=off"]);
    assert!(saved.contains("auto-start off"), "{saved}");
    let refused = sandbox.fails(&["exec", name, "--", "true"]);
    assert!(refused.contains("auto-start=off"), "{refused}");
    let refused = sandbox.fails(&["ssh", name]);
    assert!(refused.contains("auto-start=off"), "{refused}");
    assert!(!is_running(&container), "auto-start=off left it stopped");
    let bad = sandbox.fails(&["config", name, "auto-start=maybe"]);
    assert!(bad.contains("auto-start=on or auto-start=off"), "{bad}");

    sandbox.ok_stderr(&["config", name, "auto-start=on"]);
    assert_eq!(sandbox.ok(&["exec", name, "--", "echo", "back"]), "back\n");
    assert!(is_running(&container));
    sandbox.ok(&["delete", "--yes", name]);
}

/// `skiff ssh NAME` in a terminal (tmux) after an idle stop: the workspace starts and the shell answers.
#[test]
fn skiff_ssh_starts_an_idle_stopped_workspace_and_gets_a_shell() {
    let sandbox = Sandbox::new();
    let name = "start-ssh";
    let container = idle_stopped(&sandbox, name);
    let session = format!("skiff-start-{}", std::process::id());
    let command = format!(
        "env SKIFF_HOME={} SKIFF_AGENT_BINARY={} {} ssh {name}",
        sandbox.home().display(),
        skiff_tests::binary("skiffd").display(),
        skiff_tests::binary("skiff").display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("running tmux (apt-get install tmux; `cargo xtask test` does)")
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "120",
        "-y",
        "30",
        &command,
    ]);
    assert!(started.status.success(), "tmux: {started:?}");
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    // The shell's prompt has come once the shell answers what is typed.
    let answered = wait_until(Duration::from_secs(30), || {
        tmux(&["send-keys", "-t", &session, "echo sum-$((40+2))", "Enter"]);
        std::thread::sleep(Duration::from_millis(300));
        capture().contains("sum-42")
    });
    let screen = capture();
    tmux(&["kill-session", "-t", &session]);
    assert!(answered.is_some(), "the shell answered: {screen}");
    assert!(screen.contains(STARTING), "the start is shown: {screen}");
    assert!(is_running(&container));
    sandbox.ok(&["delete", "--yes", name]);
}

/// OpenSSH through the ProxyCommand `skiff ssh-config` writes (`skiff proxy`), as an editor's Remote-SSH
/// connects: after an idle stop, the connection starts the workspace; two connections at once start it once.
#[test]
fn openssh_through_skiff_proxy_starts_an_idle_stopped_workspace_once() {
    let sandbox = Sandbox::new();
    let name = "start-proxy";
    let container = idle_stopped(&sandbox, name);
    let config = sandbox.root.path().join("ssh_config");
    sandbox.ok(&["ssh-config", "--config", config.to_str().unwrap(), name]);
    assert!(
        !is_running(&container),
        "writing the entry does not start it"
    );
    let ssh = |config: &Path| {
        Command::new("ssh")
            .arg("-F")
            .arg(config)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=60"])
            .arg(format!("{name}.skiff"))
            .args(["echo", "via-openssh"])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ssh (apt-get install openssh-client; `cargo xtask test` does)")
    };
    let (first, second) = (ssh(&config), ssh(&config));
    for child in [first, second] {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "ssh after an idle stop: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "via-openssh\n");
    }
    assert!(is_running(&container));
    assert_eq!(
        starts(&sandbox, name),
        2,
        "started once for two connections"
    );
    sandbox.ok(&["delete", "--yes", name]);
}

/// Reads a child's standard error until `wanted` shows (or it ends); returns what was read.
fn stderr_until(child: &mut std::process::Child, wanted: &str) -> String {
    let mut stderr = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains(wanted) {
        match stderr.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// `forward` and `logs -f`, which stay attached, start a stopped workspace before they attach.
#[test]
fn forward_and_logs_follow_start_a_stopped_workspace() {
    let sandbox = Sandbox::new();
    let name = "start-attach";
    let container = idle_stopped(&sandbox, name);

    let port = free_port();
    let mut forward = Reaped(
        sandbox
            .skiff()
            .args(["forward", name, &format!("{port}:22")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let seen = stderr_until(&mut forward.0, "forwarding");
    assert!(seen.contains(STARTING), "{seen}");
    assert!(seen.contains("forwarding"), "{seen}");
    assert!(is_running(&container));
    drop(forward);

    sandbox.ok(&["stop", name]);
    assert!(!is_running(&container));
    let plain = sandbox.run(&["logs", name]);
    assert!(plain.status.success(), "{plain:?}");
    assert!(
        !is_running(&container),
        "logs without -f reads, it does not start"
    );
    let mut follow = Reaped(
        sandbox
            .skiff()
            .args(["logs", "-f", name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = wait_until(Duration::from_secs(30), || is_running(&container));
    assert!(started.is_some(), "logs -f started the workspace");
    let _ = follow.0.kill();
    sandbox.ok(&["delete", "--yes", name]);
}
