//! `cargo xtask static-procd`: a statically linked `skiff-procd` beside the agent of a development build.
//!
//! The `skiff-procd` that `cargo build` links needs glibc's dynamic loader, which Alpine (musl), busybox and
//! distroless images lack; there the agent falls back to `docker exec` for every command.
//! This builds the same binary with glibc linked in (`+crt-static`), for the host's own target, and places it
//! beside `skiffd` as `skiff-procd-static`, which the agent copies into containers instead while it is at least
//! as new as `skiff-procd` (`agent::procd::client::choose_binary`).
//!
//! It needs no other toolchain: an explicit `--target` keeps the flag off build scripts and proc macros, which
//! cannot be static, at the price of building the agent's dependencies once more in `target/<host triple>/`.
//! Static glibc resolves names with its built-in `files` and `dns` sources (`/etc/hosts`, `/etc/resolv.conf`),
//! so a forward to a named host works in an image without any C library.
//! The instances' agents come from `cargo xtask dist` (musl), whose `skiff-procd` is static already.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::process;

/// `cargo xtask static-procd`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build it for the release binaries (`target/release`) instead of the debug ones.
    #[arg(long)]
    pub release: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let placed = build(root, args.release)?;
    println!("{}", placed.display());
    Ok(())
}

/// The name the agent looks for beside itself (`agent::procd::client::STATIC_NAME`).
const STATIC_NAME: &str = "skiff-procd-static";

/// Builds the static `skiff-procd` for `release` or debug, checks that it is static, and places it beside that
/// profile's `skiffd`; returns where.
pub fn build(root: &Path, release: bool) -> anyhow::Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = process::output(Command::new(rustc).arg("-vV"))?;
    let host = version
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .context("`rustc -vV` names no host")?
        .trim()
        .to_owned();
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(root)
        .args(["build", "--bin", "skiff-procd", "--target", &host])
        .arg("--config")
        .arg(format!(
            r#"target.{host}.rustflags=["-C", "target-feature=+crt-static"]"#
        ));
    if release {
        cargo.arg("--release");
    }
    eprintln!("==> {}", process::display(&cargo));
    let status = cargo
        .status()
        .with_context(|| format!("{}: could not start it", process::display(&cargo)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", process::display(&cargo));
    }
    let profile = if release { "release" } else { "debug" };
    let built = root
        .join("target")
        .join(&host)
        .join(profile)
        .join("skiff-procd");
    let bytes = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    // ELF machines: xtask runs on the host it builds for.
    let machine = if cfg!(target_arch = "aarch64") {
        183
    } else {
        62
    };
    crate::dist::check_static(&bytes, machine).with_context(|| {
        format!(
            "{} is not what containers need (a RUSTFLAGS variable overrides the `+crt-static` this build passes)",
            built.display()
        )
    })?;
    let folder = root.join("target").join(profile);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let placed = folder.join(STATIC_NAME);
    // A fresh file, so its time says when it was placed (the agent prefers it only while it is not older than
    // `skiff-procd`).
    let _ = std::fs::remove_file(&placed);
    std::fs::write(&placed, &bytes).with_context(|| format!("writing {}", placed.display()))?;
    let mut permissions = std::fs::metadata(&built)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&placed, permissions)?;
    #[expect(
        clippy::cast_precision_loss,
        reason = "binary sizes fit f64 exactly enough for MiB"
    )]
    let mebibytes = bytes.len() as f64 / (1024.0 * 1024.0);
    eprintln!(
        "==> {} ({mebibytes:.1} MiB, static)",
        placed.strip_prefix(root).unwrap_or(&placed).display()
    );
    Ok(placed)
}
