//! The host set-up the two README commands need, done by the commands themselves on a fresh machine.
//!
//! Host packages are Debian's: one that is missing is installed with `apt-get` when xtask runs as root on a host
//! with apt, else the error names the exact command that installs it.
//! The python tools of the AWS tests (moto, the AWS CLI, the IAM linters) go into a virtual environment of their
//! own under the target folder, at the versions `tests/fixtures/aws/requirements.txt` pins, so a tool the machine
//! already has at another version never answers the tests; it is reused while its versions match.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::process;

/// A Debian package the host needs, and how to tell it is there.
#[derive(Debug)]
pub struct HostPackage {
    pub package: &'static str,
    /// Who needs it, for the message that names it.
    pub why: &'static str,
    pub probe: Probe,
}

/// How to tell a [`HostPackage`] is installed.
#[derive(Debug, Clone, Copy)]
pub enum Probe {
    /// Every one of these programs is on `PATH` (or in an `sbin` folder).
    Programs(&'static [&'static str]),
    /// This file exists.
    File(&'static str),
    /// `python3` can make a virtual environment (Debian splits `venv`'s `ensurepip` into `python3-venv`).
    PythonVenv,
}

/// The host packages the tests need beyond the images' (those are [`crate::images`]' business).
pub const TEST_PACKAGES: &[HostPackage] = &[
    HostPackage {
        package: "tmux",
        why: "the terminal tests, which resize a real terminal",
        probe: Probe::Programs(&["tmux"]),
    },
    HostPackage {
        package: "shellcheck",
        why: "the AWS tests, which check the generated user-data",
        probe: Probe::Programs(&["shellcheck"]),
    },
    HostPackage {
        package: "openssh-client",
        why: "the SSH tests, which drive the agent with OpenSSH's ssh, scp and ssh-keygen",
        probe: Probe::Programs(&["ssh", "scp", "ssh-keygen"]),
    },
    HostPackage {
        package: "docker-registry",
        why: "the Features tests, which pull from a registry server on 127.0.0.1",
        probe: Probe::File("/usr/bin/docker-registry"),
    },
    HostPackage {
        package: "git",
        why: "the files tests and the end-to-end test, which make git repositories",
        probe: Probe::Programs(&["git"]),
    },
    HostPackage {
        package: "python3-venv",
        why: "the AWS tests' python tools, installed into a virtual environment",
        probe: Probe::PythonVenv,
    },
    HostPackage {
        package: "chromium",
        why: "the dashboard tests (`skiff ui`), which drive a real headless browser",
        probe: Probe::Programs(&["chromium"]),
    },
    HostPackage {
        package: "chromium-driver",
        why: "the dashboard tests, which drive chromium through WebDriver",
        probe: Probe::Programs(&["chromedriver"]),
    },
];

/// The python tools' requirements, one a line in pip's format; pip installs from this file.
pub const REQUIREMENTS_FILE: &str = "tests/fixtures/aws/requirements.txt";
const REQUIREMENTS: &str = include_str!("../../tests/fixtures/aws/requirements.txt");

/// Where the python tools' virtual environment lives, under the target folder.
const VENV: &str = "test-tools/venv";

/// Whether `probe` finds its package installed on this host.
pub fn is_present(probe: Probe) -> bool {
    match probe {
        Probe::Programs(names) => names
            .iter()
            .all(|name| process::find_program(name).is_some()),
        Probe::File(path) => Path::new(path).exists(),
        Probe::PythonVenv => Command::new("python3")
            .args(["-c", "import ensurepip, venv"])
            .output()
            .is_ok_and(|output| output.status.success()),
    }
}

/// A package missing from the host, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    pub package: &'static str,
    pub why: String,
}

/// The packages of `packages` that `present` does not find.
pub fn missing(packages: &[HostPackage], present: impl Fn(Probe) -> bool) -> Vec<Missing> {
    packages
        .iter()
        .filter(|package| !present(package.probe))
        .map(|package| Missing {
            package: package.package,
            why: package.why.to_owned(),
        })
        .collect()
}

/// What this host allows xtask to do about missing packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    pub root: bool,
    pub apt: bool,
}

impl Host {
    /// This host: root or not, apt or not.
    pub fn this() -> Host {
        Host {
            root: process::is_root(),
            apt: Path::new("/usr/bin/apt-get").exists()
                && Path::new("/etc/debian_version").exists(),
        }
    }
}

/// What to do about missing packages.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// `apt-get install` these packages.
    Install(Vec<&'static str>),
    /// Stop with this message, which names what is missing and the command that installs it.
    Explain(String),
}

/// Decides what to do about `missing`, which `purpose` needs, on `host`.
pub fn plan_install(purpose: &str, missing: &[Missing], host: Host) -> Action {
    if missing.is_empty() {
        return Action::Nothing;
    }
    let mut packages: Vec<&'static str> = missing.iter().map(|missing| missing.package).collect();
    packages.sort_unstable();
    packages.dedup();
    if host.root && host.apt {
        return Action::Install(packages);
    }
    let mut message = format!("the host lacks packages {purpose} need:");
    for missing in missing {
        write!(message, "\n  {}, for {}", missing.package, missing.why).ok();
    }
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    match (host.root, host.apt) {
        (false, true) => write!(message, "\ninstall them with: sudo {install}"),
        _ => write!(
            message,
            "\ninstall them with your package manager (on Debian: {install})"
        ),
    }
    .ok();
    Action::Explain(message)
}

/// Makes sure the host has `packages`, which `purpose` needs: installs the missing ones when it can, else fails
/// naming the command that would. With `dry_run`, only says what it would do.
pub fn ensure_packages(
    purpose: &str,
    packages: &[HostPackage],
    dry_run: bool,
) -> anyhow::Result<()> {
    let missing = missing(packages, is_present);
    if missing.is_empty() {
        let names: Vec<&str> = packages.iter().map(|package| package.package).collect();
        println!("setup: the host has {}", names.join(", "));
    }
    ensure_missing(purpose, &missing, dry_run)
}

/// As [`ensure_packages`], for packages already found missing.
pub fn ensure_missing(purpose: &str, missing: &[Missing], dry_run: bool) -> anyhow::Result<()> {
    match plan_install(purpose, missing, Host::this()) {
        Action::Nothing => Ok(()),
        Action::Install(packages) if dry_run => {
            println!("setup: would install {} with apt-get", packages.join(" "));
            Ok(())
        }
        Action::Install(packages) => apt_install(&packages),
        Action::Explain(message) if dry_run => {
            println!("setup: note: {message}");
            Ok(())
        }
        Action::Explain(message) => bail!(message),
    }
}

/// `apt-get update` then `apt-get install` of `packages`, non-interactively.
fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    println!("setup: installing {} with apt-get", packages.join(" "));
    let show = |line: &str| println!("    {line}");
    let mut update = Command::new("apt-get");
    update
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["update", "-q"]);
    process::run_lines(&mut update, show).context("apt-get update failed")?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages);
    process::run_lines(&mut install, show)
        .with_context(|| format!("installing {} failed", packages.join(" ")))
}

/// One python tool the tests use: its distribution name and, when pinned, its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonTool {
    pub name: String,
    pub version: Option<String>,
}

/// The tools of a requirements file: `name[extras]==version` pins one, a bare name takes any version.
pub fn python_tools(requirements: &str) -> Vec<PythonTool> {
    requirements
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let end = line
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
                .unwrap_or(line.len());
            PythonTool {
                name: line[..end].to_owned(),
                version: line
                    .split_once("==")
                    .map(|(_, version)| version.trim().to_owned()),
            }
        })
        .collect()
}

/// How the tools found differ from `tools`: one line each, such as `moto 5.2.1 (needs 5.2.5)`; empty when all
/// match. `found` maps a tool's name to its installed version, `None` when it is not installed.
pub fn version_problems(
    tools: &[PythonTool],
    found: &BTreeMap<String, Option<String>>,
) -> Vec<String> {
    tools
        .iter()
        .filter_map(|tool| {
            let wanted = tool.version.as_deref();
            match (found.get(&tool.name).cloned().flatten(), wanted) {
                (None, Some(wanted)) => Some(format!("{} is missing (needs {wanted})", tool.name)),
                (None, None) => Some(format!("{} is missing", tool.name)),
                (Some(version), Some(wanted)) if version != wanted => {
                    Some(format!("{} {version} (needs {wanted})", tool.name))
                }
                (Some(_), _) => None,
            }
        })
        .collect()
}

/// The python program that prints `NAME VERSION`, or `NAME` alone when it is not installed, for each name given.
const VERSIONS_SCRIPT: &str = "\
import importlib.metadata as m, sys
for name in sys.argv[1:]:
    try:
        print(name, m.version(name))
    except m.PackageNotFoundError:
        print(name)
";

/// Reads [`VERSIONS_SCRIPT`]'s output.
pub fn parse_versions(output: &str) -> BTreeMap<String, Option<String>> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            Some((name.to_owned(), words.next().map(str::to_owned)))
        })
        .collect()
}

/// The versions of `tools` that `python` has, or `None` when it cannot be run.
fn installed_versions(
    python: &Path,
    tools: &[PythonTool],
) -> Option<BTreeMap<String, Option<String>>> {
    let output = Command::new(python)
        .args(["-c", VERSIONS_SCRIPT])
        .args(tools.iter().map(|tool| &tool.name))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| parse_versions(&String::from_utf8_lossy(&output.stdout)))
}

/// The python tools' virtual environment under the workspace at `root`.
pub fn venv_dir(root: &Path) -> PathBuf {
    process::target_dir(root).join(VENV)
}

/// The folder of the environment's programs, which the tests find first on `PATH`.
pub fn venv_bin(root: &Path) -> PathBuf {
    venv_dir(root).join("bin")
}

/// Makes the python tools' environment match the requirements: reused when its versions match, else created (when
/// missing) and installed into with pip. With `dry_run`, only says what it would do.
pub fn ensure_python_tools(root: &Path, dry_run: bool) -> anyhow::Result<()> {
    let tools = python_tools(REQUIREMENTS);
    let venv = venv_dir(root);
    let python = venv.join("bin/python3");
    let shown = venv
        .strip_prefix(root)
        .unwrap_or(&venv)
        .display()
        .to_string();
    note_system_tools(&tools, &shown);
    let found = installed_versions(&python, &tools);
    let usable = found.is_some();
    let problems = match found {
        Some(found) => version_problems(&tools, &found),
        None if python.exists() => vec![format!("{shown}/bin/python3 does not run")],
        None => vec![format!("{shown} does not exist yet")],
    };
    if problems.is_empty() {
        println!("setup: the python tools in {shown} match {REQUIREMENTS_FILE}");
        return Ok(());
    }
    let reason = problems.join(", ");
    if dry_run {
        println!("setup: would install {REQUIREMENTS_FILE} into {shown} ({reason})");
        return Ok(());
    }
    println!("setup: installing {REQUIREMENTS_FILE} into {shown} ({reason})");
    let by_hand = format!(
        "python3 -m venv {shown} && {shown}/bin/python3 -m pip install -r {REQUIREMENTS_FILE}"
    );
    if !usable {
        // `--clear` replaces an environment whose python is gone (a removed pyenv version, say).
        process::output(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        )
        .with_context(|| {
            format!("could not create the virtual environment {shown}; by hand: {by_hand}")
        })?;
    }
    let mut pip = Command::new(&python);
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "-r",
    ])
    .arg(root.join(REQUIREMENTS_FILE));
    process::run_lines(&mut pip, |line| println!("    {line}"))
        .with_context(|| format!("pip could not install the python tools; by hand: {by_hand}"))?;
    let found = installed_versions(&python, &tools)
        .with_context(|| format!("{} does not run after installing", python.display()))?;
    let problems = version_problems(&tools, &found);
    if !problems.is_empty() {
        bail!(
            "{shown} still differs from {REQUIREMENTS_FILE} after pip: {}",
            problems.join(", ")
        );
    }
    Ok(())
}

/// Names the tools the `python3` on `PATH` has at other versions than pinned: the tests do not use them, but a test
/// run without `cargo xtask test` would.
fn note_system_tools(tools: &[PythonTool], venv: &str) {
    let Some(found) = installed_versions(Path::new("python3"), tools) else {
        return;
    };
    let wrong: Vec<String> = version_problems(tools, &found)
        .into_iter()
        .filter(|problem| !problem.contains(" is missing"))
        .collect();
    if !wrong.is_empty() {
        println!(
            "setup: note: the python3 on PATH has {}; the tests use the pinned versions in {venv} instead",
            wrong.join(", ")
        );
    }
}

#[cfg(test)]
pub(crate) fn requirements() -> &'static str {
    REQUIREMENTS
}

#[cfg(test)]
mod tests;
