//! The whole system end to end: `skiff up --provider aws` against moto (EC2, IAM, STS and Run Command) and the
//! test gateway (Session Manager), with a container standing in for the instance.
//!
//! The stand-in runs the user-data the client generated, on the host's network (so the gateway's dial to
//! 127.0.0.1:portNumber reaches what listens in it, and nothing leaves loopback), with the host's Docker socket
//! (so the agent's dev container is a sibling container) and in the host's process namespace (so, as on a real
//! instance, the agent and its dev containers' processes share one, and signals reach remote commands). `skiffd` reaches it by the push path: the client
//! sends it through a Session Manager session to user-data's receiver. The agent's state, and so the
//! workspace's files, live in a Docker named volume mounted in the stand-in at the path the host's engine
//! keeps it at, so the folder the agent asks the engine to bind-mount into the dev container is the same
//! folder on the host; that path is the one line of the user-data the test changes.

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use skiff_tests::ssm_gateway::{Gateway, GatewayConfig};
use skiff_tests::{
    Reaped, add_busybox, binary, containers_with_label, free_port, require_docker, wait_until,
};

use skiff_tests::aws::{AwsSandbox, Instance, helper, live_instances, moto};

/// The agent's port and the push receiver's, as the user-data has them; the stand-in shares the host's
/// loopback, so only one end-to-end test runs at a time (they are all in this one test).
const AGENT_PORT: u16 = 7443;

struct Volume(String);

impl Volume {
    fn create(name: &str) -> (Self, String) {
        let output = Command::new("docker")
            .args(["volume", "create", name])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mountpoint = Command::new("docker")
            .args(["volume", "inspect", "--format", "{{.Mountpoint}}", name])
            .output()
            .unwrap();
        (
            Self(name.to_owned()),
            String::from_utf8_lossy(&mountpoint.stdout)
                .trim()
                .to_owned(),
        )
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f", &self.0])
            .output();
    }
}

/// Removes the dev containers the agent in the stand-in made on the host's engine, however the test ends.
struct DevContainers(String);

impl Drop for DevContainers {
    fn drop(&mut self) {
        for container in containers_with_label(skiff::devcontainer::LABEL_LOCAL_FOLDER, &self.0) {
            let _ = Command::new("docker")
                .args(["rm", "-f", &container])
                .output();
        }
    }
}

fn write_project(folder: &Path) {
    std::fs::write(folder.join("hello.txt"), "hello from the laptop\n").unwrap();
    std::fs::write(folder.join(".gitignore"), "secret.txt\n").unwrap();
    std::fs::write(folder.join("secret.txt"), "must not leave the laptop\n").unwrap();
    // A git repository, so the workspace on the instance has history and, after `sync`, uncommitted changes.
    for args in [
        vec!["init", "-q"],
        vec!["add", "-A"],
        vec![
            "-c",
            "user.email=test@skiff.invalid",
            "-c",
            "user.name=test",
            "commit",
            "-qm",
            "start",
        ],
    ] {
        let status = Command::new("git")
            .args(&args)
            .current_dir(folder)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

#[test]
fn up_exec_ssh_forward_sync_and_status_through_session_manager() {
    require_docker();
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", AGENT_PORT)).is_ok(),
        "port {AGENT_PORT} on 127.0.0.1 is taken; the end-to-end test's stand-in instance needs it"
    );
    let sandbox = AwsSandbox::new("eu-north-1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gateway = runtime
        .block_on(Gateway::start(GatewayConfig {
            moto_endpoint: Some(moto().endpoint.clone()),
            ..GatewayConfig::default()
        }))
        .unwrap();
    let name = "e2e";
    let project = sandbox.project(name);
    write_project(&project);
    add_busybox(&project);
    let _dev_containers = DevContainers(project.display().to_string());
    let skiff = |args: &[&str]| {
        let mut command = sandbox.skiff();
        command
            .env("AWS_ENDPOINT_URL_SSM", gateway.endpoint())
            .env("SKIFF_SSM_ALLOW_ANY_ENDPOINT", "1")
            .env("SKIFF_TUNNEL_IDLE", "2m")
            .args(args);
        command
    };

    // moto builds a region's backend on its first call, and two first calls at once race on its AMI list: make
    // the region here before skiff and this test poll it at the same time.
    assert!(live_instances(&sandbox.region, name).is_empty());
    let skiffd = binary("skiffd");
    // `--ecr`: user-data maps the account's ECR registry to Amazon's credential helper, and each `up` asks it. The
    // stand-in has no instance role, so its helper (this script, where the real one would be) says so; the `up`
    // reports it and goes on.
    let ecr_helper = sandbox.root.path().join("docker-credential-ecr-login");
    std::fs::write(
        &ecr_helper,
        "#!/bin/sh\nread registry\necho \"no instance role on this stand-in for $registry\" >&2\nexit 1\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&ecr_helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let booted = up_on_a_stand_in(
        &sandbox,
        &gateway,
        &skiff,
        name,
        &[
            "up",
            project.to_str().unwrap(),
            "--provider",
            "aws",
            "--ecr",
            "--agent-binary",
            skiffd.to_str().unwrap(),
        ],
        &[
            // One process namespace for the agent and its dev containers, as on a real instance.
            "--pid".to_owned(),
            "host".to_owned(),
            "-v".to_owned(),
            format!(
                "{}:/usr/local/bin/docker-credential-ecr-login:ro",
                ecr_helper.display()
            ),
        ],
    );
    let up_log =
        std::fs::read_to_string(sandbox.root.path().join(format!("up-{name}.log"))).unwrap();
    let registry = format!("123456789012.dkr.ecr.{}.amazonaws.com", sandbox.region);
    assert!(
        up_log.contains(&format!(
            "no login to {registry} from this machine's credential helper"
        )) && up_log.contains(&format!("no instance role on this stand-in for {registry}")),
        "the agent asked the ECR helper user-data configured:\n{up_log}"
    );
    let instance = &booted.instance;
    assert_eq!(booted.stdout.trim(), name);
    let boot = instance.exec("cat /boot.log");
    assert!(
        boot.contains("the client's push"),
        "skiffd came by the push path:\n{boot}"
    );

    let run = |args: &[&str]| {
        let output = skiff(args).stdin(Stdio::null()).output().unwrap();
        assert!(
            output.status.success(),
            "skiff {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };

    // exec: the files arrived (without what .gitignore names), the exit code comes back.
    let hello = run(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "cat hello.txt; test ! -e secret.txt && echo ignored-stays-home",
    ]);
    assert_eq!(hello, "hello from the laptop\nignored-stays-home\n");
    let failed = skiff(&["exec", name, "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(7));

    // A signal to the laptop's `skiff exec` reaches the command on the instance, through the tunnel.
    let mut interrupted = skiff(&["exec", "-T", name, "--"]);
    interrupted.args(skiff_tests::INTERRUPTIBLE);
    skiff_tests::interrupt_reaches_the_remote_command(interrupted);

    // status asks the agent through the tunnel: the instance and the dev container both run.
    let status: serde_json::Value =
        serde_json::from_str(&run(&["status", name, "--json"])).unwrap();
    assert_eq!(status["instance"]["state"], "running", "{status:#}");
    assert_eq!(status["agent_running"], true, "{status:#}");
    assert_eq!(status["container_state"], "running", "{status:#}");
    assert!(
        status["container_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{status:#}"
    );
    // The agent's ledger reading is kept, so `list` prices the month without reaching the agent.
    let kept: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            sandbox
                .home()
                .join("workspaces")
                .join(name)
                .join("usage.json"),
        )
        .expect("status keeps the agent's usage reading"),
    )
    .unwrap();
    assert_eq!(
        kept["usage"]["month_start_unix"], status["usage"]["month_start_unix"],
        "{kept:#}"
    );

    // ssh: a login shell in a terminal, over the same tunnel; typing reaches it and its output comes back.
    let mut ssh = skiff(&["ssh", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ssh_stdin = ssh.stdin.take().unwrap();
    let mut ssh_stdout = ssh.stdout.take().unwrap();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        while let Ok(count) = ssh_stdout.read(&mut buffer) {
            if count == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..count]);
            let _ = seen_tx.send(String::from_utf8_lossy(&seen).into_owned());
        }
    });
    let mut shown = String::new();
    let typed_at = Instant::now();
    // The shell computes 42, so the line is its output, not the terminal's echo of what was typed.
    while !shown.contains("through-42-ssh") && typed_at.elapsed() < Duration::from_secs(30) {
        use std::io::Write as _;
        // Typed again every few seconds until the shell is there to read it.
        let _ = ssh_stdin.write_all(b"echo through-$((6*7))-ssh\r");
        let _ = ssh_stdin.flush();
        let wait_until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < wait_until && !shown.contains("through-42-ssh") {
            if let Ok(text) = seen_rx.recv_timeout(Duration::from_millis(200)) {
                shown = text;
            }
        }
    }
    {
        use std::io::Write as _;
        let _ = ssh_stdin.write_all(b"exit\r");
    }
    drop(ssh_stdin);
    let _ = ssh.wait();
    assert!(
        shown.contains("through-42-ssh"),
        "the shell's output through skiff ssh: {shown:?}"
    );

    // forward: a server in the dev container answers on a local port.
    let _server = Reaped(
        skiff(&[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "mkdir -p /tmp/www && echo forwarded > /tmp/www/index.html && ./busybox httpd -f -p 8080 -h /tmp/www",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let local_port = free_port();
    let _forward = Reaped(
        skiff(&["forward", name, &format!("{local_port}:8080")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The page the dev container serves, through the forwarded port.
    let forwarded_page = || {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", local_port)) else {
            return false;
        };
        use std::io::Write as _;
        let _ = write!(stream, "GET /index.html HTTP/1.0\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("forwarded")
    };
    let page = wait_until(Duration::from_secs(30), forwarded_page);
    assert!(page.is_some(), "the forwarded port did not answer");

    // sync: a change on the laptop reaches the workspace, a removed file goes.
    std::fs::write(project.join("hello.txt"), "changed on the laptop\n").unwrap();
    std::fs::write(project.join("new.txt"), "new\n").unwrap();
    run(&["sync", name]);
    let synced = run(&["exec", name, "--", "cat", "hello.txt", "new.txt"]);
    assert_eq!(synced, "changed on the laptop\nnew\n");

    // The gateway saw one session for commands (the warm tunnel), not one per command.
    let stats = gateway.stats();
    eprintln!("gateway: {stats:?}");
    assert!(
        stats.sessions_started <= 2 + skiff_client::tunnel::warm::POOL as u64,
        "commands share the warm tunnel: {stats:?}"
    );

    // The laptop sleeps (issue 15): its tunnel daemon is frozen for 20 s, past the data channel's silence timeout
    // (15 s), and the gateway drops the session's WebSocket meanwhile, as the service does to a client that went
    // quiet. When it wakes, with every timer of the daemon overdue at once, the next command gets through within
    // seconds and its bytes are whole, and a forward open across the sleep answers again.
    let daemon = tunnel_daemon_of(&sandbox.home(), name).expect("the warm tunnel's daemon runs");
    let resumed_before = gateway.stats().sessions_resumed;
    let started_before = gateway.stats().sessions_started;
    {
        use nix::sys::signal::{Signal, kill};
        kill(daemon, Signal::SIGSTOP).unwrap();
        gateway.drop_websockets();
        std::thread::sleep(Duration::from_secs(20));
        kill(daemon, Signal::SIGCONT).unwrap();
    }
    let woke = Instant::now();
    let echoed = run(&[
        "exec",
        name,
        "--",
        "sh",
        "-c",
        "head -c 1000000 /dev/zero | sha256sum",
    ]);
    assert!(
        echoed.starts_with("d29751f2649b32ff572b5e0a9f541ea660a50f94ff0beedfb0b692b924cc8025"),
        "a megabyte through the woken tunnel: {echoed}"
    );
    let after_sleep = woke.elapsed();
    eprintln!("first command after the sleep took {after_sleep:?}");
    assert!(
        after_sleep < Duration::from_secs(15),
        "the woken tunnel answered in {after_sleep:?}"
    );
    let stats = gateway.stats();
    eprintln!(
        "after the sleep: {} sessions resumed, {} new",
        stats.sessions_resumed - resumed_before,
        stats.sessions_started - started_before
    );
    // The daemon's lanes are resumed; one whose connection had bytes in flight for longer than the resumable
    // connection's stall limit (8 s) may be moved to a new session instead, which is also a recovery.
    assert!(
        stats.sessions_resumed > resumed_before,
        "the dropped sessions were resumed: {stats:?}"
    );
    // The `skiff forward` that was open across the sleep carries on.
    let page = wait_until(Duration::from_secs(30), || {
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", local_port)) else {
            return false;
        };
        use std::io::Write as _;
        let _ = write!(stream, "GET /index.html HTTP/1.0\r\n\r\n");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("forwarded")
    });
    assert!(
        page.is_some(),
        "the forward open across the sleep answers again"
    );

    // up with another build of skiffd (the same version, so only because it is named): the agent is replaced in
    // place through the tunnel, checks what it got, restarts into it (here without systemd) and answers with the
    // new executable's SHA-256, which `up` checks; the workspace goes on as before. An older agent is replaced the
    // same way (the decision is `client::provider::aws::upgrade::plan`, unit-tested).
    let other = sandbox.root.path().join("skiffd-other");
    let mut other_bytes = std::fs::read(&skiffd).unwrap();
    other_bytes.extend_from_slice(b"\0another build of the same version\0");
    std::fs::write(&other, &other_bytes).unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // `up` with that build named; its standard error (where `up` reports), after it succeeded.
    let up_with_other = || {
        let output = skiff(&[
            "up",
            project.to_str().unwrap(),
            "--agent-binary",
            other.to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{log}");
        log
    };
    let upgraded_log = up_with_other();
    assert!(
        upgraded_log.contains("another build")
            && upgraded_log.contains("replaced skiffd on the instance"),
        "{upgraded_log}"
    );
    assert_eq!(run(&["exec", name, "--", "cat", "new.txt"]), "new\n");
    // The same build again is left alone.
    let again_log = up_with_other();
    assert!(!again_log.contains("replac"), "{again_log}");

    // delete checks the files on the instance for work that is nowhere else before anything goes; without a
    // terminal and without --yes it keeps the workspace and says how to go on.
    let refused = skiff(&["delete", name])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--yes"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert_eq!(
        live_instances(&sandbox.region, name).len(),
        1,
        "nothing was deleted"
    );

    // delete: everything goes, the tunnel daemon too.
    run(&["delete", name, "--yes"]);
    assert!(live_instances(&sandbox.region, name).is_empty());
    let socket = sandbox
        .home()
        .join("workspaces")
        .join(name)
        .join("tunnel.sock");
    assert!(!socket.exists(), "the tunnel's socket is gone");
    drop(booted);

    // up GIT_URL: the agent clones the repository on the instance (its bytes come from the git server, not
    // through the tunnel), and the repository's devcontainer.json, read there, makes the dev container. The
    // stand-in gets the host's git (an Ubuntu AMI has its own) and sees the sandbox, where the repository is.
    let cloned_name = "e2e-repo";
    let source = sandbox.project("e2e-source");
    std::fs::write(source.join("from-git.txt"), "cloned on the instance\n").unwrap();
    write_project(&source);
    let bare = sandbox.root.path().join("e2e-repo.git");
    let status = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&source)
        .arg(&bare)
        .status()
        .unwrap();
    assert!(status.success());
    let url = format!("file://{}", bare.display());
    let root = sandbox.root.path().display().to_string();
    let mut with_git = Vec::new();
    for path in ["/usr/bin/git", "/usr/lib/git-core", "/usr/share/git-core"] {
        with_git.extend(["-v".to_owned(), format!("{path}:{path}:ro")]);
    }
    with_git.extend(["-v".to_owned(), format!("{root}:{root}:ro")]);
    let cloned = up_on_a_stand_in(
        &sandbox,
        &gateway,
        &skiff,
        cloned_name,
        &[
            "up",
            &url,
            "--name",
            cloned_name,
            "--provider",
            "aws",
            "--agent-binary",
            skiffd.to_str().unwrap(),
        ],
        &with_git,
    );
    assert_eq!(cloned.stdout.trim(), cloned_name);
    assert_eq!(
        run(&[
            "exec",
            cloned_name,
            "--",
            "sh",
            "-c",
            "cat from-git.txt; test -f .git/HEAD && echo with-its-history"
        ]),
        "cloned on the instance\nwith-its-history\n"
    );
    // There is no folder on this machine to send.
    let sync = skiff(&["sync", cloned_name]).output().unwrap();
    assert!(!sync.status.success());
    assert!(
        String::from_utf8_lossy(&sync.stderr).contains("cloned from a git repository"),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );
    run(&["delete", cloned_name, "--yes"]);
    assert!(live_instances(&sandbox.region, cloned_name).is_empty());
}

/// A stand-in instance booted for an `up`, and what that `up` printed. Dropped in this order: the stand-in,
/// the dev containers its agent made, the volume they used.
struct Booted {
    instance: Instance,
    stdout: String,
    _dev_containers: DevContainersUnder,
    _volume: Volume,
}

/// Removes the dev containers whose workspace folder is under a folder (the agent's state, for a workspace
/// whose files are only on the instance), however the test ends.
struct DevContainersUnder(String);

impl Drop for DevContainersUnder {
    fn drop(&mut self) {
        let label = skiff::devcontainer::LABEL_LOCAL_FOLDER;
        let output = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--no-trunc",
                "--filter",
                &format!("label={label}"),
            ])
            .args([
                "--format",
                &format!("{{{{.ID}}}} {{{{.Label \"{label}\"}}}}"),
            ])
            .output();
        let Ok(output) = output else { return };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some((id, folder)) = line.split_once(' ')
                && folder.starts_with(&self.0)
            {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

/// Runs `skiff up_args` and plays EC2 booting the instance it launches for workspace `name`: once RunInstances
/// happened, a stand-in runs its user-data (with the agent's state in a named volume, and `extra` arguments
/// for `docker run`) and comes online in Session Manager. Returns when `up` succeeded; fails the test with
/// `up`'s output and the boot log otherwise.
fn up_on_a_stand_in(
    sandbox: &AwsSandbox,
    gateway: &Gateway,
    skiff: &dyn Fn(&[&str]) -> Command,
    name: &str,
    up_args: &[&str],
    extra: &[String],
) -> Booted {
    let log_path = sandbox.root.path().join(format!("up-{name}.log"));
    let mut up = skiff(up_args)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut instance_id = None;
    wait_until(Duration::from_secs(120), || {
        instance_id = live_instances(&sandbox.region, name)
            .first()
            .and_then(|instance| instance["InstanceId"].as_str().map(str::to_owned));
        instance_id.is_some()
    });
    let Some(instance_id) = instance_id else {
        let _ = up.kill();
        panic!(
            "skiff up launched no instance:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        )
    };
    let (volume, mountpoint) = Volume::create(&format!("skiff-e2e-{}-{name}", std::process::id()));
    let dev_containers = DevContainersUnder(mountpoint.clone());
    let script = helper(&sandbox.region, &["user-data", &instance_id]).replace(
        "STATE_DIR=/var/lib/skiffd",
        &format!("STATE_DIR={mountpoint}"),
    );
    assert!(script.contains(&format!("STATE_DIR={mountpoint}")));
    let mut arguments = vec!["-v".to_owned(), format!("{}:{mountpoint}", volume.0)];
    arguments.extend_from_slice(extra);
    let instance = Instance::boot_with(&script, sandbox.root.path(), &arguments);
    // The SSM agent on the instance registers as soon as it boots.
    gateway.set_online(&instance_id, true);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = up.kill();
            panic!(
                "skiff up did not finish in 5 minutes:\n{}\nuser-data:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default(),
                instance.exec("cat /boot.log")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    up.stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(
        status.success(),
        "skiff up failed:\n{}\nuser-data:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default(),
        instance.exec("cat /boot.log")
    );
    Booted {
        instance,
        stdout,
        _dev_containers: dev_containers,
        _volume: volume,
    }
}

/// The process id of the `skiff tunnel-daemon NAME` serving the skiff home `home`, if one runs.
fn tunnel_daemon_of(home: &Path, name: &str) -> Option<nix::unistd::Pid> {
    let wanted_home = format!("SKIFF_HOME={}", home.display());
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let command = std::fs::read(entry.path().join("cmdline")).ok()?;
            let words: Vec<&[u8]> = command.split(|byte| *byte == 0).collect();
            let is_daemon = words
                .windows(2)
                .any(|pair| pair[0] == b"tunnel-daemon".as_slice() && pair[1] == name.as_bytes());
            let environment = std::fs::read(entry.path().join("environ")).ok()?;
            let same_home = environment
                .split(|byte| *byte == 0)
                .any(|variable| variable == wanted_home.as_bytes());
            (is_daemon && same_home).then(|| nix::unistd::Pid::from_raw(pid))
        })
}
