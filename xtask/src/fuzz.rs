//! `cargo xtask fuzz`: the wire decoders' property tests, with many more cases than CI gives them.
//!
//! The tests are every test under a module named `props` (smux in `client::tunnel::ssm::mux`, the resumable
//! connection's wire and link in `skiff::resume`, the process server's frames in `agent::procd` and the SFTP
//! decoder in `agent::procd::sftp`); those named `prop_…` draw `PROPTEST_CASES` cases each, the rest are fixed.
//! A round is one `cargo test --workspace -- props::` with `PROPTEST_CASES` set, in the user's environment (see
//! [`process::cargo`]), so it compiles nothing a direct `cargo test --workspace` would not.
//! Proptest draws fresh random cases every round; with `--minutes` rounds repeat until the time is spent.
//! A failing case is shrunk and its seed persisted by proptest in a `proptest-regressions/` folder beside its
//! crate, which every later run (CI's too) tries first; the round's failures and the seeds written are reported,
//! and the run stops at the first failing round.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::process;

/// The name part every property test module shares: the filter that selects them.
pub(crate) const FILTER: &str = "props::";

/// Arguments of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Cases each property test draws per round (`PROPTEST_CASES`; CI runs 64 to 512). A round of 2,000 takes
    /// about a minute and a half of testing on two cores.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub cases: u32,
    /// Start rounds, each with fresh random cases, until this many minutes have passed (one round without it).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub minutes: Option<u64>,
    /// Print the command of a round instead of running it.
    #[arg(long)]
    pub dry_run: bool,
}

/// The cargo arguments of one round.
pub(crate) fn cargo_args() -> Vec<OsString> {
    ["test", "--workspace", "--", FILTER]
        .map(OsString::from)
        .to_vec()
}

/// What one line of libtest's output says about a test: its name and whether it passed.
pub(crate) fn test_result(line: &str) -> Option<(&str, bool)> {
    let rest = line.strip_prefix("test ")?;
    let (name, outcome) = rest.rsplit_once(" ... ")?;
    match outcome.trim_end() {
        "ok" => Some((name, true)),
        "FAILED" => Some((name, false)),
        _ => None,
    }
}

/// Whether a test of the filter draws `PROPTEST_CASES` cases (`prop_…`) rather than checking fixed inputs.
pub(crate) fn is_property(name: &str) -> bool {
    name.rsplit("::")
        .next()
        .is_some_and(|last| last.starts_with("prop_"))
}

/// What one round ran.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Round {
    /// Property tests that passed.
    pub properties: usize,
    /// Fixed tests that passed.
    pub fixed: usize,
    /// Tests that failed, by name.
    pub failed: Vec<String>,
}

impl Round {
    /// Counts one line of libtest's output, if it is a result of a selected test.
    pub(crate) fn count(&mut self, line: &str) {
        let Some((name, passed)) = test_result(line) else {
            return;
        };
        if !name.contains(FILTER) {
            return;
        }
        match (passed, is_property(name)) {
            (true, true) => self.properties += 1,
            (true, false) => self.fixed += 1,
            (false, _) => self.failed.push(name.to_owned()),
        }
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let root = process::workspace_root();
    let budget = args
        .minutes
        .map(|minutes| Duration::from_secs(minutes * 60));
    let started = Instant::now();
    let mut rounds = 0usize;
    let mut cases = 0u64;
    loop {
        let mut command = process::cargo(root);
        command
            .args(cargo_args())
            .env("PROPTEST_CASES", args.cases.to_string());
        let shown = format!(
            "PROPTEST_CASES={} cargo {}",
            args.cases,
            cargo_args()
                .iter()
                .map(|arg| arg.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        rounds += 1;
        println!("==> round {rounds}: {shown}");
        if args.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        let round_started = Instant::now();
        let since = SystemTime::now();
        // libtest's results go to standard output, read here; cargo's progress and errors stay on the terminal.
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("{shown}: could not start it"))?;
        let mut round = Round::default();
        let stdout = child.stdout.take().context("the test output")?;
        for line in BufReader::new(stdout).lines() {
            let line = line.with_context(|| format!("{shown}: reading its output"))?;
            println!("{line}");
            round.count(&line);
        }
        let status = child
            .wait()
            .with_context(|| format!("{shown}: waiting for it"))?;
        let round_cases = round.properties as u64 * u64::from(args.cases) + round.fixed as u64;
        cases += round_cases;
        println!(
            "==> round {rounds}: {} property tests x {} cases and {} fixed tests passed ({round_cases} cases), {} failed, in {:.1}s",
            round.properties,
            args.cases,
            round.fixed,
            round.failed.len(),
            round_started.elapsed().as_secs_f64()
        );
        if !status.success() || !round.failed.is_empty() {
            for name in &round.failed {
                eprintln!("xtask: fuzz: {name} failed");
            }
            let seeds = regressions_written(root, since);
            if seeds.is_empty() {
                eprintln!("xtask: fuzz: no failure seed was persisted (the failure is above)");
            }
            for (path, lines) in seeds {
                eprintln!("xtask: fuzz: failure seeds in {}:", path.display());
                for line in lines {
                    eprintln!("  {line}");
                }
            }
            eprintln!(
                "xtask: fuzz: `{shown}` failed ({status}) after {rounds} rounds, {cases} cases in {:.1}s",
                started.elapsed().as_secs_f64()
            );
            return Ok(ExitCode::FAILURE);
        }
        if round.properties == 0 {
            anyhow::bail!(
                "`{shown}` ran no property test: is every one still under a `props` module?"
            );
        }
        if budget.is_none_or(|budget| started.elapsed() >= budget) {
            break;
        }
    }
    println!(
        "==> fuzz: {rounds} {}, {cases} cases, no failures, in {:.1}s",
        if rounds == 1 { "round" } else { "rounds" },
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// The persisted failure seeds (`cc …` lines) of the `proptest-regressions` files changed since `since`, in the
/// workspace's crates.
pub(crate) fn regressions_written(root: &Path, since: SystemTime) -> Vec<(PathBuf, Vec<String>)> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name == ".git" {
                continue;
            }
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if metadata.is_dir() {
                folders.push(path);
            } else if path
                .components()
                .any(|part| part.as_os_str() == "proptest-regressions")
                && metadata.modified().is_ok_and(|modified| modified >= since)
            {
                let seeds = std::fs::read_to_string(&path)
                    .unwrap_or_default()
                    .lines()
                    .filter(|line| line.starts_with("cc "))
                    .map(str::to_owned)
                    .collect();
                found.push((path.strip_prefix(root).unwrap_or(&path).to_owned(), seeds));
            }
        }
    }
    found.sort();
    found
}
