//! `cargo xtask test`: the project's one test command, run the same way on development machines and by `.ci/run`.
//!
//! It builds the local images (as `cargo xtask images` does), then `cargo build --workspace --bins` (the tests
//! start the real binaries) and the static process server (as `cargo xtask static-procd` does), then
//! `cargo test --workspace` with whatever follows `--`; when that chooses packages
//! with `-p`, `--workspace` is left out, because cargo would otherwise ignore the choice.
//! It stops at the first failing step and exits with that step's code.

use std::env;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;

use crate::{images, process, static_procd};

/// Arguments of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the steps instead of running them (the images step still reports what it would build).
    #[arg(long)]
    pub dry_run: bool,
    /// Arguments passed on to `cargo test --workspace`, after `--` (for example
    /// `cargo xtask test -- devcontainer -- --nocapture`); with `-p PACKAGE` only the chosen packages are tested.
    #[arg(last = true, value_name = "CARGO_TEST_ARGS")]
    pub cargo_test_args: Vec<OsString>,
}

/// One step of the test run.
#[derive(Debug)]
pub(crate) enum Step {
    /// `cargo xtask images`, run in this process.
    Images,
    /// A cargo command, run from the workspace root.
    Cargo(Vec<OsString>),
    /// `cargo xtask static-procd`, run in this process: the process server the tests' agents copy into
    /// containers, static so it runs in every image.
    StaticProcd,
}

/// The steps of `cargo xtask test` for `args`, in order.
pub(crate) fn steps(args: &Args) -> Vec<Step> {
    let mut test = vec![OsString::from("test")];
    if !chooses_packages(&args.cargo_test_args) {
        test.push(OsString::from("--workspace"));
    }
    test.extend(args.cargo_test_args.iter().cloned());
    vec![
        Step::Images,
        Step::Cargo(
            ["build", "--workspace", "--bins"]
                .map(OsString::from)
                .to_vec(),
        ),
        Step::StaticProcd,
        Step::Cargo(test),
    ]
}

/// Whether `cargo test` arguments choose packages themselves (`-p NAME`, `-pNAME`, `--package[=NAME]`), which
/// `--workspace` would override. Only cargo's own arguments count, not the test binaries' after a second `--`.
pub(crate) fn chooses_packages(cargo_test_args: &[OsString]) -> bool {
    cargo_test_args
        .iter()
        .map(|arg| arg.to_string_lossy())
        .take_while(|arg| arg != "--")
        .any(|arg| arg.starts_with("-p") || arg == "--package" || arg.starts_with("--package="))
}

/// Runs the steps in order; the exit code is the first failing step's.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // `cargo run` tells its child which cargo it is; use the same one so toolchain overrides hold.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let root = workspace_root();
    for step in steps(args) {
        let step_started = Instant::now();
        match step {
            Step::Images => {
                println!("==> cargo xtask images");
                images::run(&images::Args {
                    force: false,
                    dry_run: args.dry_run,
                    mirror: None,
                })
                .context("images")?;
            }
            Step::StaticProcd => {
                println!("==> cargo xtask static-procd");
                if !args.dry_run {
                    static_procd::build(root, false).context("static-procd")?;
                }
            }
            Step::Cargo(cargo_args) => {
                let mut command = Command::new(&cargo);
                command.args(&cargo_args).current_dir(root);
                let shown = display_cargo(&command);
                println!("==> {shown}");
                if args.dry_run {
                    continue;
                }
                let status = command
                    .status()
                    .with_context(|| format!("{shown}: could not start it"))?;
                if !status.success() {
                    eprintln!("xtask: `{shown}` failed ({status})");
                    // A signal has no exit code; report it as a plain failure.
                    let code = status.code().and_then(|code| u8::try_from(code).ok());
                    return Ok(code.map_or(ExitCode::FAILURE, ExitCode::from));
                }
            }
        }
        if !args.dry_run {
            println!("==> done in {:.1}s", step_started.elapsed().as_secs_f64());
        }
    }
    if !args.dry_run {
        println!(
            "==> all steps passed in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `command` shown as `cargo …` whatever path `CARGO` holds, as a person would type it.
fn display_cargo(command: &Command) -> String {
    let mut shown = Command::new("cargo");
    shown.args(command.get_args());
    process::display(&shown)
}

/// The workspace root, which holds this crate.
fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}
