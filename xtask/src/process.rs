//! Running other programs from xtask: finding them, showing a command the way a person would type it, and running
//! one while keeping the end of its output for the error message.
//!
//! Nothing here knows about Docker or cargo; the subcommand modules build the `Command`s.

use std::collections::VecDeque;
use std::env;
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
