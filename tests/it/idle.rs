//! Idle auto-shutdown on the local provider with a timeout of a few seconds: an untouched workspace
//! stops; each kind of real use keeps it up; silent sessions do not.

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use skiff_tests::{Sandbox, add_busybox, is_running, require_docker, wait_until};

const TIMEOUT_SECONDS: u64 = 3;
const TIMEOUT: Duration = Duration::from_secs(TIMEOUT_SECONDS);
/// How late after the timeout a stop may come: the stop itself (docker stop of a keep-alive loop) and polling.
const GRACE: Duration = Duration::from_secs(3);

fn up(sandbox: &Sandbox, fixture: &str, name: &str) -> (String, Instant) {
    let project = sandbox.project(fixture, name);
    add_busybox(&project);
    sandbox.ok(&[
        "up",
        "--idle-timeout",
        &format!("{TIMEOUT_SECONDS}s"),
        project.to_str().unwrap(),
    ]);
    (sandbox.container_of(name), Instant::now())
}

fn stops_within(container: &str, limit: Duration) -> Option<Duration> {
    wait_until(limit, || !is_running(container))
}

#[test]
fn an_untouched_workspace_stops_after_the_timeout() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, ready) = up(&sandbox, "image", "idle-untouched");
    let stopped =
        stops_within(&container, TIMEOUT + GRACE + Duration::from_secs(2)).expect("it stops");
    let after = ready.elapsed();
    assert!(
        after >= TIMEOUT - Duration::from_millis(200),
        "not before the timeout: {after:?} ({stopped:?})"
    );
    assert!(
        after <= TIMEOUT + GRACE,
        "soon after the timeout: {after:?}"
    );
    let listed = sandbox.ok(&["list", "--json"]);
    assert!(
        listed.contains("\"state\": \"stopped\""),
        "the agent exited too: {listed}"
    );
}

#[test]
fn a_running_command_keeps_it_up_and_the_countdown_restarts_after() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, _) = up(&sandbox, "image", "idle-exec");
    let started = Instant::now();
    let sleeper = sandbox
        .skiff()
        .args(["exec", "idle-exec", "--", "sleep", "6"])
        .output()
        .unwrap();
    assert!(
        sleeper.status.success(),
        "{}",
        String::from_utf8_lossy(&sleeper.stderr)
    );
    assert!(started.elapsed() >= Duration::from_secs(6));
    assert!(
        is_running(&container),
        "a running exec keeps the workspace up past the timeout"
    );
    let ended = Instant::now();
    stops_within(&container, TIMEOUT + GRACE + Duration::from_secs(2))
        .expect("it stops after the exec");
    assert!(
        ended.elapsed() >= TIMEOUT - Duration::from_millis(200),
        "the countdown restarted when the exec ended"
    );
}

/// Runs `skiff exec -t NAME sh` under script(1), feeding it `keystrokes` at `interval`; returns when done.
fn shell_session(
    sandbox: &Sandbox,
    name: &str,
    keystrokes: usize,
    interval: Duration,
    hold_open: Duration,
) {
    let skiff = skiff_tests::binary("skiff");
    let mut child = std::process::Command::new("script")
        .args([
            "-q",
            "-c",
            &format!("{} exec -t {name} -- sh", skiff.display()),
            "/dev/null",
        ])
        .env("SKIFF_HOME", sandbox.home())
        .env("SKIFF_AGENT_BINARY", skiff_tests::binary("skiffd"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("running script(1)");
    let mut stdin = child.stdin.take().unwrap();
    for _ in 0..keystrokes {
        std::thread::sleep(interval);
        stdin.write_all(b":\n").unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(hold_open);
    let _ = stdin.write_all(b"exit\n");
    drop(stdin);
    let _ = child.wait();
}

#[test]
fn typing_in_a_shell_keeps_it_up() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, _) = up(&sandbox, "image", "idle-typing");
    shell_session(
        &sandbox,
        "idle-typing",
        7,
        Duration::from_secs(1),
        Duration::ZERO,
    );
    assert!(
        is_running(&container),
        "7 s of typing kept a 3 s timeout from firing"
    );
}

#[test]
fn an_open_but_silent_shell_does_not_keep_it_up() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, ready) = up(&sandbox, "image", "idle-silent-shell");
    let watcher = std::thread::spawn(move || {
        stops_within(&container, TIMEOUT + GRACE + Duration::from_secs(3))
    });
    shell_session(
        &sandbox,
        "idle-silent-shell",
        0,
        Duration::ZERO,
        TIMEOUT + GRACE + Duration::from_secs(1),
    );
    let stopped = watcher.join().unwrap();
    assert!(
        stopped.is_some(),
        "a silent shell must not keep the workspace up"
    );
    assert!(ready.elapsed() >= TIMEOUT);
}

fn echo_server(sandbox: &Sandbox, name: &str) {
    // A persistent echo server on port 7777 inside the dev container, started detached.
    let output = sandbox
        .skiff()
        .args([
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "nohup ./busybox nc -ll -p 7777 -e ./busybox cat >/dev/null 2>&1 &",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn forward(sandbox: &Sandbox, name: &str, local: u16) -> std::process::Child {
    let child = sandbox
        .skiff()
        .args(["forward", name, &format!("{local}:7777")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", local)).is_ok()
    })
    .expect("the forward listens");
    child
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn data_through_a_forward_keeps_it_up_and_a_silent_one_does_not() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, _) = up(&sandbox, "image", "idle-forward");
    echo_server(&sandbox, "idle-forward");
    let port = free_port();
    let mut forwarder = forward(&sandbox, "idle-forward", port);
    let mut connection = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    connection
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for round in 0..7 {
        std::thread::sleep(Duration::from_secs(1));
        let message = format!("ping {round}\n");
        connection.write_all(message.as_bytes()).unwrap();
        let mut echoed = vec![0u8; message.len()];
        std::io::Read::read_exact(&mut connection, &mut echoed).unwrap();
        assert_eq!(echoed, message.as_bytes());
    }
    assert!(
        is_running(&container),
        "7 s of data through a forward kept a 3 s timeout from firing"
    );
    // The same connection, open but silent, lets the countdown run out.
    let silent_since = Instant::now();
    stops_within(&container, TIMEOUT + GRACE + Duration::from_secs(2))
        .expect("a silent forward does not keep it up");
    assert!(silent_since.elapsed() >= TIMEOUT - Duration::from_millis(200));
    let _ = forwarder.kill();
    let _ = forwarder.wait();
}

#[test]
fn a_pin_keeps_it_up() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, _) = up(&sandbox, "image", "idle-pin");
    sandbox.ok(&["keepalive", "idle-pin", "--for", "6s"]);
    let status = sandbox.ok(&["status", "idle-pin"]);
    assert!(status.contains("kept up by pin"), "{status}");
    std::thread::sleep(TIMEOUT + Duration::from_secs(2));
    assert!(is_running(&container), "the pin holds past the timeout");
    stops_within(&container, Duration::from_secs(6) + TIMEOUT + GRACE)
        .expect("it stops once the pin ends");
}

#[test]
fn a_running_build_keeps_it_up() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("slow-hook", "idle-build");
    // The postCreateCommand sleeps for twice the timeout; `up` must finish rather than be stopped under it.
    let started = Instant::now();
    sandbox.ok(&[
        "up",
        "--idle-timeout",
        &format!("{TIMEOUT_SECONDS}s"),
        project.to_str().unwrap(),
    ]);
    assert!(started.elapsed() >= TIMEOUT * 2);
    let container = sandbox.container_of("idle-build");
    assert!(is_running(&container));
    let done = sandbox.ok(&["exec", "idle-build", "--", "cat", "/tmp/hook-done"]);
    assert_eq!(done.trim(), "done");
}

#[test]
fn a_restarted_agent_keeps_the_last_activity_time() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, ready) = up(&sandbox, "image", "idle-restart");
    std::thread::sleep(Duration::from_secs(1));
    // Kill the agent hard, as a crash would, then bring it back with a command that is not activity.
    let pid = agent_pid(&sandbox, "idle-restart");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sandbox.ok(&["logs", "idle-restart"]);
    stops_within(&container, TIMEOUT + GRACE).expect("the restarted agent still stops it");
    let after = ready.elapsed();
    assert!(
        after <= TIMEOUT + GRACE,
        "the restart did not grant a fresh countdown: stopped {after:?} after the last activity"
    );
}

fn agent_pid(sandbox: &Sandbox, name: &str) -> i32 {
    let config = sandbox
        .home()
        .join("workspaces")
        .join(name)
        .join("skiffd.toml");
    let output = std::process::Command::new("pgrep")
        .args(["-f", &format!("skiffd --config {}", config.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .expect("the agent is running")
}

/// Bug: after an idle stop, the next `up` started an agent that restored the old activity time, found the
/// countdown long expired, and exited before the client could connect.
#[test]
fn up_after_an_idle_stop_starts_the_workspace_again() {
    require_docker();
    let sandbox = Sandbox::new();
    let (container, _) = up(&sandbox, "image", "idle-up-again");
    stops_within(&container, TIMEOUT + GRACE + Duration::from_secs(2)).expect("the idle stop");
    std::thread::sleep(Duration::from_secs(1));
    let project = sandbox.root.path().join("projects/idle-up-again");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert!(is_running(&container), "the same container runs again");
    assert_eq!(
        sandbox.ok(&["exec", "idle-up-again", "--", "echo", "back"]),
        "back\n"
    );
}

/// The agent's ledger of when the workspace ran, as `skiff status` reports it: an idle stop, the time it kept the
/// workspace off until the next `up`, an agent killed (the up goes on: the container kept running) and a manual
/// stop, each on record with its reason and the figures to the second of the ledger's own entries.
#[test]
fn the_ledger_counts_running_and_idle_off_time_across_an_idle_stop_a_crash_and_a_stop() {
    require_docker();
    let sandbox = Sandbox::new();
    let name = "idle-ledger";
    let (container, _) = up(&sandbox, "image", name);
    stops_within(&container, TIMEOUT + GRACE + Duration::from_secs(2)).expect("the idle stop");
    std::thread::sleep(Duration::from_secs(3));
    let project = sandbox.root.path().join("projects").join(name);
    sandbox.ok(&["up", project.to_str().unwrap()]);

    // Killed hard, then brought back by a command: the same up goes on.
    let pid = agent_pid(&sandbox, name);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    sandbox.ok(&["logs", name]);
    let status: serde_json::Value =
        serde_json::from_str(&sandbox.ok(&["status", name, "--json"])).unwrap();
    let usage = &status["usage"];
    assert_eq!(usage["idle_stops"], 1, "{status:#}");

    let ledger_path = sandbox
        .home()
        .join("workspaces")
        .join(name)
        .join("agent/ledger.jsonl");
    let ledger = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&ledger_path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    let entries = ledger();
    let reasons: Vec<(bool, &str)> = entries
        .iter()
        .map(|entry| {
            (
                entry["up"].as_bool().unwrap(),
                entry["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (true, "agent start"),
            (false, "idle stop"),
            (true, "agent start")
        ],
        "the kill added nothing: {entries:#?}"
    );
    let at = |index: usize| entries[index]["at"].as_i64().unwrap();
    let off = usage["idle_off_seconds"].as_i64().unwrap();
    assert_eq!(off, at(2) - at(1), "off from the idle stop to the next up");
    assert!(
        off >= 3,
        "it stayed off at least the 3 s the test waited: {off}"
    );
    let running = usage["running_seconds"].as_i64().unwrap();
    let first_up = at(1) - at(0);
    assert!(
        (TIMEOUT_SECONDS as i64..=TIMEOUT_SECONDS as i64 + 4).contains(&first_up),
        "up for the idle timeout, then stopped: {first_up}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (first_up..=first_up + (now - at(2)) + 1).contains(&running),
        "the first up plus the current one: {running} ({entries:#?})"
    );
    assert_eq!(usage["up_since_unix"].as_i64(), Some(at(2)));
    let text = sandbox.ok(&["status", name]);
    assert!(
        text.contains("this month") && text.contains("1 idle stop kept it off 0h 00m"),
        "{text}"
    );

    sandbox.ok(&["stop", name]);
    let last = ledger().pop().unwrap();
    assert_eq!(last["up"], false);
    assert_eq!(last["reason"], "stop");
}
