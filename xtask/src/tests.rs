//! Unit tests of xtask's command line: what each subcommand parses and which steps `test` runs.
//! The image recipes' own tests live in `images/tests.rs`, the host set-up's in `setup/tests.rs` and the
//! environment nested cargo gets in `process/tests.rs`.

use std::ffi::OsString;

use clap::{CommandFactory, Parser};

use super::{Cli, Command};
use crate::test::{Step, chooses_packages, steps};

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("xtask").chain(args.iter().copied())).unwrap()
}

fn words(step: &Step) -> Vec<String> {
    match step {
        Step::HostPackages => vec!["xtask".to_owned(), "host-packages".to_owned()],
        Step::PythonTools => vec!["xtask".to_owned(), "python-tools".to_owned()],
        Step::Images => vec!["xtask".to_owned(), "images".to_owned()],
        Step::StaticProcd => vec!["xtask".to_owned(), "static-procd".to_owned()],
        Step::Cargo { args, .. } => std::iter::once("cargo".to_owned())
            .chain(args.iter().map(|arg| arg.to_string_lossy().into_owned()))
            .collect(),
    }
}

#[test]
fn cli_is_well_formed() {
    Cli::command().debug_assert();
}

#[test]
fn test_sets_up_the_host_then_runs_images_then_build_then_test() {
    let Command::Test(args) = parse(&["test"]).command else {
        panic!("not the test subcommand");
    };
    let steps: Vec<Vec<String>> = steps(&args).iter().map(words).collect();
    assert_eq!(
        steps,
        [
            vec!["xtask", "host-packages"],
            vec!["xtask", "python-tools"],
            vec!["xtask", "images"],
            vec!["cargo", "build", "--workspace", "--bins"],
            vec!["xtask", "static-procd"],
            vec!["cargo", "test", "--workspace"],
        ]
    );
}

#[test]
fn test_puts_the_python_tools_on_path_for_cargo_test_only() {
    let Command::Test(args) = parse(&["test", "--", "aws"]).command else {
        panic!("not the test subcommand");
    };
    let on_path: Vec<(String, bool)> = steps(&args)
        .iter()
        .filter_map(|step| match step {
            Step::Cargo {
                args,
                tools_on_path,
            } => Some((args[0].to_string_lossy().into_owned(), *tools_on_path)),
            _ => None,
        })
        .collect();
    // The build's environment is the user's own, so a direct `cargo build` after it reuses every unit.
    assert_eq!(
        on_path,
        [("build".to_owned(), false), ("test".to_owned(), true)]
    );
}

#[test]
fn test_passes_everything_after_the_separator_to_cargo_test() {
    let Command::Test(args) = parse(&["test", "--", "devcontainer", "--", "--nocapture"]).command
    else {
        panic!("not the test subcommand");
    };
    assert!(!args.dry_run);
    assert_eq!(
        args.cargo_test_args,
        ["devcontainer", "--", "--nocapture"].map(OsString::from)
    );
    let last = steps(&args).pop().map(|step| words(&step));
    assert_eq!(
        last.unwrap(),
        [
            "cargo",
            "test",
            "--workspace",
            "devcontainer",
            "--",
            "--nocapture"
        ]
    );
}

#[test]
fn test_leaves_out_workspace_when_packages_are_chosen() {
    // `cargo test --workspace -p NAME` tests every package: `--workspace` wins.
    let Command::Test(args) = parse(&["test", "--", "-p", "skiff-tests", "--", "-p"]).command
    else {
        panic!("not the test subcommand");
    };
    let last = steps(&args).pop().map(|step| words(&step));
    assert_eq!(
        last.unwrap(),
        ["cargo", "test", "-p", "skiff-tests", "--", "-p"]
    );
    let chooses = |args: &[&str]| {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        chooses_packages(&args)
    };
    assert!(chooses(&["--package=skiff"]));
    assert!(chooses(&["-pskiff"]));
    assert!(chooses(&["--package", "skiff"]));
    assert!(!chooses(&["filter", "--", "-p"]));
    assert!(!chooses(&["--exclude", "xtask"]));
}

#[test]
fn test_rejects_cargo_test_args_without_the_separator() {
    assert!(Cli::try_parse_from(["xtask", "test", "--nocapture"]).is_err());
}

#[test]
fn images_takes_force_and_a_mirror() {
    let Command::Images(args) = parse(&[
        "images",
        "--force",
        "--mirror",
        "http://mirror.example/debian",
    ])
    .command
    else {
        panic!("not the images subcommand");
    };
    assert!(args.force);
    assert_eq!(args.mirror.as_deref(), Some("http://mirror.example/debian"));
}

/// `cargo xtask` must resolve features over the same packages as `cargo build --workspace --bins`, or it compiles
/// its own copies of shared dependencies (clap, rustix, libc…) beside the workspace's: `--package xtask` would.
#[test]
fn cargo_xtask_shares_the_workspace_build() {
    let root = crate::process::workspace_root();
    let config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
    let alias = config
        .lines()
        .find(|line| line.starts_with("xtask ="))
        .expect("the xtask alias");
    assert!(
        alias.contains("--bin xtask") && !alias.contains("--package") && !alias.contains(" -p"),
        "{alias}"
    );
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let members = manifest
        .lines()
        .find(|line| line.starts_with("default-members"))
        .expect("default-members");
    assert!(members.contains("\"xtask\""), "{members}");
}

#[test]
fn a_symbol_is_counted_for_the_crate_it_is_about() {
    use crate::bench::crate_of;
    assert_eq!(
        crate_of("aws_sdk_ec2::operation::run_instances::x"),
        "aws_sdk_ec2"
    );
    assert_eq!(
        crate_of("<bollard::Docker as core::clone::Clone>::clone"),
        "bollard"
    );
    assert_eq!(crate_of("core::ptr::drop_in_place<tonic::Status>"), "tonic");
    assert_eq!(
        crate_of("<&mut serde_json::de::Deserializer<R>>::f"),
        "serde_json"
    );
    assert_eq!(crate_of("ring_core_0_17_14__aes_hw_encrypt"), "[C]");
    assert_eq!(crate_of("ZSTD_compress"), "[C]");
}

#[test]
fn fuzz_runs_one_round_of_two_thousand_cases_by_default() {
    let Command::Fuzz(args) = parse(&["fuzz"]).command else {
        panic!("not the fuzz subcommand");
    };
    assert_eq!(
        (args.cases, args.minutes, args.dry_run),
        (2_000, None, false)
    );
    let Command::Fuzz(args) = parse(&["fuzz", "--cases", "500", "--minutes", "2"]).command else {
        panic!("not the fuzz subcommand");
    };
    assert_eq!((args.cases, args.minutes), (500, Some(2)));
    assert!(Cli::try_parse_from(["xtask", "fuzz", "--cases", "0"]).is_err());
    assert!(Cli::try_parse_from(["xtask", "fuzz", "--minutes", "0"]).is_err());
    assert!(Cli::try_parse_from(["xtask", "fuzz", "--minutes", "soon"]).is_err());
    assert_eq!(
        crate::fuzz::cargo_args(),
        ["test", "--workspace", "--", "props::"].map(OsString::from)
    );
}

#[test]
fn fuzz_counts_the_property_tests_and_failures_of_a_round() {
    use crate::fuzz::Round;
    let mut round = Round::default();
    for line in [
        "running 3 tests",
        "test tunnel::ssm::mux::props::prop_decode_survives_arbitrary_bytes ... ok",
        "test resume::props::a_data_frame_claiming_4_gib_is_an_error_without_allocating ... ok",
        "test procd::props::prop_read_line_keeps_to_its_limit ... FAILED",
        "test procd::tests::frames_round_trip_and_oversized_ones_are_refused ... ok",
        "test resume::props::prop_link_survives_arbitrary_bytes ... ok",
        "test result: FAILED. 3 passed; 1 failed; 0 ignored",
    ] {
        round.count(line);
    }
    assert_eq!(
        round,
        Round {
            properties: 2,
            fixed: 1,
            failed: vec!["procd::props::prop_read_line_keeps_to_its_limit".to_owned()],
        }
    );
}

#[test]
fn fuzz_reports_the_failure_seeds_proptest_wrote_during_the_round() {
    use crate::fuzz::regressions_written;
    let root = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let header = "# Seeds for failure cases proptest has generated in the past.\n";
    write(
        "agent/proptest-regressions/procd/props.txt",
        &format!("{header}cc 01ab # shrinks to input = []\n"),
    );
    // Only the workspace's own files count, not a build's.
    write("target/proptest-regressions/x.txt", "cc ffff\n");
    let since = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    assert_eq!(
        regressions_written(root.path(), since),
        [(
            std::path::PathBuf::from("agent/proptest-regressions/procd/props.txt"),
            vec!["cc 01ab # shrinks to input = []".to_owned()]
        )]
    );
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    assert!(regressions_written(root.path(), later).is_empty());
}
