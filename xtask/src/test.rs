//! `cargo xtask test`: the project's one test command, run the same way on development machines and by `.ci/run`.
//!
//! It does its whole set-up itself, then builds and tests:
//! the host packages the tests need (installed with apt-get when root on Debian, else named with the command),
//! the python tools at pinned versions in a virtual environment of their own (see [`crate::setup`]),
//! the local images (as `cargo xtask images` does), then `cargo build --workspace --bins` (the tests start the
//! real binaries), then `cargo test --workspace` with whatever follows `--`, with the python tools first on `PATH`.
//! When the test arguments choose packages with `-p`, `--workspace` is left out, because cargo would otherwise
//! ignore the choice.
//! Both cargo steps run in the user's environment, not `cargo run`'s, so they share every compiled unit with a
//! direct `cargo build --workspace --bins`.
//! After the binaries it builds the static process server (as `cargo xtask static-procd` does), which the tests'
//! agents copy into containers so it runs in every image.
//! It stops at the first failing step and exits with that step's code.

use std::env;
use std::ffi::OsString;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;

use crate::{images, process, setup, static_procd};

/// Arguments of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the steps instead of running them (the set-up and images steps still report what they would do).
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
    /// The host packages of [`setup::TEST_PACKAGES`], installed when missing.
    HostPackages,
    /// The python tools' environment, made to match its requirements.
    PythonTools,
    /// `cargo xtask images`, run in this process.
    Images,
    /// A cargo command, run from the workspace root in the user's environment; with `tools_on_path`, the python
    /// tools' environment comes first on `PATH`.
    Cargo {
        args: Vec<OsString>,
        tools_on_path: bool,
    },
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
        Step::HostPackages,
        Step::PythonTools,
        Step::Images,
        Step::Cargo {
            args: ["build", "--workspace", "--bins"]
                .map(OsString::from)
                .to_vec(),
            tools_on_path: false,
        },
        Step::StaticProcd,
        Step::Cargo {
            args: test,
            tools_on_path: true,
        },
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
    let root = process::workspace_root();
    for step in steps(args) {
        let step_started = Instant::now();
        match step {
            Step::HostPackages => {
                println!("==> host packages");
                setup::ensure_packages("the tests", setup::TEST_PACKAGES, args.dry_run)?;
            }
            Step::PythonTools => {
                println!("==> python tools");
                setup::ensure_python_tools(root, args.dry_run)?;
            }
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
            Step::Cargo {
                args: cargo_args,
                tools_on_path,
            } => {
                let mut command = process::cargo(root);
                command.args(&cargo_args);
                let mut shown = display_cargo(&command);
                if tools_on_path {
                    let tools = setup::venv_bin(root);
                    let path = env::var_os("PATH").unwrap_or_default();
                    let path = env::split_paths(&path);
                    command.env(
                        "PATH",
                        env::join_paths(std::iter::once(tools.clone()).chain(path))
                            .context("PATH holds a folder name with a colon")?,
                    );
                    let tools = tools.strip_prefix(root).unwrap_or(&tools);
                    shown = format!("PATH={}:$PATH {shown}", tools.display());
                }
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
