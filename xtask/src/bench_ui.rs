//! `cargo xtask bench ui`: the dashboard's figures, with `skiff list` as the baseline in the same run.
//!
//! With `--workspaces` local workspaces up in one throwaway skiff home:
//! - the time from starting `skiff ui` to its first full picture (every workspace with its agent's report, read as a
//!   page does: the token traded for the cookie, then `/api/board`), against `skiff list --json` of the same
//!   workspaces, alternating;
//! - `skiff ui`'s resident memory once the list is up, then after `--minutes` with the page open in a headless
//!   Chromium (following the live board over server-sent events).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::process;

/// A running `skiff ui --no-open`, ended when dropped.
struct Ui {
    child: Child,
    port: u16,
    token: String,
}

impl Ui {
    fn start(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .args(["ui", "--no-open"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting skiff ui")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("its stdout")?).read_line(&mut line)?;
        let rest = line
            .trim()
            .strip_prefix("http://127.0.0.1:")
            .with_context(|| format!("skiff ui printed {line:?}"))?;
        let (port, token) = rest.split_once("/?token=").context("a token in the URL")?;
        Ok(Self {
            port: port.parse()?,
            token: token.to_owned(),
            child,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/?token={}", self.port, self.token)
    }

    /// The board as a page reads it: the token traded for the cookie, then `/api/board`.
    fn board(&self) -> anyhow::Result<serde_json::Value> {
        let entered = get(self.port, &format!("/?token={}", self.token), None)?;
        if !entered.starts_with("HTTP/1.1 303") {
            bail!("the token was not taken: {entered}");
        }
        let cookie = format!("skiff_ui={}", self.token);
        let answer = get(self.port, "/api/board", Some(&cookie))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .context("a body")?;
        Ok(serde_json::from_str(body)?)
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET on loopback, the whole answer as text.
fn get(port: u16, path: &str, cookie: Option<&str>) -> anyhow::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let cookie = cookie.map_or_else(String::new, |cookie| format!("Cookie: {cookie}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{cookie}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Whether every row of `board` is one of the `names`, running, with its agent's report.
fn full(board: &serde_json::Value, names: &[String]) -> bool {
    let rows = board["rows"].as_array().cloned().unwrap_or_default();
    rows.len() == names.len()
        && rows
            .iter()
            .all(|row| row["state"] == "running" && row["idle"].is_object())
}

pub fn run(binaries: &Path, workspaces: usize, runs: usize, minutes: u64) -> anyhow::Result<()> {
    let home = tempfile::Builder::new()
        .prefix("skiff-bench-ui-")
        .tempdir()?;
    let skiff = |args: &[&str]| {
        let mut command = Command::new(binaries.join("skiff"));
        command
            .args(args)
            .env("SKIFF_HOME", home.path().join("home"))
            .env("SKIFF_AGENT_BINARY", binaries.join("skiffd"))
            .stdin(Stdio::null());
        command
    };
    let names: Vec<String> = (0..workspaces)
        .map(|index| format!("ui-bench-{index:02}"))
        .collect();
    eprintln!("==> {workspaces} local workspaces up");
    for name in &names {
        let project = home.path().join(name);
        std::fs::create_dir_all(project.join(".devcontainer"))?;
        std::fs::write(
            project.join(".devcontainer/devcontainer.json"),
            r#"{"image": "skiff-test/debian:12", "remoteUser": "root"}"#,
        )?;
        process::output(&mut skiff(&["up", &project.display().to_string()]))
            .with_context(|| format!("skiff up of {name}"))?;
    }
    let result = measure(&skiff, &names, runs, minutes);
    eprintln!("==> deleting the {workspaces} workspaces");
    for name in &names {
        let _ = skiff(&["delete", "--yes", name]).output();
    }
    result
}

fn measure(
    skiff: &dyn Fn(&[&str]) -> Command,
    names: &[String],
    runs: usize,
    minutes: u64,
) -> anyhow::Result<()> {
    let list = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let listed = process::output(&mut skiff(&["list", "--json"]))?;
        let elapsed = started.elapsed();
        let running = listed.matches("\"state\": \"running\"").count();
        if running != names.len() {
            bail!("skiff list saw {running} of {} running", names.len());
        }
        Ok(elapsed)
    };
    let first_board = || -> anyhow::Result<Duration> {
        let started = Instant::now();
        let ui = Ui::start(skiff(&[]))?;
        let board = ui.board()?;
        let elapsed = started.elapsed();
        if !full(&board, names) {
            bail!("the first board was not full: {board}");
        }
        Ok(elapsed)
    };
    // Warm both (page cache, the agents' first connections).
    list()?;
    first_board()?;
    let mut list_times = Vec::new();
    let mut ui_times = Vec::new();
    for _ in 0..runs {
        list_times.push(list()?);
        ui_times.push(first_board()?);
    }
    list_times.sort();
    ui_times.sort();
    let median = |times: &[Duration]| times[times.len() / 2].as_secs_f64() * 1000.0;
    println!(
        "{} local workspaces, {runs} runs each, alternating",
        names.len()
    );
    println!("{:<52} {:>10} {:>10}", "", "p50 ms", "max ms");
    for (label, times) in [
        ("skiff list --json (baseline)", &list_times),
        ("skiff ui: start to first full /api/board", &ui_times),
    ] {
        println!(
            "{label:<52} {:>10.1} {:>10.1}",
            median(times),
            times.last().map_or(0.0, |time| time.as_secs_f64() * 1000.0)
        );
    }
    println!(
        "ratio ui / list (p50): {:.2}",
        median(&ui_times) / median(&list_times)
    );

    // Memory with the page open.
    let ui = Ui::start(skiff(&[]))?;
    let board = ui.board()?;
    if !full(&board, names) {
        bail!("the board was not full: {board}");
    }
    let profile = tempfile::tempdir()?;
    let mut browser = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(ui.url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting chromium (`apt-get install chromium`)")?;
    std::thread::sleep(Duration::from_secs(5));
    let pid = ui.child.id();
    let at_start = crate::bench::rss_kib(pid)?;
    eprintln!("==> the page open in headless Chromium for {minutes} min");
    let mut peak = at_start;
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(10));
        peak = peak.max(crate::bench::rss_kib(pid)?);
    }
    let after = crate::bench::rss_kib(pid)?;
    let _ = browser.kill();
    let _ = browser.wait();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "skiff ui RSS: {:.1} MiB with the page open, {:.1} MiB after {minutes} min (peak {:.1}); ratio {:.2}",
        mib(at_start),
        mib(after),
        mib(peak),
        after as f64 / at_start.max(1) as f64
    );
    Ok(())
}
