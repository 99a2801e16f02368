//! `cargo xtask bench …`: measurements of skiff against its baseline, side by side in one run.
//!
//! Every benchmark drives the release binaries (built first unless `--debug`) in a throwaway skiff home,
//! on the example workspace `examples/hello`, against the real Docker engine, and prints a table.
//!
//! - `exec`: `skiff exec NAME true` against `docker exec CTR true` on the same container, alternating, in a Debian
//!   (glibc), an Alpine-style (musl) and a busybox (no C library) dev container.
//! - `footprint`: the release binaries' sizes and `skiffd`'s resident memory when idle.
//! - `idle-stop`: how late after the idle timeout the workspace stops.
//! - `soak`: simulated use with random gaps shorter than the timeout; counts false stops and watches RSS.
//! - `aws-list`: `skiff list` over 300 AWS workspaces against `aws ec2 describe-instances` with the same filter, on a
//!   moto server on 127.0.0.1; and the client's cold start, `skiff --version`.
//! - `up-restart`: `skiff up` of a built, stopped workspace against `docker start` plus `docker exec` of its postStartCommand.
//! - `start-on-connect`: a command on a stopped workspace (which starts it) against `skiff up` then the command.
//! - `ui`: `skiff ui`'s first full list of 20 local workspaces against `skiff list`, and its memory with the page open
//!   (`bench_ui`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{process, setup};

/// `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which benchmark.
    #[command(subcommand)]
    which: Which,
    /// Use the debug binaries instead of building release ones.
    #[arg(long, global = true)]
    debug: bool,
    /// A folder of an earlier build's binaries (`skiff`, `skiffd`, and its `skiff-procd`) measured in the same run
    /// beside this one's, for `exec`, `footprint` and `forward`: e.g. `target/release` of a worktree at the baseline commit.
    #[arg(long, global = true, value_name = "DIR")]
    baseline: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Which {
    /// Forward throughput: one connection moving a GiB, against raw loopback TCP and `ssh -L`; then 100
    /// connections at once with the agent's peak RSS.
    Forward {
        /// MiB moved by the single connection.
        #[arg(long, default_value_t = 1024)]
        mebibytes: u64,
        /// Concurrent connections in the second part.
        #[arg(long, default_value_t = 100)]
        connections: usize,
    },
    /// `skiff exec NAME true` against `docker exec CTR true`, alternating.
    Exec {
        /// Runs of each.
        #[arg(long, default_value_t = 50)]
        runs: usize,
    },
    /// Release binary sizes and the agent's idle memory.
    Footprint,
    /// How late after the idle timeout a workspace stops.
    IdleStop {
        /// How many stops to measure.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The idle timeout, in seconds.
        #[arg(long, default_value_t = 2)]
        timeout: u64,
    },
    /// `skiff list` over 300 AWS workspaces against `aws ec2 describe-instances`, on moto; `skiff --version`.
    AwsList {
        /// Runs of each.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// How many workspaces to list.
        #[arg(long, default_value_t = 300)]
        workspaces: usize,
    },
    /// Simulated use with random gaps shorter than the idle timeout.
    Soak {
        /// How long, in minutes.
        #[arg(long, default_value_t = 30)]
        minutes: u64,
        /// The idle timeout, in seconds; gaps are up to 90% of it.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// `skiff exec NAME true` on a stopped workspace (start on connect) against `skiff up` then `skiff exec`.
    StartOnConnect {
        /// Starts of each.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// `skiff ui`: start to the first full list against `skiff list`, and its memory after minutes with the page open.
    Ui {
        /// Local workspaces up.
        #[arg(long, default_value_t = 20)]
        workspaces: usize,
        /// Runs of each.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Minutes the page stays open for the memory figure.
        #[arg(long, default_value_t = 10)]
        minutes: u64,
    },
    /// `skiff up` of a built, stopped workspace against `docker start` + `docker exec` of its postStartCommand.
    UpRestart {
        /// Restarts of each.
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let binaries = binaries(args.debug)?;
    let baseline = args.baseline.as_deref();
    if let Some(baseline) = baseline {
        for name in ["skiff", "skiffd"] {
            if !baseline.join(name).is_file() {
                bail!(
                    "--baseline {}: {name} is not there; build the baseline commit (`cargo build --release --workspace --bins` in a worktree of it) and pass its target/release",
                    baseline.display()
                );
            }
        }
    }
    match &args.which {
        Which::Exec { runs } => exec(&binaries, *runs, baseline),
        Which::Forward {
            mebibytes,
            connections,
        } => crate::bench_forward::run(&binaries, *mebibytes, *connections, baseline),
        Which::Footprint => footprint(&binaries, baseline),
        Which::IdleStop { runs, timeout } => idle_stop(&binaries, *runs, *timeout),
        Which::Soak { minutes, timeout } => soak(&binaries, *minutes, *timeout),
        Which::AwsList { runs, workspaces } => aws_list(&binaries, *runs, *workspaces),
        Which::UpRestart { runs } => up_restart(&binaries, *runs),
        Which::StartOnConnect { runs } => start_on_connect(&binaries, *runs),
        Which::Ui {
            workspaces,
            runs,
            minutes,
        } => crate::bench_ui::run(&binaries, *workspaces, *runs, *minutes),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_owned()
}

/// Builds (unless `debug`) and finds the binaries, with the static process server beside the agent.
fn binaries(debug: bool) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let profile = if debug { "debug" } else { "release" };
    if !debug {
        let mut cargo = process::cargo(&root);
        cargo.args(["build", "--release", "--workspace", "--bins"]);
        eprintln!("==> {}", process::display(&cargo));
        let status = cargo.status().context("running cargo build")?;
        if !status.success() {
            bail!("the release build failed");
        }
    }
    crate::static_procd::build(&root, !debug)?;
    let folder = root.join("target").join(profile);
    for name in ["skiff", "skiffd"] {
        if !folder.join(name).is_file() {
            bail!("{} is missing; build it first", folder.join(name).display());
        }
    }
    Ok(folder)
}

/// A throwaway skiff home with the example workspace up.
pub(crate) struct Bench {
    pub(crate) home: tempfile::TempDir,
    binaries: PathBuf,
    pub(crate) name: String,
    pub(crate) project: PathBuf,
}

impl Bench {
    pub(crate) fn new(binaries: &Path, name: &str, up_args: &[&str]) -> anyhow::Result<Self> {
        let home = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
        let project = home.path().join(name);
        copy_tree(&workspace_root().join("examples/hello"), &project)?;
        let bench = Self {
            home,
            binaries: binaries.to_owned(),
            name: name.to_owned(),
            project,
        };
        let mut args = vec!["up"];
        args.extend_from_slice(up_args);
        let project = bench.project.display().to_string();
        args.push(&project);
        process::output(&mut bench.skiff(&args)).context("skiff up of the example")?;
        Ok(bench)
    }

    pub(crate) fn skiff(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.binaries.join("skiff"));
        command
            .args(args)
            .env("SKIFF_HOME", self.home.path().join("home"))
            .env("SKIFF_AGENT_BINARY", self.binaries.join("skiffd"))
            .stdin(Stdio::null());
        command
    }

    pub(crate) fn container(&self) -> anyhow::Result<String> {
        let status = process::output(&mut self.skiff(&["status", &self.name, "--json"]))?;
        let marker = "\"container_id\": \"";
        let start = status.find(marker).context("status has a container id")? + marker.len();
        let end = status[start..].find('"').context("a quoted id")? + start;
        Ok(status[start..end].to_owned())
    }

    pub(crate) fn agent_pid(&self) -> anyhow::Result<u32> {
        let config = self
            .home
            .path()
            .join("home/workspaces")
            .join(&self.name)
            .join("skiffd.toml");
        let output = process::output(
            Command::new("pgrep").args(["-f", &format!("skiffd --config {}", config.display())]),
        )?;
        output
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .context("the agent is running")
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.skiff(&["delete", "--yes", &self.name]).output();
    }
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

fn time(command: &mut Command) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    let elapsed = started.elapsed();
    if !status.success() {
        bail!("{} failed with {status}", process::display(command));
    }
    Ok(elapsed)
}

fn percentile(sorted: &[Duration], percent: usize) -> Duration {
    let index = (sorted.len() * percent).div_ceil(100).saturating_sub(1);
    sorted[index.min(sorted.len() - 1)]
}

fn milliseconds(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The images `bench exec` runs in: one per kind of C library a dev container may have, since the process
/// server has to run in each (a glibc-linked one fails where glibc's loader is missing, and every command then
/// falls back to `docker exec`).
const EXEC_IMAGES: &[(&str, &str)] = &[
    ("Debian (glibc)", "debian:bookworm"),
    ("Alpine-style (musl)", MUSL_IMAGE),
    ("busybox (no libc)", BUSYBOX_IMAGE),
];

/// busybox with musl's dynamic loader and a program linked against it, laid out as Alpine has them; made by
/// [`bench_images`].
const MUSL_IMAGE: &str = "skiff-bench/musl:1";
/// The static busybox and no C library at all, with the account files `remoteUser: root` needs.
const BUSYBOX_IMAGE: &str = "skiff-bench/busybox:1";

/// Builds [`MUSL_IMAGE`] and [`BUSYBOX_IMAGE`] from `cargo xtask images`' busybox image (Docker's cache makes
/// a rebuild of an unchanged one instant). The musl side needs Debian's `musl-tools`: its `musl-gcc` links the
/// image's musl program, and its `musl` dependency brings the loader.
fn bench_images() -> anyhow::Result<()> {
    const ACCOUNTS: &str = "RUN mkdir -p /etc /root /tmp && chmod 1777 /tmp && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd && echo 'root:x:0:' > /etc/group\n";
    let arch = std::env::consts::ARCH;
    let loader = format!("ld-musl-{arch}.so.1");
    let musl_gcc = process::find_program("musl-gcc").context(
        "bench exec's musl image needs musl-gcc and musl's loader: `apt-get install -y musl-tools`",
    )?;
    let loader_path = Path::new("/lib").join(&loader);
    if !loader_path.is_file() {
        bail!(
            "{} is missing: `apt-get install -y musl`",
            loader_path.display()
        );
    }
    let context = tempfile::Builder::new()
        .prefix("skiff-bench-images-")
        .tempdir()?;
    std::fs::write(
        context.path().join("true.c"),
        "int main(void) { return 0; }\n",
    )?;
    process::output(Command::new(musl_gcc).current_dir(context.path()).args([
        "-O2",
        "-o",
        "musl-true",
        "true.c",
    ]))?;
    std::fs::copy(&loader_path, context.path().join(&loader))?;
    let dockerfiles = [
        (
            BUSYBOX_IMAGE,
            format!("FROM skiff-test/busybox:1\n{ACCOUNTS}"),
        ),
        (
            MUSL_IMAGE,
            format!(
                "FROM skiff-test/busybox:1\n{ACCOUNTS}COPY {loader} /lib/{loader}\n\
                 RUN [\"/bin/busybox\", \"ln\", \"-s\", \"{loader}\", \"/lib/libc.musl-{arch}.so.1\"]\n\
                 COPY musl-true /usr/bin/musl-true\n\
                 RUN [\"/usr/bin/musl-true\"]\n"
            ),
        ),
    ];
    for (tag, dockerfile) in dockerfiles {
        std::fs::write(context.path().join("Dockerfile"), dockerfile)?;
        process::output(
            Command::new("docker")
                .env("DOCKER_BUILDKIT", "0")
                .args(["build", "--force-rm", "--tag", tag])
                .arg(context.path()),
        )
        .with_context(|| {
            format!(
                "building {tag} (it starts from skiff-test/busybox:1: run `cargo xtask images`)"
            )
        })?;
    }
    Ok(())
}

/// A project whose dev container is `image`, as root.
fn image_project(binaries: &Path, name: &str, image: &str) -> anyhow::Result<Bench> {
    let home = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
    let project = home.path().join(name);
    std::fs::create_dir_all(project.join(".devcontainer"))?;
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(r#"{{"image": "{image}", "remoteUser": "root"}}"#),
    )?;
    let bench = Bench {
        home,
        binaries: binaries.to_owned(),
        name: name.to_owned(),
        project,
    };
    let project = bench.project.display().to_string();
    process::output(&mut bench.skiff(&["up", &project]))
        .with_context(|| format!("skiff up of a dev container of {image}"))?;
    Ok(bench)
}

/// Whether the process server runs in `container` (else every command went through `docker exec`).
fn process_server_runs(container: &str) -> anyhow::Result<bool> {
    let top = process::output(Command::new("docker").args(["top", container]))?;
    Ok(top.contains("/.skiff/skiff-procd"))
}

fn exec(binaries: &Path, runs: usize, baseline: Option<&Path>) -> anyhow::Result<()> {
    bench_images()?;
    println!("exec of `true`, {runs} runs each, alternating, same container");
    println!(
        "{:<33} {:>7} {:>10} {:>10} {:>10} {:>10} {:>7} {:>7}",
        "image",
        "procd",
        "skiff p50",
        "skiff p95",
        "docker p50",
        "docker p95",
        "ratio50",
        "ratio95"
    );
    let builds: Vec<(&str, &Path)> = std::iter::once(("", binaries))
        .chain(baseline.map(|baseline| (" (baseline)", baseline)))
        .collect();
    for ((index, (label, image)), (build, binaries)) in EXEC_IMAGES
        .iter()
        .enumerate()
        .flat_map(|image| builds.iter().map(move |build| (image, *build)))
    {
        let label = format!("{label}{build}");
        let bench = image_project(
            binaries,
            &format!("bench-exec-{index}{}", build.len()),
            image,
        )?;
        let container = bench.container()?;
        let mut skiff_times = Vec::new();
        let mut docker_times = Vec::new();
        // Warm both paths (the agent's connection to Docker, the page cache) before measuring.
        for _ in 0..3 {
            time(&mut bench.skiff(&["exec", &bench.name, "--", "true"]))?;
            time(Command::new("docker").args(["exec", &container, "true"]))?;
        }
        for _ in 0..runs {
            skiff_times.push(time(&mut bench.skiff(&[
                "exec",
                &bench.name,
                "--",
                "true",
            ]))?);
            docker_times.push(time(
                Command::new("docker").args(["exec", &container, "true"]),
            )?);
        }
        let procd = if process_server_runs(&container)? {
            "yes"
        } else {
            "no"
        };
        skiff_times.sort();
        docker_times.sort();
        let (skiff_p50, skiff_p95) = (percentile(&skiff_times, 50), percentile(&skiff_times, 95));
        let (docker_p50, docker_p95) =
            (percentile(&docker_times, 50), percentile(&docker_times, 95));
        println!(
            "{label:<33} {procd:>7} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>7.2} {:>7.2}",
            milliseconds(skiff_p50),
            milliseconds(skiff_p95),
            milliseconds(docker_p50),
            milliseconds(docker_p95),
            skiff_p50.as_secs_f64() / docker_p50.as_secs_f64(),
            skiff_p95.as_secs_f64() / docker_p95.as_secs_f64()
        );
    }
    println!(
        "(skiff exec NAME true against docker exec CTR true; procd: the process server ran in the container)"
    );
    Ok(())
}

pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")
}

/// One build's footprint: binary sizes (MiB) and `skiffd`'s resident memory (MiB) after `up` and when idle.
struct Footprint {
    skiff: f64,
    skiffd: f64,
    rss_after_up: f64,
    rss_idle: f64,
}

fn measure_footprint(binaries: &Path, name: &str) -> anyhow::Result<Footprint> {
    let size = |name: &str| -> anyhow::Result<f64> {
        #[expect(
            clippy::cast_precision_loss,
            reason = "binary sizes fit f64 exactly enough for MiB"
        )]
        Ok(std::fs::metadata(binaries.join(name))?.len() as f64 / (1024.0 * 1024.0))
    };
    let bench = Bench::new(binaries, name, &[])?;
    let pid = bench.agent_pid()?;
    let after_up = rss_kib(pid)?;
    for _ in 0..20 {
        time(&mut bench.skiff(&["exec", &bench.name, "--", "true"]))?;
    }
    std::thread::sleep(Duration::from_secs(5));
    let idle = rss_kib(pid)?;
    Ok(Footprint {
        skiff: size("skiff")?,
        skiffd: size("skiffd")?,
        rss_after_up: after_up as f64 / 1024.0,
        rss_idle: idle as f64 / 1024.0,
    })
}

fn footprint(binaries: &Path, baseline: Option<&Path>) -> anyhow::Result<()> {
    let this = measure_footprint(binaries, "bench-footprint")?;
    let before = baseline
        .map(|baseline| measure_footprint(baseline, "bench-footprint-baseline"))
        .transpose()?;
    println!("this build: {}", binaries.display());
    if let Some(baseline) = baseline {
        println!("baseline:   {}", baseline.display());
    }
    println!(
        "{:<34} {:>10} {:>10} {:>7}",
        "MiB", "this", "baseline", "ratio"
    );
    let rows = [
        ("skiff (file)", this.skiff, before.as_ref().map(|b| b.skiff)),
        (
            "skiffd (file)",
            this.skiffd,
            before.as_ref().map(|b| b.skiffd),
        ),
        (
            "skiffd RSS after up",
            this.rss_after_up,
            before.as_ref().map(|b| b.rss_after_up),
        ),
        (
            "skiffd RSS idle (20 execs, 5 s)",
            this.rss_idle,
            before.as_ref().map(|b| b.rss_idle),
        ),
    ];
    for (label, value, baseline) in rows {
        match baseline {
            Some(baseline) => println!(
                "{label:<34} {value:>10.1} {baseline:>10.1} {:>7.2}",
                value / baseline
            ),
            None => println!("{label:<34} {value:>10.1} {:>10} {:>7}", "-", "-"),
        }
    }
    crate_breakdown()
}

/// How many of the largest crates [`crate_breakdown`] lists per binary.
const BREAKDOWN_ROWS: usize = 14;

/// Where each binary's bytes are, by crate: the release binaries are stripped, so this reads the symbol table of
/// the debug ones (`nm`); their code is less optimised, so the shares are a guide to what weighs, not release
/// figures. Skipped (with a note) when the debug binaries are missing.
fn crate_breakdown() -> anyhow::Result<()> {
    let folder = workspace_root().join("target/debug");
    for name in ["skiff", "skiffd"] {
        let binary = folder.join(name);
        if !binary.is_file() {
            println!(
                "(no per-crate breakdown: {} is missing; `cargo build --workspace --bins` makes it)",
                binary.display()
            );
            return Ok(());
        }
        let symbols = process::output(
            Command::new("nm")
                .args(["--print-size", "--radix=d", "--demangle"])
                .arg(&binary),
        )
        .context("nm (binutils) lists the symbols")?;
        let mut by_crate = std::collections::BTreeMap::<String, u64>::new();
        let mut total = 0;
        for line in symbols.lines() {
            // VALUE SIZE TYPE NAME; only symbols with a size, in the code or data sections.
            let mut fields = line.splitn(4, ' ');
            let (Some(_), Some(size), Some(kind), Some(symbol)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(size) = size.parse::<u64>() else {
                continue;
            };
            if !matches!(
                kind,
                "t" | "T" | "r" | "R" | "d" | "D" | "b" | "B" | "W" | "V"
            ) {
                continue;
            }
            *by_crate.entry(crate_of(symbol)).or_default() += size;
            total += size;
        }
        let mut rows: Vec<(String, u64)> = by_crate.into_iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1));
        println!(
            "{} by crate (symbols of the debug build, {:.1} MiB in all):",
            name,
            mebibytes(total)
        );
        for (krate, size) in rows.iter().take(BREAKDOWN_ROWS) {
            println!("  {krate:<30} {:>6.2} MiB", mebibytes(*size));
        }
    }
    Ok(())
}

#[expect(
    clippy::cast_precision_loss,
    reason = "binary sizes fit f64 exactly enough for MiB"
)]
fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The crate a demangled symbol belongs to: its path's first segment, looking through `<T as Trait>`, `&`,
/// `dyn` and the standard library's generic shells (`drop_in_place<T>`) to the type they are for; symbols
/// without a path (C code: ring's and zstd's, the C library) are `[C]`.
pub(crate) fn crate_of(symbol: &str) -> String {
    let mut rest = symbol.trim();
    loop {
        let before = rest;
        for prefix in ["<", "&", "mut ", "dyn ", "core::ptr::drop_in_place<"] {
            rest = rest.strip_prefix(prefix).unwrap_or(rest);
        }
        if rest == before {
            break;
        }
    }
    match rest.split_once("::") {
        Some((head, _))
            if !head.is_empty() && head.chars().all(|c| c.is_alphanumeric() || c == '_') =>
        {
            head.to_owned()
        }
        _ => "[C]".to_owned(),
    }
}

fn is_running(container: &str) -> bool {
    Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", container])
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "true")
}

fn idle_stop(binaries: &Path, runs: usize, timeout: u64) -> anyhow::Result<()> {
    let timeout_text = format!("{timeout}s");
    let bench = Bench::new(binaries, "bench-idle", &["--idle-timeout", &timeout_text])?;
    let mut late = Vec::new();
    for run in 0..runs {
        if run > 0 {
            let project = bench.project.display().to_string();
            process::output(&mut bench.skiff(&["up", &project]))?;
        }
        let ready = Instant::now();
        let container = bench.container()?;
        let deadline = ready + Duration::from_secs(timeout + 30);
        while is_running(&container) {
            if Instant::now() > deadline {
                bail!("the workspace did not stop within 30 s of the timeout");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        late.push(ready.elapsed().saturating_sub(Duration::from_secs(timeout)));
    }
    late.sort();
    println!(
        "idle stop with a {timeout} s timeout, {runs} runs: late by p50 {:.0} ms, max {:.0} ms (includes stopping the container)",
        milliseconds(percentile(&late, 50)),
        milliseconds(*late.last().expect("at least one run"))
    );
    Ok(())
}

fn soak(binaries: &Path, minutes: u64, timeout: u64) -> anyhow::Result<()> {
    let timeout_text = format!("{timeout}s");
    let bench = Bench::new(binaries, "bench-soak", &["--idle-timeout", &timeout_text])?;
    let container = bench.container()?;
    let pid = bench.agent_pid()?;
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let mut seed: u64 = 0x5eed_cafe;
    let mut next = move || {
        // xorshift: enough randomness for gaps, with no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut false_stops = 0;
    let mut actions = 0;
    let mut rss = vec![rss_kib(pid)?];
    let mut last_sample = Instant::now();
    while Instant::now() < end {
        let gap_ms = next() % (timeout * 900);
        std::thread::sleep(Duration::from_millis(gap_ms));
        if !is_running(&container) {
            false_stops += 1;
            eprintln!("false stop after {:?}", started.elapsed());
            let project = bench.project.display().to_string();
            process::output(&mut bench.skiff(&["up", &project]))?;
        }
        let action = next() % 3;
        let mut command = match action {
            0 => bench.skiff(&["exec", &bench.name, "--", "true"]),
            1 => bench.skiff(&["exec", &bench.name, "--", "sleep", "1"]),
            _ => bench.skiff(&[
                "exec",
                &bench.name,
                "--",
                "sh",
                "-c",
                "head -c 65536 /dev/zero | wc -c",
            ]),
        };
        time(&mut command)?;
        actions += 1;
        if last_sample.elapsed() >= Duration::from_secs(60) {
            rss.push(rss_kib(pid)?);
            last_sample = Instant::now();
            eprintln!(
                "{:>4} min: {actions} actions, {false_stops} false stops, RSS {} KiB",
                started.elapsed().as_secs() / 60,
                rss.last().unwrap()
            );
        }
    }
    rss.push(rss_kib(pid)?);
    let (min, max) = (rss.iter().min().unwrap(), rss.iter().max().unwrap());
    println!(
        "soak: {minutes} min, idle timeout {timeout} s, {actions} actions with gaps up to 90% of it: {false_stops} false stops; \
         skiffd RSS first {} KiB, last {} KiB, min {min} KiB, max {max} KiB",
        rss[0],
        rss.last().unwrap()
    );
    if false_stops > 0 {
        bail!("{false_stops} false stops");
    }
    Ok(())
}

/// The postStartCommand of the `up-restart` workspace; both sides run exactly this after the container starts.
const UP_RESTART_POST_START: &str = "date +%s%N > /tmp/post-start";

/// `skiff up` on a workspace whose container exists and is stopped, against what it stands for with plain Docker:
/// `docker start` and `docker exec` of the postStartCommand. The container is stopped with `docker stop` before each run
/// of either, so the agent stays up, as it does under systemd on an instance.
fn up_restart(binaries: &Path, runs: usize) -> anyhow::Result<()> {
    let home = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
    let name = "bench-up-restart".to_owned();
    let project = home.path().join(&name);
    std::fs::create_dir_all(project.join(".devcontainer"))?;
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(
            r#"{{"image": "debian:bookworm", "remoteUser": "root", "postStartCommand": "{UP_RESTART_POST_START}"}}"#
        ),
    )?;
    let bench = Bench {
        home,
        binaries: binaries.to_owned(),
        name,
        project,
    };
    let project_arg = bench.project.display().to_string();
    process::output(&mut bench.skiff(&["up", &project_arg])).context("the first skiff up")?;
    let container = bench.container()?;
    let stop = || -> anyhow::Result<()> {
        process::output(Command::new("docker").args(["stop", "-t", "10", &container]))?;
        Ok(())
    };
    let docker_restart = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        process::output(Command::new("docker").args(["start", &container]))?;
        process::output(Command::new("docker").args([
            "exec",
            &container,
            "/bin/sh",
            "-c",
            UP_RESTART_POST_START,
        ]))?;
        Ok(started.elapsed())
    };
    // One warm-up of each, so the page cache and the agent's connection to Docker are warm for both.
    stop()?;
    time(&mut bench.skiff(&["up", &project_arg]))?;
    stop()?;
    docker_restart()?;
    let mut skiff_times = Vec::new();
    let mut docker_times = Vec::new();
    for _ in 0..runs {
        stop()?;
        skiff_times.push(time(&mut bench.skiff(&["up", &project_arg]))?);
        stop()?;
        docker_times.push(docker_restart()?);
    }
    skiff_times.sort();
    docker_times.sort();
    let (skiff_p50, skiff_p95) = (percentile(&skiff_times, 50), percentile(&skiff_times, 95));
    let (docker_p50, docker_p95) = (percentile(&docker_times, 50), percentile(&docker_times, 95));
    println!(
        "restart of a built, stopped workspace, {runs} runs each, alternating, same container"
    );
    println!("{:<40} {:>10} {:>10}", "", "p50 ms", "p95 ms");
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        "skiff up PATH",
        milliseconds(skiff_p50),
        milliseconds(skiff_p95)
    );
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        "docker start + docker exec postStart",
        milliseconds(docker_p50),
        milliseconds(docker_p95)
    );
    println!(
        "{:<40} {:>10.2} {:>10.2}",
        "ratio skiff/docker",
        skiff_p50.as_secs_f64() / docker_p50.as_secs_f64(),
        skiff_p95.as_secs_f64() / docker_p95.as_secs_f64()
    );
    Ok(())
}

/// A stopped workspace, as `skiff stop` and the idle stop both leave a local one (its dev container stopped and its
/// agent ended), brought back by the command that uses it, against the two commands a user ran before start on
/// connect: `skiff up PATH` then the command. The command is `skiff exec NAME true`, the same connection and
/// start as `skiff ssh` up to its prompt, without a terminal to drive.
fn start_on_connect(binaries: &Path, runs: usize) -> anyhow::Result<()> {
    let home = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
    let name = "bench-start-on-connect".to_owned();
    let project = home.path().join(&name);
    std::fs::create_dir_all(project.join(".devcontainer"))?;
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(
            r#"{{"image": "debian:bookworm", "remoteUser": "root", "postStartCommand": "{UP_RESTART_POST_START}"}}"#
        ),
    )?;
    let bench = Bench {
        home,
        binaries: binaries.to_owned(),
        name,
        project,
    };
    let project_arg = bench.project.display().to_string();
    process::output(&mut bench.skiff(&["up", &project_arg])).context("the first skiff up")?;
    let stop = || -> anyhow::Result<()> {
        process::output(&mut bench.skiff(&["stop", &bench.name]))?;
        Ok(())
    };
    let exec = || bench.skiff(&["exec", &bench.name, "--", "true"]);
    let up_then_exec = || -> anyhow::Result<Duration> {
        Ok(time(&mut bench.skiff(&["up", &project_arg]))? + time(&mut exec())?)
    };
    // One warm-up of each.
    stop()?;
    time(&mut exec())?;
    stop()?;
    up_then_exec()?;
    let mut connect_times = Vec::new();
    let mut up_times = Vec::new();
    for _ in 0..runs {
        stop()?;
        connect_times.push(time(&mut exec())?);
        stop()?;
        up_times.push(up_then_exec()?);
    }
    connect_times.sort();
    up_times.sort();
    let (connect_p50, connect_p95) = (
        percentile(&connect_times, 50),
        percentile(&connect_times, 95),
    );
    let (up_p50, up_p95) = (percentile(&up_times, 50), percentile(&up_times, 95));
    println!(
        "a stopped local workspace to its first command, {runs} runs each, alternating, same container"
    );
    println!("{:<40} {:>10} {:>10}", "", "p50 ms", "p95 ms");
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        "skiff exec (starts it)",
        milliseconds(connect_p50),
        milliseconds(connect_p95)
    );
    println!(
        "{:<40} {:>10.1} {:>10.1}",
        "skiff up, then skiff exec",
        milliseconds(up_p50),
        milliseconds(up_p95)
    );
    println!(
        "{:<40} {:>10.2} {:>10.2}",
        "ratio start-on-connect/up+exec",
        connect_p50.as_secs_f64() / up_p50.as_secs_f64(),
        connect_p95.as_secs_f64() / up_p95.as_secs_f64()
    );
    Ok(())
}

/// The program `name` of the python tools' environment (see [`setup::ensure_python_tools`]).
fn python_tool(name: &str) -> PathBuf {
    setup::venv_bin(&workspace_root()).join(name)
}

/// A moto server on a free loopback port, with the test AMIs; stopped when dropped.
struct MotoServer {
    child: std::process::Child,
    endpoint: String,
    _folder: tempfile::TempDir,
}

impl MotoServer {
    fn start() -> anyhow::Result<Self> {
        let folder = tempfile::Builder::new()
            .prefix("skiff-bench-moto-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(python_tool("python3"))
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env(
                "MOTO_AMIS_PATH",
                workspace_root().join("tests/fixtures/aws/amis.json"),
            )
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .current_dir(folder.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto from the python tools' environment")?;
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            _folder: folder,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "moto did not listen on {} within 30 s; is `moto[server]` installed?",
                    server.endpoint
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(server)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The environment that sends every AWS call to `endpoint` with dummy credentials, and nowhere else.
fn aws_environment(command: &mut Command, endpoint: &str, region: &str, aws_config: &Path) {
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", region)
        .env("AWS_DEFAULT_REGION", region)
        .env("SKIFF_AWS_REGION", region)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", aws_config)
        .env("AWS_SHARED_CREDENTIALS_FILE", aws_config)
        .env_remove("AWS_PROFILE");
}

fn aws_list(binaries: &Path, runs: usize, workspaces: usize) -> anyhow::Result<()> {
    const REGION: &str = "eu-west-1";
    // The `aws:userid` moto gives the test credentials: skiff's `skiff:owner` (it was the ARN once, which left
    // `skiff list` finding none of the seeded workspaces).
    const OWNER: &str = "AKIAIOSFODNN7EXAMPLE";
    // moto and the AWS CLI at the versions the tests pin, in their own environment.
    setup::ensure_python_tools(&workspace_root(), false)?;
    let moto = MotoServer::start()?;
    let home = tempfile::Builder::new()
        .prefix("skiff-bench-aws-")
        .tempdir()?;
    let aws_config = home.path().join("aws-config");
    std::fs::write(&aws_config, "")?;
    eprintln!(
        "==> seeding {workspaces} workspaces (one RunInstances each) into moto at {}",
        moto.endpoint
    );
    process::output(
        Command::new(python_tool("python3")).args([
            &workspace_root()
                .join("tests/fixtures/aws/moto.py")
                .display()
                .to_string(),
            &moto.endpoint,
            REGION,
            "seed",
            &workspaces.to_string(),
            OWNER,
            "ws-",
            "ami-0a0b0c0d0e0f0002",
        ]),
    )?;
    let skiff = || {
        let mut command = Command::new(binaries.join("skiff"));
        command
            .args(["list", "--json"])
            .env("SKIFF_HOME", home.path().join("home"))
            .stdin(Stdio::null());
        aws_environment(&mut command, &moto.endpoint, REGION, &aws_config);
        command
    };
    let filters = [
        "Name=tag-key,Values=skiff:workspace".to_owned(),
        format!("Name=tag:skiff:owner,Values={OWNER}"),
        "Name=instance-state-name,Values=pending,running,stopping,stopped".to_owned(),
    ];
    let cli = || {
        let mut command = Command::new(python_tool("aws"));
        command
            .args([
                "ec2",
                "describe-instances",
                "--endpoint-url",
                &moto.endpoint,
                "--output",
                "json",
                "--filters",
            ])
            .args(&filters)
            .stdin(Stdio::null());
        aws_environment(&mut command, &moto.endpoint, REGION, &aws_config);
        command
    };
    // Both must see every workspace before their times mean anything.
    let listed = process::output(&mut skiff())?;
    let rows = listed.matches("\"instance_id\"").count();
    let described =
        process::output(&mut cli()).context("the AWS CLI of the python tools' environment")?;
    let instances = described.matches("\"InstanceId\"").count();
    if rows != workspaces || instances != workspaces {
        bail!("skiff listed {rows} and the AWS CLI {instances} of {workspaces} workspaces");
    }
    for _ in 0..2 {
        time(&mut skiff())?;
        time(&mut cli())?;
    }
    let mut skiff_times = Vec::new();
    let mut cli_times = Vec::new();
    for _ in 0..runs {
        skiff_times.push(time(&mut skiff())?);
        cli_times.push(time(&mut cli())?);
    }
    let mut version_times = Vec::new();
    for _ in 0..runs {
        version_times.push(time(Command::new(binaries.join("skiff")).arg("--version"))?);
    }
    skiff_times.sort();
    cli_times.sort();
    version_times.sort();
    println!(
        "{workspaces} AWS workspaces on moto (3 pages of 100 reservations), {runs} runs each, alternating"
    );
    println!("{:<44} {:>10} {:>10}", "", "p50 ms", "p95 ms");
    for (label, times) in [
        ("skiff list --json", &skiff_times),
        ("aws ec2 describe-instances (same filter)", &cli_times),
        ("skiff --version (cold start)", &version_times),
    ] {
        println!(
            "{label:<44} {:>10.1} {:>10.1}",
            milliseconds(percentile(times, 50)),
            milliseconds(percentile(times, 95))
        );
    }
    println!(
        "{:<44} {:>10.2} {:>10.2}",
        "ratio skiff list / aws cli",
        percentile(&skiff_times, 50).as_secs_f64() / percentile(&cli_times, 50).as_secs_f64(),
        percentile(&skiff_times, 95).as_secs_f64() / percentile(&cli_times, 95).as_secs_f64()
    );
    Ok(())
}
