//! A private Docker daemon for one test, so the test can restart "Docker" without touching the machine's shared
//! engine, which every other test uses at the same time.
//!
//! It has folders of its own under one temporary folder (`--data-root`, `--exec-root`, `--pidfile`, its socket and
//! its log), starts its own containerd under its exec root, attaches containers to a bridge of its own
//! (`skiff-br<N>`, 10.213.N.1/24, made here and deleted on drop) and writes no iptables rules.
//! Never `--bridge=none`: a daemon started so deletes `docker0`, the shared engine's bridge (libnetwork's
//! `removeDefaultBridgeInterface`), which cuts every other test's containers off.
//! It reads an empty configuration file instead of `/etc/docker/daemon.json`, whose settings would clash with ours
//! (and `default-address-pools` there would make a restart delete `docker0` too).
//! A restart is [`Dockerd::stop`] (SIGTERM, which stops its containers as a real daemon's shutdown does) then
//! [`Dockerd::start`] on the same data root. Dropping it stops it, unmounts what it left mounted and removes its
//! folder.
//! Tests point skiff at it with `DOCKER_HOST` ([`Dockerd::host`]); images come from the shared engine
//! ([`Dockerd::load_image`]), since nothing can be pulled here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The storage drivers tried, in order: overlay2 where the kernel allows it, else FUSE, else plain copies.
const STORAGE_DRIVERS: [&str; 3] = ["overlay2", "fuse-overlayfs", "vfs"];

/// How long the daemon may take to answer after it starts.
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long the daemon may take to stop: its containers' stop timeouts (10 s by default) and containerd's.
const STOP_LIMIT: Duration = Duration::from_secs(40);

/// A private `dockerd`; see the module documentation.
#[derive(Debug)]
pub struct Dockerd {
    /// Holds `data/`, `exec/`, `docker.sock`, `docker.pid`, `daemon.json` and `dockerd.log`.
    root: tempfile::TempDir,
    /// The storage driver that worked on the first start; later starts use it again.
    storage_driver: &'static str,
    /// The running daemon, `None` while it is stopped.
    child: Option<Child>,
    /// The bridge this daemon's containers attach to, made for it.
    bridge: Bridge,
}

/// A Linux bridge made for one private daemon (`ip link`), deleted when dropped.
#[derive(Debug)]
struct Bridge {
    name: String,
}

impl Bridge {
    /// Makes the first free `skiff-br<N>` with address 10.213.N.1/24 and brings it up.
    fn new() -> Self {
        for number in 1..=250 {
            let name = format!("skiff-br{number}");
            // `ip link add` fails when the name is taken, so two tests never share one.
            if !ip(&["link", "add", &name, "type", "bridge"]) {
                continue;
            }
            let bridge = Self { name };
            assert!(
                ip(&[
                    "addr",
                    "add",
                    &format!("10.213.{number}.1/24"),
                    "dev",
                    &bridge.name
                ]) && ip(&["link", "set", &bridge.name, "up"]),
                "setting up bridge {} for the private dockerd failed",
                bridge.name
            );
            return bridge;
        }
        panic!(
            "no free skiff-br<N> name for the private dockerd's bridge (or `ip link add` fails: is iproute2 there?)"
        );
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.name.is_empty() {
            ip(&["link", "delete", &self.name]);
        }
    }
}

/// Runs `ip ARGS` quietly; true when it succeeded.
fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

impl Dockerd {
    /// Starts a private daemon with the first storage driver that works here; fails the test with the daemon's log
    /// when none does.
    pub fn new() -> Self {
        let dockerd = Path::new("/usr/sbin/dockerd");
        assert!(
            dockerd.is_file(),
            "{} is missing: the Docker restart tests run a private Docker daemon (Debian's docker.io)",
            dockerd.display()
        );
        let mut root = tempfile::Builder::new()
            // Short, because containerd's socket lives under it and Unix socket paths are limited to 108 bytes.
            .prefix("skiff-dockerd-")
            .tempdir_in("/tmp")
            .expect("making the private daemon's folder");
        std::fs::write(root.path().join("daemon.json"), "{}\n").expect("writing daemon.json");
        let mut bridge = Bridge::new();
        let mut failures = Vec::new();
        for storage_driver in STORAGE_DRIVERS {
            let mut daemon = Self {
                root,
                storage_driver,
                child: None,
                bridge,
            };
            match daemon.try_start() {
                Ok(()) => return daemon,
                Err(failure) => {
                    failures.push(format!("{storage_driver}: {failure}"));
                    daemon.stop();
                    (root, bridge) = daemon.take_root_and_bridge();
                    // A driver that failed may have left its layout behind; the next one starts afresh.
                    unmount_under(root.path());
                    let _ = std::fs::remove_dir_all(root.path().join("data"));
                }
            }
        }
        panic!(
            "no storage driver works for a private dockerd here:\n{}",
            failures.join("\n")
        );
    }

    /// Moves the folder and the bridge out (for the next attempt in [`Dockerd::new`]), leaving an empty folder and a
    /// bridge that was never made in their place.
    fn take_root_and_bridge(&mut self) -> (tempfile::TempDir, Bridge) {
        let spare = tempfile::Builder::new()
            .prefix("skiff-dockerd-spare-")
            .tempdir_in("/tmp")
            .expect("making a folder");
        let no_bridge = Bridge {
            name: String::new(),
        };
        (
            std::mem::replace(&mut self.root, spare),
            std::mem::replace(&mut self.bridge, no_bridge),
        )
    }

    /// The daemon's socket, as `DOCKER_HOST` names it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("docker.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.root.path().join("dockerd.log")
    }

    /// The storage driver the daemon runs with.
    pub fn storage_driver(&self) -> &str {
        self.storage_driver
    }

    /// A `docker` command talking to this daemon.
    pub fn docker(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", self.host()).stdin(Stdio::null());
        command
    }

    /// Whether the daemon answers.
    pub fn answers(&self) -> bool {
        self.docker()
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Starts the daemon again on the same data root (after [`Dockerd::stop`]) and waits until it answers.
    pub fn start(&mut self) {
        if let Err(failure) = self.try_start() {
            panic!("the private dockerd did not start again: {failure}");
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "the private dockerd already runs");
        let root = self.root.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("opening the private daemon's log");
        let log_for_stderr = log.try_clone().expect("sharing the log");
        let mut command = Command::new("/usr/sbin/dockerd");
        command
            .arg("--config-file")
            .arg(root.join("daemon.json"))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--pidfile")
            .arg(root.join("docker.pid"))
            .arg("--host")
            .arg(self.host())
            .arg("--bridge")
            .arg(&self.bridge.name)
            .args([
                "--storage-driver",
                self.storage_driver,
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr);
        let child = command
            .spawn()
            .map_err(|error| format!("starting /usr/sbin/dockerd: {error}"))?;
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < START_LIMIT {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "it exited with {status}; its log ends:\n{}",
                    self.log_tail()
                ));
            }
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "it did not answer within {START_LIMIT:?}; its log ends:\n{}",
            self.log_tail()
        ))
    }

    /// The last lines of the daemon's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Stops the daemon with SIGTERM, as a service manager does, and waits for it to exit: its containers stop
    /// first. A daemon that does not exit in time is killed.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits i32"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < STOP_LIMIT {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the daemon and starts it again on the same data root: what a restart of Docker does to skiff.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Copies `image` from the machine's shared engine into this daemon (`docker save | docker load`).
    pub fn load_image(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("running docker save");
        let load = self
            .docker()
            .args(["load", "--quiet"])
            .stdin(save.stdout.take().expect("docker save's output"))
            .output()
            .expect("running docker load");
        let saved = save.wait().expect("waiting for docker save");
        assert!(
            saved.success() && load.status.success(),
            "copying {image} into the private dockerd failed (save: {saved}, load: {}): {}; \
             build the image with `cargo xtask images`",
            load.status,
            String::from_utf8_lossy(&load.stderr).trim()
        );
    }
}

impl Default for Dockerd {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        // A daemon killed or stopped half-way can leave its containers' layers, its netns files and shm mounts.
        unmount_under(self.root.path());
    }
}

/// Unmounts (lazily) every mount point under `folder`, the deepest first.
fn unmount_under(folder: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(folder))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    points.dedup();
    for point in points {
        let _ = Command::new("umount")
            .args(["--lazy", point])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
