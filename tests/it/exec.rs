//! `skiff exec` beyond the basics: signal deaths, signals from the client, large streams, many at once,
//! and a terminal that follows resizes.

use std::io::Write;
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
    let mut exec = sandbox.skiff();
    exec.args(["exec", "-T", "exec-sigint", "--"])
        .args(skiff_tests::INTERRUPTIBLE);
    skiff_tests::interrupt_reaches_the_remote_command(exec);
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

/// The ports the dev container of `name` listens on (TCP, IPv4 and IPv6), from its socket tables.
fn listening_ports(sandbox: &Sandbox, name: &str) -> Vec<(String, u16)> {
    let tables = sandbox.ok(&["exec", name, "--", "cat", "/proc/net/tcp", "/proc/net/tcp6"]);
    tables
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `sl local_address rem_address st ...`; state 0A is LISTEN.
            if fields.len() < 4 || fields[3] != "0A" {
                return None;
            }
            let (address, port) = fields[1].split_once(':')?;
            Some((address.to_owned(), u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// Attack (issue 13): the process server runs as root in the dev container, and other containers share the
/// dev container's Docker network. Another container tries to connect to every port the dev container listens
/// on (the process server is the only one here); all must be refused, because the server listens on the
/// container's loopback only (before the fix it listened on 0.0.0.0, reachable from the whole network).
#[test]
fn another_container_on_the_network_cannot_reach_the_process_server() {
    let sandbox = sandbox_with("exec-procd-reach");
    // A command through the agent starts the process server.
    let output = sandbox.ok(&["exec", "exec-procd-reach", "--", "echo", "started"]);
    assert_eq!(output.trim(), "started");
    let listening = listening_ports(&sandbox, "exec-procd-reach");
    assert!(
        !listening.is_empty(),
        "the process server is not listening in the dev container (did the agent fall back to docker exec?)"
    );
    for (address, _) in &listening {
        assert!(
            address == "0100007F" || address == "00000000000000000000000001000000",
            "a listener in the dev container is not on loopback: {listening:?}"
        );
    }
    let container = sandbox.container_of("exec-procd-reach");
    let network = skiff_tests::docker_inspect(
        "{{range $name, $network := .NetworkSettings.Networks}}{{$name}}{{end}}",
        &container,
    );
    let address = skiff_tests::docker_inspect(
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &container,
    );
    assert!(
        !address.trim().is_empty(),
        "the dev container has no address"
    );
    for (_, port) in &listening {
        let attempt = std::process::Command::new("docker")
            .args(["run", "--rm", "--network", network.trim()])
            .args(["-v", "/bin/busybox:/busybox:ro", skiff_tests::BASE_IMAGE])
            .args([
                "/busybox",
                "nc",
                "-w",
                "3",
                address.trim(),
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&attempt.stderr);
        assert!(
            !attempt.status.success() && stderr.contains("refused"),
            "another container on {} was not refused at {}:{port}: {stderr}",
            network.trim(),
            address.trim(),
        );
    }
}

/// The process server runs in an image with no C library at all (the static busybox with account files), not
/// only in glibc ones: `cargo xtask static-procd` links it statically, and the agent copies that build in.
/// Before, the glibc-linked one failed there ("no such file or directory": no loader) and every command went
/// through `docker exec`. A forward to a name from the container's `/etc/hosts` resolves there too, with no
/// NSS library to load.
#[test]
fn the_process_server_runs_in_an_image_without_a_c_library() {
    require_docker();
    let static_build = skiff_tests::binaries_dir().join("skiff-procd-static");
    assert!(
        static_build.is_file(),
        "{} is missing: build it with `cargo xtask static-procd` (`cargo xtask test` does)",
        static_build.display()
    );
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "exec-libc-less");
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        r#"{"image": "skiff-test/alpine:stand-in", "remoteUser": "root"}"#,
    )
    .unwrap();
    sandbox.ok(&["up", project.to_str().unwrap()]);
    let container = sandbox.container_of("exec-libc-less");
    let libraries = std::process::Command::new("docker")
        .args([
            "exec",
            &container,
            "sh",
            "-c",
            "ls /lib /lib64 /usr/lib 2>/dev/null",
        ])
        .output()
        .unwrap();
    let libraries = String::from_utf8_lossy(&libraries.stdout);
    assert!(
        !libraries.contains("libc") && !libraries.contains("ld-"),
        "the image has a C library after all: {libraries}"
    );
    let output = sandbox.ok(&["exec", "exec-libc-less", "--", "echo", "started"]);
    assert_eq!(output.trim(), "started");
    let top = std::process::Command::new("docker")
        .args(["top", &container])
        .output()
        .unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    assert!(
        top.contains("/.skiff/skiff-procd"),
        "the process server does not run in the libc-less dev container (the agent fell back to docker exec): {top}"
    );
    assert!(
        !listening_ports(&sandbox, "exec-libc-less").is_empty(),
        "the process server is not listening in the libc-less dev container"
    );
}
