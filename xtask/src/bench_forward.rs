//! `cargo xtask bench forward`: the throughput of `skiff forward` against raw loopback TCP and against
//! `ssh -L` through a local OpenSSH server (the real peer, also encrypted), on one connection moving a
//! GiB; then many connections at once, with their aggregate throughput and the agent's peak memory.
//!
//! Every path ends at the same sink (`skiff-test-echo --sink`), which counts the bytes and says how many
//! arrived, so a path that loses data fails the benchmark. The `ssh -L` part needs `sshd`
//! (`apt-get install openssh-server openssh-client`); without it that row says so.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::bench::{Bench, rss_kib};
use crate::process;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for(port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(20) {
            bail!("nothing listens on 127.0.0.1:{port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Sends `bytes` through 127.0.0.1:`port` to a sink and returns the time until the sink confirmed them all.
fn push(port: u16, bytes: u64) -> anyhow::Result<Duration> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let chunk = vec![0x5au8; 256 * 1024];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let now = left.min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..now])?;
        left -= now as u64;
    }
    stream.shutdown(Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let elapsed = started.elapsed();
    let arrived: u64 = answer
        .trim()
        .parse()
        .with_context(|| format!("the sink answered {answer:?}"))?;
    if arrived != bytes {
        bail!("{arrived} of {bytes} bytes arrived");
    }
    Ok(elapsed)
}

fn mib_per_second(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64()
}

/// What one build's `skiff forward` did: one connection moving the bytes, then many at once.
struct Forwarded {
    one: Duration,
    many: Duration,
    peak_rss_mib: f64,
}

pub fn run(
    binaries: &Path,
    mebibytes: u64,
    connections: usize,
    baseline: Option<&Path>,
) -> anyhow::Result<()> {
    let bytes = mebibytes * 1024 * 1024;
    let each = (64 * 1024 * 1024).min(bytes);
    let sink_binary = binaries.join("skiff-test-echo");

    // Raw loopback: the same sink on this machine.
    let raw_port = free_port()?;
    let _raw_sink = Killed(
        Command::new(&sink_binary)
            .args(["--sink", &format!("127.0.0.1:{raw_port}")])
            .spawn()
            .context("starting the loopback sink")?,
    );
    wait_for(raw_port)?;
    let raw = push(raw_port, bytes)?;

    let (this, ssh) = forward(binaries, "bench-forward", bytes, each, connections, true)?;
    let before = baseline
        .map(|baseline| {
            forward(
                baseline,
                "bench-forward-baseline",
                bytes,
                each,
                connections,
                false,
            )
            .map(|(forwarded, _)| forwarded)
        })
        .transpose()?;

    println!(
        "one connection moving {mebibytes} MiB to a sink in the dev container (raw: a sink on loopback)"
    );
    println!(
        "{:<28} {:>10} {:>10} {:>14}",
        "path", "seconds", "MiB/s", "vs ssh -L"
    );
    let row = |name: &str, elapsed: Duration| {
        let versus = ssh.map_or_else(
            || "-".to_owned(),
            |ssh| format!("{:.2}x", ssh.as_secs_f64() / elapsed.as_secs_f64()),
        );
        println!(
            "{name:<28} {:>10.2} {:>10.0} {versus:>14}",
            elapsed.as_secs_f64(),
            mib_per_second(bytes, elapsed)
        );
    };
    row("raw loopback TCP", raw);
    if let Some(ssh) = ssh {
        row("ssh -L (OpenSSH)", ssh);
    }
    row("skiff forward", this.one);
    if let Some(before) = &before {
        row("skiff forward (baseline)", before.one);
        println!(
            "this build's forward takes {:.2}x the baseline's time",
            this.one.as_secs_f64() / before.one.as_secs_f64()
        );
    }
    println!(
        "skiff forward reaches {:.0}% of raw loopback",
        raw.as_secs_f64() / this.one.as_secs_f64() * 100.0
    );
    let many = |label: &str, forwarded: &Forwarded| {
        println!(
            "{label}: {connections} connections at once, {} MiB each: {:.0} MiB/s in all, {:.1} s; skiffd peak RSS {:.1} MiB",
            each / (1024 * 1024),
            mib_per_second(each * connections as u64, forwarded.many),
            forwarded.many.as_secs_f64(),
            forwarded.peak_rss_mib
        );
    };
    many("this build", &this);
    if let Some(before) = &before {
        many("baseline", before);
    }
    Ok(())
}

/// Brings the example up with `binaries`, starts the sink in its dev container, and forwards to it: one
/// connection moving `bytes`, then `connections` at once moving `each`. With `with_ssh`, also `ssh -L` to the
/// same sink, through a local OpenSSH server.
fn forward(
    binaries: &Path,
    name: &str,
    bytes: u64,
    each: u64,
    connections: usize,
    with_ssh: bool,
) -> anyhow::Result<(Forwarded, Option<Duration>)> {
    let bench = Bench::new(binaries, name, &[])?;
    std::fs::copy(
        binaries.join("skiff-test-echo"),
        bench.project.join("skiff-test-echo"),
    )
    .context("copying the sink")?;
    process::output(&mut bench.skiff(&[
        "exec",
        &bench.name,
        "--",
        "sh",
        "-c",
        "nohup ./skiff-test-echo --sink 0.0.0.0:7000 >/dev/null 2>&1 &",
    ]))?;
    let container = bench.container()?;
    let container_ip = process::output(Command::new("docker").args([
        "inspect",
        "--format",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &container,
    ]))?
    .trim()
    .to_owned();

    let skiff_port = free_port()?;
    let _forward = Killed(
        bench
            .skiff(&["forward", &bench.name, &format!("{skiff_port}:7000")])
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(skiff_port)?;
    let one = push(skiff_port, bytes)?;

    let ssh = if with_ssh {
        match ssh_tunnel(&container_ip) {
            Ok((port, _guards)) => Some(push(port, bytes)?),
            Err(error) => {
                eprintln!("ssh -L row skipped: {error:#}");
                None
            }
        }
    } else {
        None
    };

    // Many connections at once.
    let agent = bench.agent_pid()?;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss_kib(agent)?));
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(rss) = rss_kib(agent) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let started = Instant::now();
    let threads: Vec<_> = (0..connections)
        .map(|_| std::thread::spawn(move || push(skiff_port, each)))
        .collect();
    for thread in threads {
        thread.join().expect("a sender thread")?;
    }
    let many = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    sampler.join().expect("the sampler");
    #[expect(
        clippy::cast_precision_loss,
        reason = "a resident size in KiB fits f64 exactly enough for MiB"
    )]
    let peak_rss_mib = peak.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1024.0;
    Ok((
        Forwarded {
            one,
            many,
            peak_rss_mib,
        },
        ssh,
    ))
}

/// Starts `sshd` on loopback with a throwaway host key and user key, and `ssh -N -L` to the container's
/// sink through it; returns the local port and what keeps them running.
fn ssh_tunnel(container_ip: &str) -> anyhow::Result<(u16, (tempfile::TempDir, Killed, Killed))> {
    let sshd = process::find_program("sshd")
        .context("sshd is not installed (apt-get install openssh-server)")?;
    let folder = tempfile::Builder::new()
        .prefix("skiff-bench-sshd-")
        .tempdir()?;
    let path = |name: &str| folder.path().join(name);
    for (key, comment) in [("host_key", "host"), ("user_key", "user")] {
        process::output(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(path(key)),
        )?;
    }
    std::fs::copy(path("user_key.pub"), path("authorized_keys"))?;
    let sshd_port = free_port()?;
    std::fs::write(
        path("sshd_config"),
        format!(
            "Port {sshd_port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nPasswordAuthentication no\nAllowTcpForwarding yes\nUsePAM no\n",
            path("host_key").display(),
            path("authorized_keys").display(),
            path("sshd.pid").display()
        ),
    )?;
    std::fs::create_dir_all("/run/sshd")?;
    let server = Killed(
        Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(path("sshd_config"))
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(sshd_port)?;
    let local = free_port()?;
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let client = Killed(
        Command::new("ssh")
            .args([
                "-N",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-i",
            ])
            .arg(path("user_key"))
            .args([
                "-p",
                &sshd_port.to_string(),
                "-L",
                &format!("{local}:{container_ip}:7000"),
                &format!("{user}@127.0.0.1"),
            ])
            .spawn()?,
    );
    wait_for(local)?;
    Ok((local, (folder, server, client)))
}
