//! The SSH server inside the agent, driven by the real OpenSSH client through the configuration
//! `skiff ssh-config` writes (`ssh -F <generated config> NAME.skiff`, ProxyCommand `skiff proxy NAME`):
//! commands with their output and exit codes, binary-safe input, scp both ways (over SFTP), `ssh -L` to
//! servers in the dev container (on all addresses and on its loopback only), a terminal that follows its window, wrong keys refused and an enrolled
//! laptop's key accepted, the managed block kept idempotent, `skiff code`, and the idle clock counting typing
//! but not SSH keep-alives.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use skiff_tests::{
    Reaped, Sandbox, add_busybox, free_port, is_running, require_docker, wait_until,
};

/// A workspace with an ssh configuration of its own, written by `skiff ssh-config --config`.
struct Ssh {
    sandbox: Sandbox,
    name: String,
    config: PathBuf,
}

/// Fails unless OpenSSH's client is installed.
fn require_openssh() {
    let found = Command::new("ssh")
        .arg("-V")
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "these tests need OpenSSH's client: `apt-get install -y openssh-client` (.ci/run does)"
    );
}

/// Brings a workspace of the image fixture up (with busybox in its folder) and writes its ssh configuration.
fn workspace(name: &str, up_args: &[&str]) -> Ssh {
    require_docker();
    require_openssh();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", name);
    add_busybox(&project);
    let mut args = vec!["up"];
    args.extend_from_slice(up_args);
    args.push(project.to_str().unwrap());
    sandbox.ok(&args);
    let config = sandbox.root.path().join("ssh_config");
    sandbox.ok(&["ssh-config", "--config", config.to_str().unwrap(), name]);
    Ssh {
        sandbox,
        name: name.to_owned(),
        config,
    }
}

impl Ssh {
    fn host(&self) -> String {
        format!("{}.skiff", self.name)
    }

    /// `ssh -F CONFIG [OPTIONS] NAME.skiff`, with nothing from the person running the tests (no agent, no
    /// config of their own), and batch mode so a prompt fails instead of waiting.
    fn ssh_with(&self, config: &Path, options: &[&str]) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg(config)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
            .args(options)
            .arg(self.host())
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null());
        command
    }

    fn ssh(&self, options: &[&str]) -> Command {
        self.ssh_with(&self.config, options)
    }

    /// Runs a command line over ssh to its end.
    fn run(&self, command_line: &str) -> Output {
        self.ssh(&[])
            .arg(command_line)
            .output()
            .expect("running ssh")
    }

    /// Runs a command line over ssh and fails the test unless it succeeds; returns its output.
    fn ok(&self, command_line: &str) -> String {
        let output = self.run(command_line);
        assert!(
            output.status.success(),
            "ssh {} {command_line:?} failed with {}: {}",
            self.host(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 output")
    }

    fn scp(&self, from: &str, to: &str) -> Output {
        Command::new("scp")
            .arg("-F")
            .arg(&self.config)
            .args(["-o", "BatchMode=yes", from, to])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .output()
            .expect("running scp")
    }
}

fn random_bytes(length: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; length];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

#[test]
fn a_command_runs_with_its_output_and_exit_code() {
    let ssh = workspace("sshd-command", &[]);
    let output = ssh.run("echo out; echo err >&2; echo \"$(id -un) in $(pwd)\"; exit 7");
    assert_eq!(output.status.code(), Some(7), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "out\nroot in /workspaces/sshd-command\n",
        "stdout alone, as the remote user, in the workspace folder"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("err"),
        "stderr apart: {output:?}"
    );
    // The container's environment, as `skiff exec` gives it.
    assert_eq!(ssh.ok("echo $GREETING"), "hello from containerEnv\n");
    // Input is carried byte for byte, and its end reaches the command.
    let input = random_bytes(3 * 1024 * 1024);
    let mut child = ssh
        .ssh(&[])
        .arg("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || stdin.write_all(&input))
    };
    let mut back = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut back).unwrap();
    writer.join().unwrap().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(back == input, "3 MiB through cat came back unchanged");
}

#[test]
fn scp_copies_a_file_both_ways() {
    let ssh = workspace("sshd-scp", &[]);
    let folder = ssh.sandbox.root.path();
    let contents = random_bytes(2 * 1024 * 1024 + 17);
    std::fs::write(folder.join("up.bin"), &contents).unwrap();
    let host = ssh.host();
    let up = ssh.scp(
        folder.join("up.bin").to_str().unwrap(),
        &format!("{host}:/tmp/copied.bin"),
    );
    assert!(up.status.success(), "scp up: {up:?}");
    let size = ssh.ok("wc -c < /tmp/copied.bin");
    assert_eq!(size.trim(), contents.len().to_string());
    // A relative path lands in the workspace folder, which is the session's working folder.
    let relative = ssh.scp(
        folder.join("up.bin").to_str().unwrap(),
        &format!("{host}:relative.bin"),
    );
    assert!(
        relative.status.success(),
        "scp to a relative path: {relative:?}"
    );
    ssh.ok("cmp /tmp/copied.bin /workspaces/sshd-scp/relative.bin");
    let down = ssh.scp(
        &format!("{host}:/tmp/copied.bin"),
        folder.join("down.bin").to_str().unwrap(),
    );
    assert!(down.status.success(), "scp down: {down:?}");
    assert!(
        std::fs::read(folder.join("down.bin")).unwrap() == contents,
        "the file came back unchanged"
    );
    let missing = ssh.scp(
        &format!("{host}:/no/such/file"),
        folder.join("never.bin").to_str().unwrap(),
    );
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("No such file"),
        "a missing file says so: {missing:?}"
    );
}

#[test]
fn ssh_l_forwards_a_port_to_a_server_in_the_container() {
    let ssh = workspace("sshd-forward", &[]);
    // One server on every address, and one on the container's loopback only, as IDE servers listen.
    ssh.ok(
        "mkdir -p /tmp/www && echo hello-through-ssh-L > /tmp/www/index.html && \
            (nohup ./busybox httpd -f -p 8080 -h /tmp/www >/dev/null 2>&1 &) && \
            (nohup ./busybox httpd -f -p 127.0.0.1:8081 -h /tmp/www >/dev/null 2>&1 &)",
    );
    let local = free_port();
    let loopback_local = free_port();
    let refused_local = free_port();
    let _forward = Reaped(
        ssh.ssh(&[
            "-N",
            "-L",
            &format!("{local}:localhost:8080"),
            "-L",
            &format!("{loopback_local}:127.0.0.1:8081"),
            "-L",
            &format!("{refused_local}:localhost:9"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let get = |port: u16| {
        wait_until(Duration::from_secs(15), || {
            let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                return false;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
            let mut response = String::new();
            let _ = stream.read_to_string(&mut response);
            response.starts_with("HTTP/1.") && response.contains("hello-through-ssh-L")
        })
    };
    assert!(
        get(local).is_some(),
        "the HTTP server answered through ssh -L"
    );
    assert!(
        get(loopback_local).is_some(),
        "a server on the container's loopback only answered through ssh -L"
    );
    // Many connections at once, each its own channel, all intact.
    let answers: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || get(loopback_local).is_some()))
        .collect();
    assert!(answers.into_iter().all(|answer| answer.join().unwrap()));
    // A port where nothing listens: the channel is refused, so the local connection closes with no data.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", refused_local)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut anything = Vec::new();
    assert_eq!(stream.read_to_end(&mut anything).unwrap_or(0), 0);
}

#[test]
fn a_terminal_session_follows_its_window() {
    let ssh = workspace("sshd-terminal", &[]);
    let session = format!("skiff-sshd-{}", std::process::id());
    let command = format!(
        "ssh -F {} -o BatchMode=yes -t {} \"sh -c 'echo TERM=\\$TERM; stty size; trap \\\"stty size\\\" WINCH; while :; do sleep 0.1; done'\"",
        ssh.config.display(),
        ssh.host()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(args)
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .expect("running tmux (apt-get install tmux; .ci/run does)")
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
    assert!(started.status.success(), "tmux: {started:?}");
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-p", "-t", &session]).stdout).into_owned()
    };
    let first = wait_until(Duration::from_secs(15), || capture().contains("30 100"));
    tmux(&["resize-window", "-t", &session, "-x", "120", "-y", "40"]);
    let second = wait_until(Duration::from_secs(10), || capture().contains("40 120"));
    let screen = capture();
    tmux(&["kill-session", "-t", &session]);
    assert!(
        first.is_some(),
        "the pty starts at the window's size: {screen}"
    );
    assert!(
        screen.contains("TERM=tmux") || screen.contains("TERM=screen"),
        "TERM comes from the client: {screen}"
    );
    assert!(second.is_some(), "window-change reaches the pty: {screen}");
}

#[test]
fn a_wrong_key_is_refused_and_an_enrolled_laptops_key_is_accepted() {
    let ssh = workspace("sshd-keys", &[]);
    let folder = ssh.sandbox.root.path();
    let config_text = std::fs::read_to_string(&ssh.config).unwrap();
    let identity_line = config_text
        .lines()
        .find(|line| line.trim_start().starts_with("IdentityFile "))
        .expect("an IdentityFile line")
        .to_owned();
    let with_key = |key: &Path, file: &str| {
        let path = folder.join(file);
        std::fs::write(
            &path,
            config_text.replace(
                &identity_line,
                &format!("    IdentityFile {}", key.display()),
            ),
        )
        .unwrap();
        path
    };

    // An OpenSSH key nobody trusts.
    let stranger = folder.join("stranger_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", ""])
        .arg("-f")
        .arg(&stranger)
        .status()
        .expect("running ssh-keygen");
    assert!(made.success());
    let refused = ssh
        .ssh_with(&with_key(&stranger, "stranger_config"), &[])
        .arg("echo should-not-run")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(255), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Permission denied (publickey)"),
        "{refused:?}"
    );
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("should-not-run"));

    // Another skiff identity (a P-256 key like the workspace's own) that the agent does not trust yet.
    let laptop = skiff::tls::Identity::generate("skiff-client").unwrap();
    let laptop_key = folder.join("laptop.key");
    std::fs::write(&laptop_key, &laptop.private_key_pem).unwrap();
    // ssh refuses a private key that others can read.
    std::fs::set_permissions(
        &laptop_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let laptop_config = with_key(&laptop_key, "laptop_config");
    let before = ssh
        .ssh_with(&laptop_config, &[])
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(
        before.status.code(),
        Some(255),
        "not enrolled yet: {before:?}"
    );
    // Enrolled: its certificate in the agent's trust folder, as `skiff enroll` puts it there.
    let trusted = ssh
        .sandbox
        .home()
        .join("workspaces")
        .join(&ssh.name)
        .join("agent")
        .join("trusted-clients");
    std::fs::write(trusted.join("laptop.pem"), &laptop.certificate_pem).unwrap();
    let after = ssh
        .ssh_with(&laptop_config, &[])
        .arg("echo enrolled")
        .output()
        .unwrap();
    assert!(
        after.status.success(),
        "an enrolled laptop's key logs in: {after:?}"
    );
    assert_eq!(String::from_utf8_lossy(&after.stdout), "enrolled\n");
}

#[test]
fn the_managed_block_is_idempotent_honours_home_and_serves_skiff_code() {
    let ssh = workspace("sshd-config", &[]);
    let home = ssh.sandbox.root.path().join("fake-home");
    let user_config = home.join(".ssh").join("config");
    std::fs::create_dir_all(user_config.parent().unwrap()).unwrap();
    let mine = "# mine\nHost work\n    User alice\n";
    std::fs::write(&user_config, mine).unwrap();
    let write = || {
        let output = ssh
            .sandbox
            .skiff()
            .args(["ssh-config", "sshd-config"])
            .env("HOME", &home)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        std::fs::read_to_string(&user_config).unwrap()
    };
    let once = write();
    assert!(once.starts_with("# BEGIN skiff"), "{once}");
    assert!(once.ends_with(mine), "the rest of the file is kept: {once}");
    assert!(once.contains("Host sshd-config.skiff\n"));
    assert!(once.contains("ProxyCommand "));
    assert!(once.contains("StrictHostKeyChecking yes"));
    assert_eq!(write(), once, "a second run changes nothing");
    let printed = ssh.sandbox.ok(&["ssh-config", "--print", "sshd-config"]);
    assert!(
        once.starts_with(&printed),
        "--print prints the block: {printed}"
    );
    // The block in $HOME's configuration works as well as the test's own.
    let through_home = ssh
        .ssh_with(&user_config, &[])
        .arg("echo via-home")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&through_home.stdout),
        "via-home\n",
        "{through_home:?}"
    );

    // `skiff code` with a stand-in `code` on PATH that records how it was called.
    let bin = ssh.sandbox.root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let record = ssh.sandbox.root.path().join("code-args");
    std::fs::write(
        bin.join("code"),
        format!("#!/bin/sh\necho \"$@\" > {}\n", record.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("code"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let code = ssh
        .sandbox
        .skiff()
        .args(["code", "sshd-config"])
        .env("HOME", &home)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    assert!(code.status.success(), "{code:?}");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "--remote ssh-remote+sshd-config.skiff /workspaces/sshd-config\n"
    );
    let without = ssh
        .sandbox
        .skiff()
        .args(["code", "sshd-config"])
        .env("HOME", &home)
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!without.status.success());
    assert!(
        String::from_utf8_lossy(&without.stderr).contains("`code` command is not on PATH"),
        "{without:?}"
    );
}

const IDLE_SECONDS: u64 = 3;
const IDLE: Duration = Duration::from_secs(IDLE_SECONDS);
/// How late after the timeout a stop may come (as in `idle`): the stop itself and polling.
const GRACE: Duration = Duration::from_secs(3);

/// An interactive `ssh -tt` session with a shell, whose input the test writes.
fn shell(ssh: &Ssh, options: &[&str]) -> (Reaped, std::process::ChildStdin) {
    let mut child = ssh
        .ssh(options)
        .arg("-tt")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    (Reaped(child), stdin)
}

#[test]
fn typing_through_ssh_keeps_the_workspace_up() {
    let ssh = workspace(
        "sshd-typing",
        &["--idle-timeout", &format!("{IDLE_SECONDS}s")],
    );
    let container = ssh.sandbox.container_of(&ssh.name);
    let (_session, mut stdin) = shell(&ssh, &[]);
    // The first keystroke goes at once (ssh holds it until the session is open), then one a second.
    for _ in 0..8 {
        stdin.write_all(b":\n").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        is_running(&container),
        "8 s of typing through ssh kept a {IDLE_SECONDS} s timeout from firing"
    );
}

#[test]
fn ssh_keep_alives_do_not_keep_the_workspace_up() {
    let ssh = workspace(
        "sshd-keepalive",
        &["--idle-timeout", &format!("{IDLE_SECONDS}s")],
    );
    let container = ssh.sandbox.container_of(&ssh.name);
    // Keep-alives every second, which the server answers; one keystroke starts a known countdown.
    let (mut session, mut stdin) = shell(
        &ssh,
        &["-o", "ServerAliveInterval=1", "-o", "ServerAliveCountMax=3"],
    );
    stdin.write_all(b":\n").unwrap();
    stdin.flush().unwrap();
    let typed = Instant::now();
    std::thread::sleep(IDLE - Duration::from_secs(1));
    assert!(
        session.0.try_wait().unwrap().is_none(),
        "the session is still open before the timeout"
    );
    let stopped = wait_until(IDLE + GRACE + Duration::from_secs(3), || {
        !is_running(&container)
    });
    assert!(
        stopped.is_some(),
        "an open ssh session with keep-alives every second let the workspace stop"
    );
    assert!(
        typed.elapsed() >= IDLE - Duration::from_millis(200),
        "the keystroke restarted the countdown: stopped {:?} after it",
        typed.elapsed()
    );
    let _ = session.0.kill();
    let _ = session.0.wait();
    let mut stderr = String::new();
    let _ = session.0.stderr.take().unwrap().read_to_string(&mut stderr);
    assert!(
        !stderr.contains("not responding"),
        "the server answered the keep-alives: {stderr}"
    );
}

/// An IDE's remote server runs as a long command over SSH for as long as the IDE is open; left open over a
/// weekend it must not keep the workspace up. Over SSH a running command counts only by what is sent to it.
#[test]
fn a_silent_long_running_command_over_ssh_does_not_keep_the_workspace_up() {
    let ssh = workspace(
        "sshd-ide-server",
        &["--idle-timeout", &format!("{IDLE_SECONDS}s")],
    );
    let container = ssh.sandbox.container_of(&ssh.name);
    let started = Instant::now();
    let mut server = Reaped(
        ssh.ssh(&[])
            .args(["sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stopped = wait_until(IDLE + GRACE + Duration::from_secs(5), || {
        !is_running(&container)
    });
    assert!(
        stopped.is_some(),
        "a silent command held open over ssh kept the workspace up"
    );
    assert!(started.elapsed() >= IDLE - Duration::from_millis(500));
    let _ = server.0.kill();
}

/// Attacks the host through SSH `direct-tcpip`: `ssh -L` to `[::ffff:127.0.0.1]:PORT`, the IPv4-mapped
/// spelling of loopback the filter once missed, used to connect from the agent to the host's loopback; it
/// must reach the container's server on that port. `ssh -L` to the metadata service gets nothing back.
#[test]
fn ssh_l_to_loopback_in_any_spelling_is_the_container_and_the_metadata_service_is_refused() {
    let ssh = workspace("sshd-forward-attack", &[]);
    let host_server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host_server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in host_server.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nthe-host-answered\n");
        }
    });
    ssh.ok(&format!(
        "mkdir -p /tmp/www && echo the-container-answered > /tmp/www/index.html && \
            (nohup ./busybox httpd -f -p 127.0.0.1:{port} -h /tmp/www >/dev/null 2>&1 &)"
    ));
    let mapped_local = free_port();
    let metadata_local = free_port();
    let _forward = Reaped(
        ssh.ssh(&[
            "-N",
            "-L",
            &format!("{mapped_local}:[::ffff:127.0.0.1]:{port}"),
            "-L",
            &format!("{metadata_local}:169.254.169.254:80"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let get = |local: u16| {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", local)) else {
            return String::new();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let _ = stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    };
    let mut answer = String::new();
    wait_until(Duration::from_secs(15), || {
        answer = get(mapped_local);
        !answer.is_empty()
    });
    assert!(
        answer.contains("the-container-answered") && !answer.contains("the-host-answered"),
        "[::ffff:127.0.0.1]:{port} is the container's loopback: {answer}"
    );
    assert_eq!(
        get(metadata_local),
        "",
        "the metadata service gives nothing"
    );
}
