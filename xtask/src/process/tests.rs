//! Unit tests of the environment a nested cargo gets: `cargo run`'s additions undone, the user's own kept.

use std::ffi::OsString;
use std::path::Path;

use super::*;

fn vars(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs
        .iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect()
}

#[test]
fn undo_cargo_run_removes_what_cargo_run_set() {
    let added = |dir: &Path| {
        is_cargo_library_dir(
            dir,
            Path::new("/src/skiff/target"),
            Some(Path::new("/root/.rustup/toolchains/stable")),
        )
    };
    let changes = undo_cargo_run(
        &vars(&[
            ("CARGO", "/root/.rustup/toolchains/stable/bin/cargo"),
            ("CARGO_PKG_NAME", "xtask"),
            ("CARGO_PKG_VERSION_MAJOR", "0"),
            ("CARGO_MANIFEST_DIR", "/src/skiff/xtask"),
            ("CARGO_MANIFEST_PATH", "/src/skiff/xtask/Cargo.toml"),
            ("CARGO_CRATE_NAME", "xtask"),
            ("CARGO_BIN_NAME", "xtask"),
            ("CARGO_PRIMARY_PACKAGE", "1"),
            (
                "LD_LIBRARY_PATH",
                "/src/skiff/target/debug/deps:/src/skiff/target/debug:\
                 /root/.rustup/toolchains/stable/lib/rustlib/x86_64-unknown-linux-gnu/lib:\
                 /root/.rustup/toolchains/stable/lib:/opt/user/lib:/root/.rustup/toolchains/stable/share",
            ),
            // The user's own settings stay.
            ("CARGO_HOME", "/root/.cargo"),
            ("CARGO_TARGET_DIR", "/src/skiff/target"),
            ("RUSTFLAGS", "-Cdebuginfo=0"),
            ("PATH", "/usr/bin"),
        ]),
        added,
    );
    let removed: Vec<String> = changes
        .iter()
        .filter_map(|change| match change {
            EnvChange::Remove(name) => Some(name.to_string_lossy().into_owned()),
            EnvChange::Set(..) => None,
        })
        .collect();
    assert_eq!(
        removed,
        [
            "CARGO",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_MANIFEST_DIR",
            "CARGO_MANIFEST_PATH",
            "CARGO_CRATE_NAME",
            "CARGO_BIN_NAME",
            "CARGO_PRIMARY_PACKAGE",
        ]
    );
    assert!(changes.contains(&EnvChange::Set(
        OsString::from("LD_LIBRARY_PATH"),
        OsString::from("/opt/user/lib:/root/.rustup/toolchains/stable/share")
    )));
    assert_eq!(changes.len(), removed.len() + 1);
}

#[test]
fn undo_cargo_run_drops_a_library_path_cargo_made_alone() {
    let added = |dir: &Path| is_cargo_library_dir(dir, Path::new("/src/skiff/target"), None);
    let changes = undo_cargo_run(
        &vars(&[("LD_LIBRARY_PATH", "/src/skiff/target/debug/deps")]),
        added,
    );
    assert_eq!(
        changes,
        [EnvChange::Remove(OsString::from("LD_LIBRARY_PATH"))]
    );
    // A user's library path that cargo did not touch is left as it is.
    let untouched = undo_cargo_run(&vars(&[("LD_LIBRARY_PATH", "/opt/a:/usr/lib/x")]), |dir| {
        // Debian's own cargo has the sysroot `/usr`: only `/usr/lib` itself is cargo's.
        is_cargo_library_dir(dir, Path::new("/src/skiff/target"), Some(Path::new("/usr")))
    });
    assert!(untouched.is_empty(), "{untouched:?}");
}
