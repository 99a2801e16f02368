//! `cargo xtask`: dev chores for skiff, written in Rust so they run the same on every machine and in CI.
//!
//! `main` only parses arguments and maps failure to an exit code.
//! Each subcommand lives in its own module (`images`, `test`, `bench`, `dist`, `static_procd`, `fuzz`) with an `Args` struct and a `run` function;
//! add a chore by adding a variant to [`Command`] and a module beside them.
//! Helpers for running other programs live in `process` (`process::cargo` is the cargo every subcommand runs, in
//! the user's environment rather than `cargo run`'s); the host set-up the commands need lives in `setup`.

mod bench;
mod bench_forward;
mod bench_ui;
mod dist;
mod fuzz;
mod images;
mod process;
mod setup;
mod static_procd;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Dev chores for skiff.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the local base images the tests and examples need, without a registry.
    Images(images::Args),
    /// Build the images, then build and test the whole workspace (the one test command, also used by CI).
    Test(test::Args),
    /// Measure skiff against its baselines (release binaries).
    Bench(bench::Args),
    /// Build static (musl) skiffd and skiff-procd for x86_64 and aarch64 instances into target/dist.
    Dist(dist::Args),
    /// Build a static skiff-procd beside the local agent, so the process server runs in every image.
    StaticProcd(static_procd::Args),
    /// Run the wire decoders' property tests (every test under a `props` module) with many more cases.
    Fuzz(fuzz::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Images(args) => images::run(args).map(|()| ExitCode::SUCCESS),
        Command::Test(args) => test::run(args),
        Command::Bench(args) => bench::run(args).map(|()| ExitCode::SUCCESS),
        Command::Dist(args) => dist::run(args).map(|()| ExitCode::SUCCESS),
        Command::StaticProcd(args) => static_procd::run(args).map(|()| ExitCode::SUCCESS),
        Command::Fuzz(args) => fuzz::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
