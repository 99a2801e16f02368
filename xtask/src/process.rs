//! Running other programs from xtask: finding them, showing a command the way a person would type it, and running
//! one while keeping the end of its output for the error message.
//!
//! Nothing here knows about Docker; the subcommand modules build the `Command`s.
//! [`cargo`] gives the one cargo command every subcommand runs, in the user's own environment.

use std::collections::VecDeque;
use std::env;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How many lines of a failed command's output its error shows.
const TAIL_LINES: usize = 40;

/// `command` as one shell-like line, for progress and error messages.
pub fn display(command: &Command) -> String {
    let mut words = vec![quote(command.get_program())];
    words.extend(command.get_args().map(quote));
    words.join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The path of executable `name` on `PATH`, also looking in the `sbin` directories, which are often missing from a
/// user's `PATH` on Debian even though tools like `debootstrap` live there.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Runs `command` to completion and returns its standard output; on failure the error carries its standard error.
/// Standard input is whatever `command` says, or none.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("{}: could not start it", display(command)))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "`{}` failed ({}): {}",
            display(command),
            output.status,
            stderr.trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `command` to completion, handing each line of its merged standard output and error to `on_line`; on
/// failure the error carries the last lines of that output.
pub fn run_lines(command: &mut Command, mut on_line: impl FnMut(&str)) -> anyhow::Result<()> {
    let shown = display(command);
    let (reader, writer) = io::pipe().context("creating a pipe")?;
    command
        .stdin(Stdio::null())
        .stdout(writer.try_clone().context("creating a pipe")?)
        .stderr(writer);
    let mut child = command
        .spawn()
        .with_context(|| format!("{shown}: could not start it"))?;
    // The `Command` still holds the pipe's write end; replacing its stdio drops that copy so the read below ends
    // when the child exits.
    command.stdout(Stdio::null()).stderr(Stdio::null());

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    for line in BufReader::new(reader).split(b'\n') {
        let line = line.with_context(|| format!("{shown}: reading its output"))?;
        let line = String::from_utf8_lossy(&line);
        on_line(&line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.into_owned());
    }
    let status = child
        .wait()
        .with_context(|| format!("{shown}: waiting for it"))?;
    if !status.success() {
        let tail = Vec::from(tail).join("\n");
        bail!("`{shown}` failed ({status}); its last lines:\n{tail}");
    }
    Ok(())
}

/// The variables `cargo run` sets for the program it runs, which a cargo started from it must not see (cargo's
/// "Environment variables Cargo sets for crates"); those starting with [`CARGO_RUN_PREFIXES`] too.
const CARGO_RUN_VARIABLES: &[&str] = &[
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];
const CARGO_RUN_PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_EXE_"];

/// The dynamic library search path, to which `cargo run` adds the target and toolchain folders.
const LIBRARY_PATH: &str = "LD_LIBRARY_PATH";

/// How a variable of this process's environment differs in the user's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvChange {
    Remove(OsString),
    Set(OsString, OsString),
}

/// What undoes `cargo run`'s additions to `vars` (this process's environment): its variables go, and the folders
/// `added_by_cargo` recognises (the target folder's, the toolchain's libraries) leave the library path.
///
/// A cargo started with `cargo run`'s variables sees a build environment unlike the user's own: build scripts that
/// declare `rerun-if-env-changed=CARGO_MANIFEST_DIR` (ring does) rerun, and everything above them is recompiled, here
/// and again in the user's next direct build.
pub(crate) fn undo_cargo_run(
    vars: &[(OsString, OsString)],
    added_by_cargo: impl Fn(&Path) -> bool,
) -> Vec<EnvChange> {
    let mut changes = Vec::new();
    for (name, value) in vars {
        let text = name.to_string_lossy();
        if CARGO_RUN_VARIABLES.contains(&&*text)
            || CARGO_RUN_PREFIXES
                .iter()
                .any(|prefix| text.starts_with(prefix))
        {
            changes.push(EnvChange::Remove(name.clone()));
        } else if text == LIBRARY_PATH {
            let kept: Vec<PathBuf> = env::split_paths(value)
                .filter(|dir| !added_by_cargo(dir))
                .collect();
            if kept.is_empty() {
                changes.push(EnvChange::Remove(name.clone()));
            } else if let Ok(joined) = env::join_paths(&kept)
                && joined != *value
            {
                changes.push(EnvChange::Set(name.clone(), joined));
            }
        }
    }
    changes
}

/// Whether `dir` is one of the library folders `cargo run` adds: under the `target` folder, the toolchain's
/// `sysroot/lib`, or under its `sysroot/lib/rustlib`.
pub(crate) fn is_cargo_library_dir(dir: &Path, target: &Path, sysroot: Option<&Path>) -> bool {
    dir.starts_with(target)
        || sysroot.is_some_and(|sysroot| {
            dir == sysroot.join("lib") || dir.starts_with(sysroot.join("lib/rustlib"))
        })
}

/// A `cargo` command run from `root` in the user's environment, not the one `cargo run` gave xtask, so it shares
/// every compiled unit with the user's own `cargo build`.
pub fn cargo(root: &Path) -> Command {
    // `cargo run` tells its child which cargo it is; the same one keeps toolchain overrides.
    let program = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let target = target_dir(root);
    // The toolchain holding that cargo (`SYSROOT/bin/cargo`).
    let sysroot = Path::new(&program)
        .parent()
        .and_then(Path::parent)
        .filter(|sysroot| !sysroot.as_os_str().is_empty());
    let vars: Vec<(OsString, OsString)> = env::vars_os().collect();
    let changes = undo_cargo_run(&vars, |dir| is_cargo_library_dir(dir, &target, sysroot));
    let mut command = Command::new(&program);
    command.current_dir(root);
    for change in changes {
        match change {
            EnvChange::Remove(name) => command.env_remove(name),
            EnvChange::Set(name, value) => command.env(name, value),
        };
    }
    command
}

/// The workspace's target folder: `CARGO_TARGET_DIR` when set, else `target` under `root`.
pub fn target_dir(root: &Path) -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}

/// The workspace root, which holds this crate.
pub fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// Whether this process runs as root (its effective user id is 0), from `/proc/self/status`.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Runs `command` (its output going where it says) and waits at most `limit`; `None` when it took longer and was
/// killed.
pub fn status_within(command: &mut Command, limit: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let mut child: Child = command
        .spawn()
        .with_context(|| format!("{}: could not start it", display(command)))?;
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().context("waiting for a child")? {
            return Ok(Some(status));
        }
        if started.elapsed() >= limit {
            child.kill().ok();
            child.wait().ok();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests;
