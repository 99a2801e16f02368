//! `skiff exec` beyond the basics: signal deaths, signals from the client, large streams, many at once,
//! and a terminal that follows resizes.

use std::io::{Read, Write};
use std::process::Stdio;
use std::time::Duration;

use rand::RngCore;
use skiff_tests::{Sandbox, require_docker, wait_until};

fn sandbox_with(name: &str) -> Sandbox {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", name);
    sandbox.ok(&["up", project.to_str().unwrap()]);
    sandbox
}

#[test]
fn a_signal_death_exits_with_128_plus_the_signal() {
    let sandbox = sandbox_with("exec-signal-death");
    let output = sandbox.run(&[
        "exec",
        "exec-signal-death",
        "--",
        "sh",
        "-c",
        "kill -TERM $$",
    ]);
    assert_eq!(output.status.code(), Some(128 + 15));
    let output = sandbox.run(&[
        "exec",
        "exec-signal-death",
        "--",
        "sh",
        "-c",
        "kill -KILL $$",
    ]);
    assert_eq!(output.status.code(), Some(128 + 9));
}

#[test]
fn sigint_on_the_client_reaches_the_remote_process() {
    let sandbox = sandbox_with("exec-sigint");
    let mut child = sandbox
        .skiff()
        .args([
            "exec",
            "-T",
            "exec-sigint",
            "--",
            "sh",
            "-c",
            "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buffer = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let read = stdout.read(&mut buffer).unwrap();
        assert!(read > 0, "the command ended before it was ready");
        seen.extend_from_slice(&buffer[..read]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    stdout.read_to_end(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(
        String::from_utf8_lossy(&seen).contains("got-int"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(status.code(), Some(42));
}

#[test]
fn a_hundred_mebibytes_through_stdin_come_back_unchanged() {
    let sandbox = sandbox_with("exec-100mib");
    let mut data = vec![0u8; 100 * 1024 * 1024];
    rand::rng().fill_bytes(&mut data);
    let mut child = sandbox
        .skiff()
        .args(["exec", "exec-100mib", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data))
    };
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), data.len());
    assert!(output.stdout == data, "100 MiB came back changed");
}

#[test]
fn fifty_concurrent_execs_all_complete() {
    let sandbox = sandbox_with("exec-fifty");
    let children: Vec<_> = (0..50)
        .map(|index| {
            sandbox
                .skiff()
                .args([
                    "exec",
                    "exec-fifty",
                    "--",
                    "sh",
                    "-c",
                    &format!("sleep 0.2; echo run-{index}; exit {}", index % 7),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (index, child) in children.into_iter().enumerate() {
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("run-{index}\n")
        );
        assert_eq!(
            output.status.code(),
            Some(index as i32 % 7),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_terminal_session_sees_a_resize() {
    let sandbox = sandbox_with("exec-resize");
    // tmux gives skiff a real terminal whose size the test can change.
    let session = format!("skiff-resize-{}", std::process::id());
    let skiff = skiff_tests::binary("skiff");
    let command = format!(
        "SKIFF_HOME={} SKIFF_AGENT_BINARY={} {} exec -t exec-resize -- sh -c 'stty size; trap \"stty size\" WINCH; while :; do sleep 0.1; done'",
        sandbox.home().display(),
        skiff_tests::binary("skiffd").display(),
        skiff.display()
    );
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("running tmux")
    };
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let first = wait_until(Duration::from_secs(10), || capture().contains("30 100"));
    tmux(&["resize-window", "-t", &session, "-x", "120", "-y", "40"]);
    let second = wait_until(Duration::from_secs(10), || capture().contains("40 120"));
    let screen = capture();
    tmux(&["kill-session", "-t", &session]);
    assert!(
        first.is_some(),
        "the terminal starts at the window's size: {screen}"
    );
    assert!(second.is_some(), "the terminal follows a resize: {screen}");
}
