//! What the end-to-end tests share: finding the built binaries, a sandboxed skiff home per test,
//! copies of the fixture folders, and a check that the Docker engine and base images are there.
//!
//! Tests that need Docker fail (never skip) with a message naming what is missing.
//!
//! The rig beside `Sandbox`: `agent` (an agent served in the test's process), `aws` (a moto server and
//! `Sandbox::aws`), `registry` (a real OCI registry on loopback), `file_server` (one file over HTTP with an ETag),
//! `http` (a bare HTTP/1.1 request), `dockerd` (a private Docker daemon a test may restart), `browser` (a headless
//! Chromium driven over WebDriver, for `skiff ui`).

pub mod agent;
pub mod aws;
pub mod browser;
pub mod dockerd;
pub mod file_server;
pub mod http;
mod leaks;
pub mod pricing;
pub mod registry;
pub mod ssm_gateway;
pub mod warm_tunnel;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The Debian image the tests make their own containers and configs from: `cargo xtask images` builds it locally,
/// with the packages the tests use (curl, sudo, procps, iproute2).
/// It is named by its own `skiff-test/` name, not `debian:bookworm`, which on a machine with a registry (or the
/// user's own images) is the real Debian image, without those packages.
pub const BASE_IMAGE: &str = "skiff-test/debian:12";

/// The folder holding the built `skiff` and `skiffd` (the test binary lives in `target/debug/deps`).
pub fn binaries_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary has a path");
    let deps = exe.parent().expect("the test binary is in a folder");
    deps.parent()
        .expect("deps is inside the profile folder")
        .to_owned()
}

/// The path of a built binary, or a failure that says how to build it.
pub fn binary(name: &str) -> PathBuf {
    let path = binaries_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins` (`cargo xtask test` does)",
        path.display()
    );
    path
}

/// Fails the test unless the Docker engine answers and the base image is there.
pub fn require_docker() {
    let version = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    match version {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "these tests need a Docker engine, and `docker version` failed: {}; start Docker (DOCKER_HOST={:?})",
            String::from_utf8_lossy(&output.stderr).trim(),
            std::env::var("DOCKER_HOST").ok()
        ),
        Err(error) => panic!("these tests need the docker CLI and a Docker engine: {error}"),
    }
    let image = Command::new("docker")
        .args(["image", "inspect", BASE_IMAGE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running docker");
    assert!(
        image.success(),
        "the base image {BASE_IMAGE} is missing; build it with `cargo xtask images` (no registry is needed)"
    );
}

/// The test fixtures folder (`tests/fixtures`).
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A skiff home of its own, with copies of fixtures as workspace folders. Dropping it deletes every
/// workspace it made and fails the test if anything those made is left on the engine (`leaks`).
#[derive(Debug)]
pub struct Sandbox {
    /// The temporary folder holding the home and the workspace folders.
    pub root: tempfile::TempDir,
    /// Variables every `skiff` of this sandbox gets beyond its home and agent: set, or removed when `None`.
    env: Vec<(String, Option<std::ffi::OsString>)>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// An empty sandbox.
    pub fn new() -> Self {
        Self {
            root: tempfile::Builder::new()
                .prefix("skiff-test-")
                .tempdir()
                .expect("making a temporary folder"),
            env: Vec::new(),
        }
    }

    /// Sets variable `key` for every `skiff` of this sandbox (`None` removes it).
    pub fn set_env(&mut self, key: &str, value: Option<std::ffi::OsString>) {
        self.env.push((key.to_owned(), value));
    }

    /// The skiff home (`SKIFF_HOME`).
    pub fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    /// Copies fixture `name` to a fresh folder `folder_name` in the sandbox and returns its path.
    pub fn project(&self, fixture: &str, folder_name: &str) -> PathBuf {
        let target = self.root.path().join("projects").join(folder_name);
        copy_tree(&fixtures_dir().join(fixture), &target);
        target
    }

    /// A `skiff` command with this sandbox's home and the built agent.
    pub fn skiff(&self) -> Command {
        let mut command = Command::new(binary("skiff"));
        command
            .env("SKIFF_HOME", self.home())
            .env("SKIFF_AGENT_BINARY", binary("skiffd"))
            .env_remove("SKIFF_LOG")
            .stdin(Stdio::null());
        for (key, value) in &self.env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// Runs `skiff ARGS` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.skiff().args(args).output().expect("running skiff")
    }

    /// Runs `skiff ARGS` and fails the test unless it succeeds; returns its output.
    pub fn succeeds(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "skiff {} failed with {}:\nstdout: {}\nstderr: {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs `skiff ARGS` and fails the test unless it succeeds; returns its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        String::from_utf8(self.succeeds(args).stdout).expect("utf-8 output")
    }

    /// Runs `skiff ARGS` and fails the test unless it succeeds; returns its standard error (progress, summaries).
    pub fn ok_stderr(&self, args: &[&str]) -> String {
        String::from_utf8(self.succeeds(args).stderr).expect("utf-8 output")
    }

    /// Runs `skiff ARGS` and fails the test unless it fails; returns its standard error.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "skiff {} should have failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stderr).expect("utf-8 output")
    }

    /// The folder of workspace `name`'s record in this sandbox's home.
    pub fn record(&self, name: &str) -> PathBuf {
        self.home().join("workspaces").join(name)
    }

    /// SIGKILLs the agent of workspace `name`, as a crash or the kernel's OOM killer would; fails the test if
    /// it was not running.
    pub fn kill_agent(&self, name: &str) {
        let config = self.record(name).join("skiffd.toml");
        let killed = Command::new("pkill")
            .args([
                "-KILL",
                "-f",
                &format!("skiffd --config {}", config.display()),
            ])
            .status()
            .expect("running pkill");
        assert!(killed.success(), "the agent of {name} was running");
    }

    /// Names of the workspaces in this sandbox's home.
    pub fn workspaces(&self) -> Vec<String> {
        std::fs::read_dir(self.home().join("workspaces"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect()
    }
}

impl Drop for Sandbox {
    /// Deletes every workspace with `skiff delete --yes`, then checks that nothing the sandbox's local workspaces
    /// made is left on the Docker engine (containers, images, volumes, networks) and that each delete succeeded:
    /// a leak fails the test that made it (unless it is failing already), after removing what was left.
    fn drop(&mut self) {
        let store = skiff_client::workspace::Store::at(self.home());
        let local: Vec<_> = store
            .all()
            .unwrap_or_default()
            .into_iter()
            .filter(|workspace| {
                workspace.record.provider == skiff_client::workspace::ProviderKind::Local
            })
            .collect();
        let folders: Vec<PathBuf> = local
            .iter()
            .map(|workspace| workspace.record.local_folder.clone())
            .collect();
        let made = (!local.is_empty()).then(|| leaks::Made::find(self.root.path(), &folders));
        let mut failed = Vec::new();
        for name in self.workspaces() {
            let output = self.run(&["delete", "--yes", &name]);
            let is_local = local.iter().any(|workspace| workspace.name() == name);
            if is_local && !output.status.success() {
                failed.push(format!(
                    "`skiff delete --yes {name}` failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
            }
        }
        let Some(made) = made else { return };
        let left = made.left();
        leaks::Made::remove(&left);
        if std::thread::panicking() || (failed.is_empty() && left.is_empty()) {
            return;
        }
        panic!(
            "the sandbox's workspaces were not cleanly deleted:\n{}",
            failed
                .into_iter()
                .chain(left)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

/// `length` pseudo-random bytes (xorshift64) continuing from `state`: incompressible data for transfers, made
/// fast enough not to be what a test or benchmark measures.
pub fn noise(state: &mut u64, length: usize) -> Vec<u8> {
    (0..length)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state as u8
        })
        .collect()
}

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("creating a folder");
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|error| panic!("reading {}: {error}", from.display()))
    {
        let entry = entry.expect("reading a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
        }
    }
}

/// Containers carrying label `key=value`, running or not.
pub fn containers_with_label(key: &str, value: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            &format!("label={key}={value}"),
        ])
        .output()
        .expect("running docker ps");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `docker inspect --format FORMAT TARGET`, trimmed.
pub fn docker_inspect(format: &str, target: &str) -> String {
    let output = Command::new("docker")
        .args(["inspect", "--format", format, target])
        .output()
        .expect("running docker inspect");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Polls `condition` every 50 ms for up to `limit`; returns how long it took to hold.
pub fn wait_until(
    limit: std::time::Duration,
    mut condition: impl FnMut() -> bool,
) -> Option<std::time::Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return Some(started.elapsed());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// Whether a container is running.
pub fn is_running(container: &str) -> bool {
    docker_inspect("{{.State.Running}}", container) == "true"
}

/// Copies the host's static busybox into `folder` (the workspace folder is mounted in the dev container,
/// so it runs there as `/workspaces/<folder>/busybox`): the test's source of `nc` and `httpd`.
pub fn add_busybox(folder: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install Debian's busybox-static (`apt-get install busybox-static`; .ci/run does)"
    );
    std::fs::copy(busybox, folder.join("busybox")).expect("copying busybox");
}

impl Sandbox {
    /// The container id of a workspace, from `skiff status --json`.
    pub fn container_of(&self, name: &str) -> String {
        let status: serde_json::Value = serde_json::from_str(&self.ok(&["status", name, "--json"]))
            .expect("status --json is JSON");
        status["container_id"]
            .as_str()
            .expect("a container id")
            .to_owned()
    }
}

/// The command `skiff exec -T NAME --` runs to show that SIGINT reaches it: it prints `ready`, then on SIGINT
/// prints `got-int` and exits 42.
pub const INTERRUPTIBLE: &[&str] = &[
    "sh",
    "-c",
    "trap 'echo got-int; exit 42' INT; echo ready; while :; do sleep 0.1; done",
];

/// Runs `exec` (a `skiff exec -T NAME -- INTERRUPTIBLE…`), sends SIGINT to it once the remote command is ready, and
/// fails the test unless the remote command saw the signal and its exit code came back.
pub fn interrupt_reaches_the_remote_command(mut exec: Command) {
    use std::io::Read as _;
    let mut child = exec
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting skiff exec");
    let mut stdout = child.stdout.take().expect("piped");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let read = stdout
            .read(&mut buffer)
            .expect("reading skiff exec's output");
        assert!(read > 0, "the command ended before it was ready");
        seen.extend_from_slice(&buffer[..read]);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid")),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("sending SIGINT");
    stdout
        .read_to_end(&mut seen)
        .expect("reading skiff exec's output");
    let status = child.wait().expect("waiting for skiff exec");
    assert!(
        String::from_utf8_lossy(&seen).contains("got-int"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    assert_eq!(status.code(), Some(42));
}

/// Copies the test echo server (`skiff-test-echo`, built with the workspace's binaries) into `folder`,
/// where the dev container runs it as `./skiff-test-echo ADDRESS`.
pub fn add_echo_server(folder: &Path) {
    std::fs::copy(binary("skiff-test-echo"), folder.join("skiff-test-echo"))
        .expect("copying the echo server");
}

/// A child process killed and reaped when the test ends, however it ends.
#[derive(Debug)]
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// The SHA-256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(data)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
