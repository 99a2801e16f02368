//! `cargo xtask dist`: static `skiffd` and `skiff-procd` for the instances skiff launches, x86_64 and aarch64
//! (musl), in `target/dist/<arch>/`, with their sizes and SHA-256 (what `--agent-sha256` takes).
//!
//! Each target's standard library comes from `rustup target add` (run for the missing ones); x86_64 links with
//! rustc's self-contained musl objects, aarch64 with Debian's `gcc-aarch64-linux-gnu` (which also builds ring's C,
//! with the headers of `libc6-dev-arm64-cross`).
//! Every result is checked to be static (no ELF interpreter) and of the right machine before it is copied: a
//! linker driver that quietly links dynamically (`musl-gcc` does) is caught there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::Digest;

use crate::process;

/// `cargo xtask dist`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Build only this architecture (x86_64 or aarch64).
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
}

/// One architecture's build.
struct Target {
    arch: &'static str,
    triple: &'static str,
    /// ELF `e_machine` of its binaries.
    machine: u16,
    /// The cross C compiler (for ring) and linker driver it needs, and the Debian package that has it; `None`
    /// where rustc's self-contained musl linking and the host's `cc` do (x86_64 on an x86_64 host).
    cross: Option<(&'static str, &'static str)>,
    /// A header of the cross C library that ring's C includes, when one is needed.
    headers: Option<&'static str>,
}

const TARGETS: &[Target] = &[
    Target {
        arch: "x86_64",
        triple: "x86_64-unknown-linux-musl",
        machine: 62,
        cross: None,
        headers: None,
    },
    Target {
        arch: "aarch64",
        triple: "aarch64-unknown-linux-musl",
        machine: 183,
        cross: Some((
            "aarch64-linux-gnu-gcc",
            "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        )),
        headers: Some("/usr/aarch64-linux-gnu/include/stdint.h"),
    },
];

const BINARIES: &[&str] = &["skiffd", "skiff-procd"];

pub fn run(args: &Args) -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_path_buf();
    let chosen: Vec<&Target> = TARGETS
        .iter()
        .filter(|target| args.arch.as_deref().is_none_or(|arch| arch == target.arch))
        .collect();
    if chosen.is_empty() {
        bail!(
            "--arch {}: choose x86_64 or aarch64",
            args.arch.as_deref().unwrap_or_default()
        );
    }
    let installed = process::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup lists the installed targets (dist needs rustup)")?;
    for target in &chosen {
        if let Some((cc, package)) = target.cross
            && (process::find_program(cc).is_none()
                || target
                    .headers
                    .is_some_and(|header| !Path::new(header).is_file()))
        {
            bail!(
                "{cc} or its C library headers are missing: they build the C parts of {} and link it; install them with `apt-get install -y {package}`",
                target.triple
            );
        }
        if !installed.lines().any(|line| line.trim() == target.triple) {
            eprintln!("dist: adding the {} standard library", target.triple);
            process::output(Command::new("rustup").args(["target", "add", target.triple]))?;
        }
        build(&root, target)?;
    }
    Ok(())
}

fn build(root: &Path, target: &Target) -> anyhow::Result<()> {
    let triple_env = target.triple.replace('-', "_");
    let mut cargo = process::cargo(root);
    cargo
        .args([
            "build",
            "--release",
            "-p",
            "skiff-agent",
            "--bins",
            "--target",
        ])
        .arg(target.triple);
    if let Some((cc, _)) = target.cross {
        cargo.env(format!("CC_{triple_env}"), cc).env(
            format!("CARGO_TARGET_{}_LINKER", triple_env.to_ascii_uppercase()),
            cc,
        );
    }
    eprintln!("dist: {}", process::display(&cargo));
    process::run_lines(&mut cargo, |line| eprintln!("  {line}"))?;
    let out = root.join("target/dist").join(target.arch);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for name in BINARIES {
        let built: PathBuf = root
            .join("target")
            .join(target.triple)
            .join("release")
            .join(name);
        let bytes =
            std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        check_static(&bytes, target.machine)
            .with_context(|| format!("{} is not what the instances need", built.display()))?;
        let placed = out.join(name);
        std::fs::copy(&built, &placed)
            .with_context(|| format!("copying to {}", placed.display()))?;
        let sha256: String = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        println!(
            "{:<36} {:>6.1} MiB  static  sha256 {sha256}",
            placed.strip_prefix(root).unwrap_or(&placed).display(),
            bytes.len() as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

/// Checks that `elf` is a 64-bit little-endian ELF for `machine` with no program interpreter (statically linked).
pub(crate) fn check_static(elf: &[u8], machine: u16) -> anyhow::Result<()> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let found = u16_at(18).context("a short ELF header")?;
    if found != machine {
        bail!("built for ELF machine {found}, not {machine}");
    }
    let table = usize::try_from(u64_at(0x20).context("a short ELF header")?)?;
    let entry_size = usize::from(u16_at(0x36).context("a short ELF header")?);
    let entries = usize::from(u16_at(0x38).context("a short ELF header")?);
    const PT_INTERP: u32 = 3;
    for index in 0..entries {
        let kind = u32_at(table + index * entry_size).context("a short program header table")?;
        if kind == PT_INTERP {
            bail!("dynamically linked (it names a program interpreter)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_dynamic_executable_is_refused_and_the_machine_is_checked() {
        // The test's own executable is a dynamically linked x86_64 or aarch64 ELF.
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let machine = if cfg!(target_arch = "aarch64") {
            183
        } else {
            62
        };
        let error = super::check_static(&own, machine).unwrap_err().to_string();
        assert!(error.contains("dynamically linked"), "{error}");
        let other = if machine == 62 { 183 } else { 62 };
        let error = super::check_static(&own, other).unwrap_err().to_string();
        assert!(error.contains("ELF machine"), "{error}");
        assert!(super::check_static(b"#!/bin/sh\n", machine).is_err());
    }
}
