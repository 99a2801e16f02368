//! Dev Container conformance: the reference CLI's own fixtures (`shared/devcontainer/reference-tests`, the "L" ones of
//! NOTES.md §6 that need no registry beyond their base image) run end to end through `skiff up` on the real Docker
//! engine, with the base images they name provided by local stand-ins (`cargo xtask images`).
//!
//! The checks are data: `cases!` below is a table of rows (a fixture or an inline devcontainer.json, a workspace name,
//! what the machine needs, and steps: `up` with its expected errors or output, commands in the container with their
//! expected output, files expected on the host), run by one driver, `run`.
//! Each row is a test of its own, named for what it proves.
//! A row this machine cannot run (arm64 code, Compose v2) says why and passes; `NOT_RUN` lists the fixtures skiff
//! cannot run at all, with the reason.
//! The lifecycle ordering oracle (with a stop and a second `up`) and the bad-input cases are rows too.
//! Features from a registry and a tarball URL run against a real registry server (`skiff_tests::registry`, Debian's
//! `docker-registry` started on 127.0.0.1 per test) and a file server (`skiff_tests::file_server`), with the Features
//! of `tests/fixtures/features-oci`; `waitFor` has a test of when `up` says ready.
//! The shared folder is `../shared` beside the repository, or `$SKIFF_SHARED_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

use skiff_tests::file_server::FileServer;
use skiff_tests::registry::Registry;
use skiff_tests::{Sandbox, docker_inspect, require_docker};

/// The shared test material's reference fixtures.
fn reference_dir() -> PathBuf {
    let shared = match std::env::var_os("SKIFF_SHARED_DIR") {
        Some(shared) => PathBuf::from(shared),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let folder = shared.join("devcontainer/reference-tests");
    assert!(
        folder.is_dir(),
        "the reference fixtures are missing: looked in {}; set SKIFF_SHARED_DIR to the shared folder (the one holding \
         devcontainer/NOTES.md)",
        folder.display()
    );
    folder
}

/// Copies a fixture folder into the sandbox as workspace `name`, with every folder writable by anyone: the dev
/// containers' non-root users write their markers into the bind-mounted workspace (the reference CLI's tests run as
/// uid 1000, which those users share; here the tests run as root).
fn workspace(sandbox: &Sandbox, fixture: &str, name: &str) -> PathBuf {
    let target = sandbox.root.path().join("projects").join(name);
    copy_writable(&reference_dir().join(fixture), &target);
    target
}

fn copy_writable(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("creating a folder");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    for entry in std::fs::read_dir(from)
        .unwrap_or_else(|error| panic!("reading {}: {error}", from.display()))
    {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_writable(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copying a file");
            let mode = std::fs::metadata(entry.path())
                .expect("metadata")
                .permissions()
                .mode();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode | 0o644))
                .expect("chmod");
        }
    }
}

/// Writes a workspace with `.devcontainer/devcontainer.json` holding `config`, plus `files`.
fn inline_workspace(
    sandbox: &Sandbox,
    name: &str,
    config: &str,
    files: &[(&str, &str)],
) -> PathBuf {
    let folder = sandbox.root.path().join("projects").join(name);
    std::fs::create_dir_all(folder.join(".devcontainer")).expect("mkdir");
    std::fs::write(folder.join(".devcontainer/devcontainer.json"), config).expect("write");
    for (path, text) in files {
        std::fs::write(folder.join(path), text).expect("write");
    }
    folder
}

/// `skiff up` of a workspace; `Ok(stderr)` or `Err(stderr)`.
fn up(
    sandbox: &Sandbox,
    folder: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Result<String, String> {
    let mut command = sandbox.skiff();
    command.arg("up").args(extra).arg(folder);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("running skiff up");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// Runs `sh -c SCRIPT` in the workspace's dev container; its standard output, trimmed.
fn sh(sandbox: &Sandbox, name: &str, script: &str) -> String {
    sandbox
        .ok(&["exec", name, "--", "sh", "-c", script])
        .trim()
        .to_owned()
}

/// `skiff up` fails, and its standard error names the workspace's devcontainer.json and holds every needle.
fn expect_error(sandbox: &Sandbox, folder: &Path, needles: &[&str]) {
    let stderr = match up(sandbox, folder, &[], &[]) {
        Ok(stderr) => panic!("up succeeded: {stderr}"),
        Err(stderr) => stderr,
    };
    let file = folder.join(".devcontainer/devcontainer.json");
    assert!(
        stderr.contains(&file.display().to_string()),
        "the error does not name {}: {stderr}",
        file.display()
    );
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "the error lacks {needle:?}: {stderr}"
        );
    }
}

/// Whether this machine's Docker can start a privileged container (a sandboxed engine may refuse).
fn privileged_containers_run() -> bool {
    Command::new("docker")
        .args([
            "run",
            "--rm",
            "--privileged",
            "--entrypoint",
            "/bin/true",
            skiff_tests::BASE_IMAGE,
        ])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn compose_v2() -> bool {
    Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn can_run_arm64() -> bool {
    std::env::consts::ARCH == "aarch64"
        || Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists()
}

/// The numbered marker files of the lifecycle fixtures, in number order.
fn markers(folder: &Path) -> Vec<String> {
    let mut found: Vec<(u32, String)> = std::fs::read_dir(folder)
        .expect("reading the workspace")
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".testMarker") && name != "saved_value.testMarker")
        .filter_map(|name| Some((name.split('.').next()?.parse().ok()?, name)))
        .collect();
    found.sort();
    found.into_iter().map(|(_, name)| name).collect()
}

fn compose_project(sandbox: &Sandbox, name: &str) -> String {
    docker_inspect(
        "{{index .Config.Labels \"com.docker.compose.project\"}}",
        &sandbox.container_of(name),
    )
}

// The table's types and its driver.

/// Where a row's workspace comes from.
enum Source {
    /// A reference fixture folder, by its path under `reference-tests`, copied writable.
    Fixture(&'static str),
    /// A `.devcontainer/devcontainer.json` holding this text, plus files (path in the workspace, text).
    Inline(&'static str, &'static [(&'static str, &'static str)]),
}

/// What a row needs of this machine.
enum Needs {
    /// Nothing: the row fails before anything reaches Docker.
    Nothing,
    /// A Docker engine and the base image (fails the test without them).
    Docker,
    /// Docker, and running arm64 code; without it the row says so and passes.
    Arm64,
    /// Docker, and Compose v2; without it the row says this reason and passes.
    ComposeV2(&'static str),
}

/// What a text must be.
enum Expect {
    Is(&'static str),
    NotEmpty,
    Contains(&'static [&'static str]),
    NotEndingWith(&'static str),
}

impl Expect {
    /// Fails the test, naming `what`, unless `actual` is as expected; `fill` fills the placeholders of the expected
    /// text.
    fn check(&self, actual: &str, what: &str, fill: impl Fn(&str) -> String) {
        match self {
            Expect::Is(expected) => {
                let expected = fill(expected);
                assert_eq!(
                    actual, expected,
                    "{what}: expected {expected:?}, found {actual:?}"
                )
            }
            Expect::NotEmpty => assert!(!actual.is_empty(), "{what}: empty"),
            Expect::Contains(needles) => {
                for needle in *needles {
                    let needle = fill(needle);
                    assert!(
                        actual.contains(&needle),
                        "{what}: {needle:?} missing from {actual:?}"
                    );
                }
            }
            Expect::NotEndingWith(suffix) => {
                let suffix = fill(suffix);
                assert!(
                    !actual.ends_with(&suffix),
                    "{what}: {actual:?} ends with {suffix:?}"
                )
            }
        }
    }
}

/// One step of a row, run in order. Strings may hold `{name}` (the workspace's name), `{folder}` (its folder) and
/// `{config}` (its `.devcontainer/devcontainer.json`), replaced before use.
enum Step {
    /// Gives the workspace folder to uid and gid 4242 (the owner `updateRemoteUserUID` hands to the remote user).
    Chown,
    /// Builds folder `context` of the workspace as image `tag` with Docker's classic builder; the tag is removed
    /// when the row ends (its layers go with the workspace's image).
    BuildImage {
        context: &'static str,
        tag: &'static str,
    },
    /// `skiff up` with these arguments and variables succeeds, and its standard error holds every needle.
    Up {
        args: &'static [&'static str],
        env: &'static [(&'static str, &'static str)],
        stderr: &'static [&'static str],
    },
    /// `skiff up` fails, and its standard error holds every needle.
    UpFails(&'static [&'static str]),
    /// `skiff up` fails; its standard error holds every needle of `privileged` where this machine's Docker starts
    /// privileged containers, else every needle of `refused` (the engine refused to start one).
    UpFailsPrivileged {
        privileged: &'static [&'static str],
        refused: &'static [&'static str],
    },
    /// `skiff stop`.
    Stop,
    /// Replaces the workspace's `.devcontainer/devcontainer.json`.
    WriteConfig(&'static str),
    /// `sh -c SCRIPT` in the dev container: its output, trimmed, is as expected.
    Sh {
        script: &'static str,
        expect: Expect,
        what: &'static str,
    },
    /// `skiff exec -- env` prints each `KEY=VALUE` as a line.
    Env(&'static [(&'static str, &'static str)]),
    /// These files exist in the workspace folder on the host.
    HostFiles(&'static [&'static str]),
    /// The numbered marker files in the workspace folder, in number order, are exactly these lists one after
    /// another.
    Markers(&'static [&'static [&'static str]]),
    /// The dev container's Compose project (its label).
    ComposeProject(Expect),
    /// Exactly this many containers carry the workspace's label.
    Containers(usize),
    /// `docker inspect --format FORMAT` of the workspace's container (found by its label).
    Inspect {
        format: &'static str,
        expect: Expect,
        what: &'static str,
    },
    /// The `id`s of the container's `devcontainer.metadata` entries, joined with commas.
    MetadataIds(&'static str),
    /// `sh -c SCRIPT` succeeds in a fresh container of the workspace container's image.
    InImage {
        script: &'static str,
        what: &'static str,
    },
}

/// One row: a workspace, what it needs, and what it must do.
struct Case {
    source: Source,
    /// The workspace's folder name, so its name.
    name: &'static str,
    needs: Needs,
    steps: &'static [Step],
}

/// Removes an image tag when dropped.
struct Untag(&'static str);

impl Drop for Untag {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rmi", "-f", self.0]).output();
    }
}

/// Runs row `test` to its end, failing the test at the first step that does not hold.
fn run(test: &str, case: &Case) {
    match &case.needs {
        Needs::Nothing => {}
        Needs::Docker => require_docker(),
        Needs::Arm64 => {
            require_docker();
            if !can_run_arm64() {
                eprintln!(
                    "conformance: unsupported here: {test}: builds for linux/arm64, and this amd64 machine has no qemu \
                     binfmt handler to run arm64 code"
                );
                return;
            }
        }
        Needs::ComposeV2(reason) => {
            require_docker();
            if !compose_v2() {
                eprintln!("conformance: unsupported here: {test}: {reason}");
                return;
            }
        }
    }
    // Rows run one at a time, as they did in one test before they were a table: Docker's classic builder shares
    // cached layers between the rows' image builds, and a row's `delete` removing its image (and the untagged
    // layers under it) while another row builds on those layers fails that build ("unknown parent image ID").
    // The guard is made before the sandbox, so the sandbox's deletes end before the next row starts.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let sandbox = Sandbox::new();
    let folder = match &case.source {
        Source::Fixture(fixture) => workspace(&sandbox, fixture, case.name),
        Source::Inline(config, files) => inline_workspace(&sandbox, case.name, config, files),
    };
    let config = folder.join(".devcontainer/devcontainer.json");
    let fill = |text: &str| {
        text.replace("{name}", case.name)
            .replace("{folder}", &folder.display().to_string())
            .replace("{config}", &config.display().to_string())
    };
    let holds_all = |stderr: &str, needles: &[&str], what: &str| {
        for needle in needles {
            let needle = fill(needle);
            assert!(
                stderr.contains(&needle),
                "{test}: {what}: {needle:?} missing from:\n{stderr}"
            );
        }
    };
    let labelled = || {
        skiff_tests::containers_with_label("skiff.workspace", case.name)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{test}: no container was made"))
    };
    let mut _untag = Vec::new();
    for step in case.steps {
        match step {
            Step::Chown => nix::unistd::chown(
                &folder,
                Some(nix::unistd::Uid::from_raw(4242)),
                Some(nix::unistd::Gid::from_raw(4242)),
            )
            .expect("chown"),
            Step::BuildImage { context, tag } => {
                _untag.push(Untag(tag));
                let built = Command::new("docker")
                    .args(["build", "-q", "-t", tag])
                    .arg(folder.join(context))
                    .env("DOCKER_BUILDKIT", "0")
                    .output()
                    .expect("running docker build");
                assert!(
                    built.status.success(),
                    "{test}: building {tag}: {}",
                    String::from_utf8_lossy(&built.stderr)
                );
            }
            Step::Up { args, env, stderr } => {
                let args: Vec<String> = args.iter().map(|arg| fill(arg)).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let output = up(&sandbox, &folder, &args, env)
                    .unwrap_or_else(|stderr| panic!("{test}: skiff up {args:?} failed: {stderr}"));
                holds_all(&output, stderr, "up's standard error");
            }
            Step::UpFails(needles) => match up(&sandbox, &folder, &[], &[]) {
                Ok(stderr) => panic!("{test}: up succeeded: {stderr}"),
                Err(stderr) => holds_all(&stderr, needles, "up's error"),
            },
            Step::UpFailsPrivileged {
                privileged,
                refused,
            } => match up(&sandbox, &folder, &[], &[]) {
                Ok(stderr) => panic!("{test}: up succeeded: {stderr}"),
                Err(stderr) if privileged_containers_run() => {
                    holds_all(&stderr, privileged, "up's error")
                }
                // The engine refuses privileged containers; the container is made with the merged settings all the
                // same, and those are what the steps after this one check.
                Err(stderr) => holds_all(
                    &stderr,
                    refused,
                    "up's error (this engine refuses privileged containers)",
                ),
            },
            Step::Stop => {
                sandbox.ok(&["stop", case.name]);
            }
            Step::WriteConfig(text) => std::fs::write(&config, text).expect("write"),
            Step::Sh {
                script,
                expect,
                what,
            } => expect.check(
                &sh(&sandbox, case.name, script),
                &format!("{test}: {what}"),
                fill,
            ),
            Step::Env(variables) => {
                let env = sandbox.ok(&["exec", case.name, "--", "env"]);
                for (key, value) in *variables {
                    assert!(
                        env.lines().any(|line| line == format!("{key}={value}")),
                        "{test}: containerEnv {key}={value:?} missing from:\n{env}"
                    );
                }
            }
            Step::HostFiles(files) => {
                for file in *files {
                    assert!(
                        folder.join(file).is_file(),
                        "{test}: {file} is missing on the host"
                    );
                }
            }
            Step::Markers(expected) => {
                assert_eq!(
                    markers(&folder),
                    expected.concat(),
                    "{test}: the marker files"
                )
            }
            Step::ComposeProject(expect) => expect.check(
                &compose_project(&sandbox, case.name),
                &format!("{test}: the Compose project name"),
                fill,
            ),
            Step::Containers(count) => assert_eq!(
                skiff_tests::containers_with_label("skiff.workspace", case.name).len(),
                *count,
                "{test}: containers made"
            ),
            Step::Inspect {
                format,
                expect,
                what,
            } => expect.check(
                &docker_inspect(format, &labelled()),
                &format!("{test}: {what}"),
                fill,
            ),
            Step::MetadataIds(expected) => {
                let label = docker_inspect(
                    "{{index .Config.Labels \"devcontainer.metadata\"}}",
                    &labelled(),
                );
                let entries: serde_json::Value = serde_json::from_str(&label)
                    .unwrap_or_else(|error| panic!("{test}: label {label:?}: {error}"));
                let ids: Vec<&str> = entries
                    .as_array()
                    .unwrap_or_else(|| panic!("{test}: the label is not an array: {label}"))
                    .iter()
                    .filter_map(|entry| entry.get("id").and_then(serde_json::Value::as_str))
                    .collect();
                assert_eq!(ids.join(","), *expected, "{test}: metadata entry ids");
            }
            Step::InImage { script, what } => {
                let image = docker_inspect("{{.Config.Image}}", &labelled());
                let status = Command::new("docker")
                    .args([
                        "run",
                        "--rm",
                        "--entrypoint",
                        "/bin/sh",
                        &image,
                        "-c",
                        script,
                    ])
                    .status()
                    .expect("running docker run");
                assert!(status.success(), "{test}: {what}");
            }
        }
    }
}

/// Makes one `#[test]` per row, named for what the row proves, and `CASES`, the whole table.
macro_rules! cases {
    ($($(#[$meta:meta])* $test:ident: $case:expr;)*) => {
        /// Every row, by its test's name.
        const CASES: &[(&str, Case)] = &[$((stringify!($test), $case)),*];
        $(
            $(#[$meta])*
            #[test]
            fn $test() {
                run(stringify!($test), &$case);
            }
        )*
    };
}

/// The fixtures skiff does not run at all, and why.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "configs/compose-Dockerfile-alpine",
        "its Dockerfile runs alpine's `adduser`; no alpine image can be made here and the busybox stand-in has no adduser",
    ),
    (
        "configs/set-up-with-config",
        "a config for `devcontainer set-up` on an existing container (no image); skiff has no set-up command",
    ),
    (
        "configs/set-up-with-metadata",
        "a Dockerfile for `devcontainer set-up` (no devcontainer.json); skiff has no set-up command",
    ),
];

const COMPOSE_NAME: &str = "its compose file's top-level `name:` is Compose v2; this machine has only docker-compose v1, which rejects it";

/// `up` of the workspace as it is, expecting success and nothing of its output.
const UP: Step = Step::Up {
    args: &[],
    env: &[],
    stderr: &[],
};

/// `onCreateCommand` ... `postAttachCommand` of each Feature and then devContainer, as `lifecycle-hooks-inline-commands`
/// orders them (panda installed before tiger).
const FIRST_UP_ORDER: &[&str] = &[
    "0.panda.onCreateCommand.testMarker",
    "1.tiger.onCreateCommand.testMarker",
    "2.devContainer.onCreateCommand.testMarker",
    "3.panda.updateContentCommand.testMarker",
    "4.tiger.updateContentCommand.testMarker",
    "5.devContainer.updateContentCommand.testMarker",
    "6.panda.postCreateCommand.testMarker",
    "7.tiger.postCreateCommand.testMarker",
    "8.devContainer.postCreateCommand.testMarker",
    "9.panda.postStartCommand.testMarker",
    "10.tiger.postStartCommand.testMarker",
    "11.devContainer.postStartCommand.testMarker",
    "12.panda.postAttachCommand.testMarker",
    "13.tiger.postAttachCommand.testMarker",
    "14.devContainer.postAttachCommand.testMarker",
];

/// What a stop and a second `up` add to those: only the start and attach hooks, in the same order.
const SECOND_UP_ORDER: &[&str] = &[
    "15.panda.postStartCommand.testMarker",
    "16.tiger.postStartCommand.testMarker",
    "17.devContainer.postStartCommand.testMarker",
    "18.panda.postAttachCommand.testMarker",
    "19.tiger.postAttachCommand.testMarker",
    "20.devContainer.postAttachCommand.testMarker",
];

/// `updateRemoteUserUID` gave the remote user the workspace owner's UID and GID.
const UPDATED_UID: &[Step] = &[
    Step::Chown,
    UP,
    Step::Sh {
        script: "echo $(id -un):$(id -u):$(id -g)",
        expect: Expect::Is("foo:4242:4242"),
        what: "remote user after updateRemoteUserUID",
    },
];

/// Local Features with dependencies install, in an order that lets each start, and the container runs.
const FEATURES_INSTALL: &[Step] = &[
    UP,
    Step::Sh {
        script: "echo ok",
        expect: Expect::Is("ok"),
        what: "the container runs",
    },
];

/// A Feature dependency cycle: `up` names the file, the property and the Features of the cycle.
const FEATURE_CYCLE: &[Step] = &[Step::UpFails(&[
    "\"features\"",
    "cycle (./a, ./b, ./c)",
    "devcontainer.json",
])];

/// The parsed text of `remoteEnv.TEST_ESCAPING` in the reference fixtures.
const ESCAPED: &str = "{\n  \"fo$o\": \"ba'r\"\n}";

cases! {
    /// `configs/image`: postCreateCommand sees remoteEnv, runArgs' `-e` reaches `${containerEnv:...}`, remoteEnv's
    /// escaping holds, and `${containerEnv:PATH}` is filled.
    image_runs_hooks_with_remote_env_and_container_env: Case {
        source: Source::Fixture("configs/image"),
        name: "image",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "cat /postCreateCommand.txt",
                expect: Expect::Is("Val: ENV"),
                what: "postCreateCommand with remoteEnv",
            },
            Step::Sh {
                script: "echo \"$TEST_RE\"",
                expect: Expect::Is("TEST_VALUE3"),
                what: "runArgs -e seen through ${containerEnv:TEST_CE}",
            },
            Step::Sh {
                script: "echo \"$TEST_ESCAPING\"",
                expect: Expect::Is(ESCAPED),
                what: "remoteEnv escaping",
            },
            Step::Sh {
                script: "echo \"$CONTAINER_PATH\"",
                expect: Expect::NotEmpty,
                what: "${containerEnv:PATH}",
            },
        ],
    };

    /// `configs/image-with-mounts`: a volume mount of devcontainer.json is there.
    image_with_mounts_mounts_the_volume: Case {
        source: Source::Fixture("configs/image-with-mounts"),
        name: "image-with-mounts",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "test -d /home/test_devcontainer_config && echo yes",
                expect: Expect::Is("yes"),
                what: "volume mount",
            },
        ],
    };

    /// `configs/image-with-parallel-initialize-command`: both initializeCommands ran on the host.
    parallel_initialize_commands_both_run_on_the_host: Case {
        source: Source::Fixture("configs/image-with-parallel-initialize-command"),
        name: "image-with-parallel-initialize-command",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::HostFiles(&[
                "initializeCommand.1.testMarker",
                "initializeCommand.2.testMarker",
            ]),
        ],
    };

    /// `configs/image-with-local-feature`: a local Feature id without `./` is refused, naming the file, the property
    /// and the fix.
    local_feature_without_dot_slash_is_refused_naming_the_fix: Case {
        source: Source::Fixture("configs/image-with-local-feature"),
        name: "local-feature",
        needs: Needs::Docker,
        steps: &[Step::UpFails(&[
            "\"features\"",
            "prepend its name with \"./\"",
            ".devcontainer.json",
        ])],
    };

    /// `configs/image-metadata`: the image's metadata and the local Features' merge onto the container (ids in
    /// order, init, privileged) and the Features install into the image. The Features carry placeholder hooks (`one`,
    /// `three`, ...) that are no commands, so `up` stops at onCreateCommand, naming the hook, its Feature and the
    /// file; an engine that refuses privileged containers stops it at the start instead.
    image_metadata_merges_image_and_feature_metadata: Case {
        source: Source::Fixture("configs/image-metadata"),
        name: "image-metadata",
        needs: Needs::Docker,
        steps: &[
            Step::BuildImage {
                context: "base-image",
                tag: "image-metadata-test-base",
            },
            Step::UpFailsPrivileged {
                privileged: &["onCreateCommand", "./localFeatureA", "devcontainer.json"],
                refused: &["starting container", "unable to apply caps"],
            },
            Step::MetadataIds("baseFeature,./localFeatureA,./localFeatureB"),
            Step::Inspect {
                format: "{{.HostConfig.Init}}",
                expect: Expect::Is("true"),
                what: "init from Feature A",
            },
            Step::Inspect {
                format: "{{.HostConfig.Privileged}}",
                expect: Expect::Is("true"),
                what: "privileged from Feature B",
            },
            Step::InImage {
                script: "test -f /localFeatureA && test -f /localFeatureB",
                what: "the Features' install.sh did not run in the image",
            },
        ],
    };

    /// `configs/dockerfile-without-features`: postCreateCommand through `sudo tee`, and the remote user from the
    /// image's metadata.
    dockerfile_without_features_runs_as_the_image_metadata_user: Case {
        source: Source::Fixture("configs/dockerfile-without-features"),
        name: "dockerfile-without-features",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "cat /postCreateCommand.txt",
                expect: Expect::Is("Val: ENV"),
                what: "postCreateCommand through sudo tee",
            },
            Step::Sh {
                script: "id -un",
                expect: Expect::Is("node"),
                what: "remote user from the image's metadata",
            },
        ],
    };

    /// `configs/dockerfile-without-features`, its sub-folder config chosen with `--config`: that config's hook and
    /// environment apply.
    dockerfile_subfolder_config_applies_with_dash_dash_config: Case {
        source: Source::Fixture("configs/dockerfile-without-features"),
        name: "dockerfile-subfolder",
        needs: Needs::Docker,
        steps: &[
            Step::Up {
                args: &["--config", "{folder}/.devcontainer/subfolder/devcontainer.json"],
                env: &[],
                stderr: &[],
            },
            Step::Sh {
                script: "test -f /subfolderConfigPostCreateCommand.txt && echo yes",
                expect: Expect::Is("yes"),
                what: "sub-folder postCreateCommand",
            },
            Step::Sh {
                script: "echo $SUBFOLDER_CONFIG_REMOTE_ENV $SUBFOLDER_CONFIG_IMAGE_ENV",
                expect: Expect::Is("true true"),
                what: "sub-folder env",
            },
        ],
    };

    /// `configs/dockerfile-with-parallel-commands`: every command of the object-form hooks ran.
    parallel_hook_commands_all_run: Case {
        source: Source::Fixture("configs/dockerfile-with-parallel-commands"),
        name: "dockerfile-with-parallel-commands",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "test -f /tmp/postCreateCommand1.testmarker && echo yes",
                expect: Expect::Is("yes"),
                what: "postCreateCommand1",
            },
            Step::Sh {
                script: "test -f /tmp/postCreateCommand2.testmarker && echo yes",
                expect: Expect::Is("yes"),
                what: "postCreateCommand2",
            },
            Step::Sh {
                script: "test -f /tmp/postStartCommand1.testmarker && echo yes",
                expect: Expect::Is("yes"),
                what: "postStartCommand1",
            },
            Step::Sh {
                script: "test -f /tmp/postStartCommand2.testmarker && echo yes",
                expect: Expect::Is("yes"),
                what: "postStartCommand2",
            },
            Step::Sh {
                script: "test -f /tmp/postAttachCommand1.testmarker && echo yes",
                expect: Expect::Is("yes"),
                what: "postAttachCommand1",
            },
            Step::Sh {
                script: "test -f /tmp/postAttachCommand2.testmarker && echo yes",
                expect: Expect::Is("yes"),
                what: "postAttachCommand2",
            },
        ],
    };

    /// `configs/updateUID`: the remote user gets the workspace owner's UID and GID.
    update_uid_gives_the_remote_user_the_owners_ids: Case {
        source: Source::Fixture("configs/updateUID"),
        name: "updateuid",
        needs: Needs::Docker,
        steps: UPDATED_UID,
    };

    /// `configs/updateUIDOnly`: the GID is taken by another group, so the user keeps its GID and gets the UID.
    update_uid_only_keeps_a_taken_gid: Case {
        source: Source::Fixture("configs/updateUIDOnly"),
        name: "updateuidonly",
        needs: Needs::Docker,
        steps: &[
            Step::Chown,
            Step::Up {
                args: &[],
                env: &[("LOCAL_GID", "4242")],
                stderr: &[],
            },
            Step::Sh {
                script: "echo $(id -un):$(id -u):$(id -g)",
                expect: Expect::Is("foo:4242:4321"),
                what: "remote user after updateRemoteUserUID",
            },
        ],
    };

    /// `configs/updateUIDamd64`: the same for an image built for linux/amd64.
    update_uid_amd64: Case {
        source: Source::Fixture("configs/updateUIDamd64"),
        name: "updateuidamd64",
        needs: Needs::Docker,
        steps: UPDATED_UID,
    };

    /// `configs/updateUIDamd64-platform-option`: the same with the platform given as a build option.
    update_uid_amd64_platform_option: Case {
        source: Source::Fixture("configs/updateUIDamd64-platform-option"),
        name: "updateuidamd64-platform-option",
        needs: Needs::Docker,
        steps: UPDATED_UID,
    };

    /// `configs/updateUIDarm64`: the same for linux/arm64.
    update_uid_arm64: Case {
        source: Source::Fixture("configs/updateUIDarm64"),
        name: "updateuidarm64",
        needs: Needs::Arm64,
        steps: UPDATED_UID,
    };

    /// `configs/updateUIDarm64-platform-option`.
    update_uid_arm64_platform_option: Case {
        source: Source::Fixture("configs/updateUIDarm64-platform-option"),
        name: "updateuidarm64-platform-option",
        needs: Needs::Arm64,
        steps: UPDATED_UID,
    };

    /// `configs/updateUIDarm64v8`.
    update_uid_arm64v8: Case {
        source: Source::Fixture("configs/updateUIDarm64v8"),
        name: "updateuidarm64v8",
        needs: Needs::Arm64,
        steps: UPDATED_UID,
    };

    /// `configs/updateUIDarm64v8-platform-option`.
    update_uid_arm64v8_platform_option: Case {
        source: Source::Fixture("configs/updateUIDarm64v8-platform-option"),
        name: "updateuidarm64v8-platform-option",
        needs: Needs::Arm64,
        steps: UPDATED_UID,
    };

    /// `configs/compose-image-without-features-minimal`: a Compose service runs the hooks, in its workspaceFolder.
    compose_minimal_runs_hooks_in_the_workspace_folder: Case {
        source: Source::Fixture("configs/compose-image-without-features-minimal"),
        name: "compose-image-without-features-minimal",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "cat /postCreateCommand.txt",
                expect: Expect::Is("Val: ENV"),
                what: "postCreateCommand",
            },
            Step::Sh {
                script: "pwd",
                expect: Expect::Is("/workspace"),
                what: "workspaceFolder",
            },
        ],
    };

    /// `configs/compose-without-name`: the project is named `<workspace>_devcontainer`.
    compose_without_name_names_the_project_after_the_folder: Case {
        source: Source::Fixture("configs/compose-without-name"),
        name: "compose-without-name",
        needs: Needs::Docker,
        steps: &[UP, Step::ComposeProject(Expect::Is("{name}_devcontainer"))],
    };

    /// `configs/compose-image-with-mounts`: mounts from devcontainer.json and from the compose file are both there.
    compose_with_mounts_mounts_both_kinds: Case {
        source: Source::Fixture("configs/compose-image-with-mounts"),
        name: "compose-image-with-mounts",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "test -d /home/test_devcontainer_config && test -d /home/test_docker_compose && echo yes",
                expect: Expect::Is("yes"),
                what: "mounts from devcontainer.json and compose",
            },
        ],
    };

    /// `configs/compose-image-without-features`: a node service beside mongo, with remoteUser.
    compose_node_and_mongo_runs_as_the_remote_user: Case {
        source: Source::Fixture("configs/compose-image-without-features"),
        name: "compose-image-without-features",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "id -un",
                expect: Expect::Is("node"),
                what: "remoteUser",
            },
        ],
    };

    /// `configs/compose-Dockerfile-without-features`: a service built from a Dockerfile runs the hooks with remoteEnv
    /// escaped as the reference does.
    compose_dockerfile_runs_hooks_with_remote_env: Case {
        source: Source::Fixture("configs/compose-Dockerfile-without-features"),
        name: "compose-dockerfile-without-features",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Sh {
                script: "cat /postCreateCommand.txt",
                expect: Expect::Is("Val: ENV"),
                what: "postCreateCommand",
            },
            Step::Sh {
                script: "echo \"$TEST_ESCAPING\"",
                expect: Expect::Is(ESCAPED),
                what: "remoteEnv escaping",
            },
        ],
    };

    /// `configs/image-containerEnv-issue`: containerEnv values with spaces, quotes, dollars, backslashes and commands
    /// arrive as written. Named `cli` so the compose file's `../..:/workspaces` holds the workspace folder
    /// `/workspaces/cli`.
    compose_container_env_values_arrive_as_written: Case {
        source: Source::Fixture("configs/image-containerEnv-issue"),
        name: "cli",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Env(&[
                ("SOME_PATH", "/tmp/path/doc-ver/loc"),
                ("VAR_WITH_SPACES", "value with spaces"),
                (
                    "VAR_WITH_QUOTES_WE_WANT_TO_KEEP",
                    "value with \"quotes\" we want to keep",
                ),
                ("VAR_WITH_DOLLAR_SIGN", "value with $dollar sign"),
                ("VAR_WITH_BACK_SLASH", "value with \\back slash"),
                ("ENV_WITH_COMMAND", "bash -c 'echo -n \"Hello, World!\"'"),
            ]),
        ],
    };

    /// `configs/compose-with-name`: the compose file's top-level `name:` names the project.
    compose_with_name_uses_the_files_name: Case {
        source: Source::Fixture("configs/compose-with-name"),
        name: "compose-with-name",
        needs: Needs::ComposeV2(COMPOSE_NAME),
        steps: COMPOSE_NAMED,
    };

    /// `configs/compose-with-name-using-env-var`: the same with the name from a variable.
    compose_with_name_from_an_env_var: Case {
        source: Source::Fixture("configs/compose-with-name-using-env-var"),
        name: "compose-with-name-using-env-var",
        needs: Needs::ComposeV2(COMPOSE_NAME),
        steps: COMPOSE_NAMED,
    };

    /// `configs/compose-with-name-and-custom-yaml`: the same with Compose v2's `!reset` tag.
    compose_with_name_and_custom_yaml: Case {
        source: Source::Fixture("configs/compose-with-name-and-custom-yaml"),
        name: "compose-with-name-and-custom-yaml",
        needs: Needs::ComposeV2(
            "its compose file uses `name:` and the `!reset` tag of Compose v2; this machine has only docker-compose v1",
        ),
        steps: COMPOSE_NAMED,
    };

    /// `container-features/dockerfile-with-v2-local-features-config-inside-dev-container-folder`: the Feature's option
    /// values reach install.sh.
    local_features_inside_the_devcontainer_folder_get_their_options: Case {
        source: Source::Fixture(
            "container-features/dockerfile-with-v2-local-features-config-inside-dev-container-folder",
        ),
        name: "features-inside",
        needs: Needs::Docker,
        steps: HELLO_FEATURE,
    };

    /// `container-features/dockerfile-with-v2-local-features-config-outside-dev-container-folder`: the same with the
    /// config outside `.devcontainer`.
    local_features_config_outside_the_devcontainer_folder_get_their_options: Case {
        source: Source::Fixture(
            "container-features/dockerfile-with-v2-local-features-config-outside-dev-container-folder",
        ),
        name: "features-outside",
        needs: Needs::Docker,
        steps: HELLO_FEATURE,
    };

    /// `container-features/lifecycle-hooks-advanced`: every Feature's and devcontainer.json's hook ran, helper scripts
    /// and parallel commands included.
    lifecycle_hooks_advanced_all_run: Case {
        source: Source::Fixture("container-features/lifecycle-hooks-advanced"),
        name: "lifecycle-hooks-advanced",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::HostFiles(&[
                "helperScript.otter.onCreateCommand.testMarker",
                "helperScript.rabbit.updateContentCommand.testMarker",
                "helperScript.otter.parallel_postCreateCommand_1.testMarker",
                "helperScript.rabbit.parallel_postCreateCommand_2.testMarker",
                "helperScript.devContainer.parallel_postCreateCommand_1.testMarker",
                "helperScript.devContainer.parallel_postCreateCommand_2.testMarker",
                "helperScript.rabbit.postStartCommand.testMarker",
                "helperScript.otter.postAttachCommand.testMarker",
                "i-am-a-rabbit.postStartCommand.testMarker",
                "i-am-an-otter.postAttachCommand.testMarker",
            ]),
        ],
    };

    /// `container-features/lifecycle-hooks-resume-existing-container`: after a stop, the second `up` runs only the
    /// start and attach hooks.
    lifecycle_resume_runs_start_and_attach_again: Case {
        source: Source::Fixture("container-features/lifecycle-hooks-resume-existing-container"),
        name: "lifecycle-hooks-resume-existing-container",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Stop,
            UP,
            Step::Markers(&[&[
                "0.hippo.postStartCommand.testMarker",
                "1.hippo.postAttachCommand.testMarker",
                "2.hippo.postStartCommand.testMarker",
                "3.hippo.postAttachCommand.testMarker",
            ]]),
        ],
    };

    /// `container-features/lifecycle-hooks-inline-commands`: the reference order of every hook from the Features
    /// (installed panda, then tiger) and devcontainer.json, and after a stop and a second `up` only the start and
    /// attach hooks, in order.
    lifecycle_order_matches_the_reference_including_after_stop_and_up: Case {
        source: Source::Fixture("container-features/lifecycle-hooks-inline-commands"),
        name: "lifecycle-order",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::Markers(&[FIRST_UP_ORDER]),
            Step::Stop,
            UP,
            Step::Markers(&[FIRST_UP_ORDER, SECOND_UP_ORDER]),
        ],
    };

    /// `container-features/invalid-configs/dockerfile-with-v2-local-features-no-dev-container-folder`: local Features
    /// outside `.devcontainer` are refused, saying where they must be.
    local_features_outside_the_devcontainer_folder_are_refused: Case {
        source: Source::Fixture(
            "container-features/invalid-configs/dockerfile-with-v2-local-features-no-dev-container-folder",
        ),
        name: "features-outside-folder",
        needs: Needs::Docker,
        steps: &[Step::UpFails(&[
            "\"features\"",
            "inside the workspace's .devcontainer folder",
        ])],
    };

    /// `feature-dependencies/dependsOn/local-simple`.
    features_depends_on_simple_install: Case {
        source: Source::Fixture("container-features/feature-dependencies/dependsOn/local-simple"),
        name: "deps-dependson-simple",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/dependsOn/local-with-options`.
    features_depends_on_with_options_install: Case {
        source: Source::Fixture("container-features/feature-dependencies/dependsOn/local-with-options"),
        name: "deps-dependson-with-options",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/installsAfter/local-simple`.
    features_installs_after_simple_install: Case {
        source: Source::Fixture("container-features/feature-dependencies/installsAfter/local-simple"),
        name: "deps-installsafter-simple",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/dependsOn-and-installsAfter/local-simple`.
    features_depends_on_and_installs_after_install: Case {
        source: Source::Fixture(
            "container-features/feature-dependencies/dependsOn-and-installsAfter/local-simple",
        ),
        name: "deps-dependson-and-installsafter-simple",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/overrideFeatureInstallOrder/local-simple`.
    features_override_install_order_simple_install: Case {
        source: Source::Fixture(
            "container-features/feature-dependencies/overrideFeatureInstallOrder/local-simple",
        ),
        name: "deps-overridefeatureinstallorder-simple",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/overrideFeatureInstallOrder/local-intermediate`.
    features_override_install_order_intermediate_install: Case {
        source: Source::Fixture(
            "container-features/feature-dependencies/overrideFeatureInstallOrder/local-intermediate",
        ),
        name: "deps-overridefeatureinstallorder-interme",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/overrideFeatureInstallOrder/local-roundPriority`.
    features_override_install_order_round_priority_install: Case {
        source: Source::Fixture(
            "container-features/feature-dependencies/overrideFeatureInstallOrder/local-roundPriority",
        ),
        name: "deps-overridefeatureinstallorder-roundpr",
        needs: Needs::Docker,
        steps: FEATURES_INSTALL,
    };

    /// `feature-dependencies/dependsOn/invalid-circular`: the cycle is named.
    features_depends_on_cycle_is_named: Case {
        source: Source::Fixture("container-features/feature-dependencies/dependsOn/invalid-circular"),
        name: "feature-cycle",
        needs: Needs::Docker,
        steps: FEATURE_CYCLE,
    };

    /// `feature-dependencies/installsAfter/invalid-circular`: the cycle is named.
    features_installs_after_cycle_is_named: Case {
        source: Source::Fixture("container-features/feature-dependencies/installsAfter/invalid-circular"),
        name: "feature-cycle",
        needs: Needs::Docker,
        steps: FEATURE_CYCLE,
    };

    /// The same cycle: the error names the full path of the file, the property and the Features.
    bad_input_feature_cycle: Case {
        source: Source::Fixture("container-features/feature-dependencies/installsAfter/invalid-circular"),
        name: "cycle",
        needs: Needs::Docker,
        steps: &[Step::UpFails(&["{config}", "\"features\"", "cycle (./a, ./b, ./c)"])],
    };

    /// `image` and `build` together: refused before anything reaches Docker.
    bad_input_image_and_build_together: Case {
        source: Source::Inline(
            r#"{"image": "debian:bookworm", "build": {"dockerfile": "Dockerfile"}}"#,
            &[],
        ),
        name: "image-and-build",
        needs: Needs::Nothing,
        steps: &[Step::UpFails(&["{config}", "\"image\" and \"build\" are both set"])],
    };

    /// A Dockerfile that is not there is named with its property.
    bad_input_missing_dockerfile: Case {
        source: Source::Inline(r#"{"build": {"dockerfile": "Missing.Dockerfile"}}"#, &[]),
        name: "no-dockerfile",
        needs: Needs::Docker,
        steps: &[Step::UpFails(&[
            "{config}",
            "\"build.dockerfile\"",
            "Missing.Dockerfile",
            "does not exist",
        ])],
    };

    /// The reference CLI leaves an unknown variable as written; skiff does too, and warns naming file and variable.
    bad_input_unknown_variable_is_named: Case {
        source: Source::Inline(
            r#"{"image": "debian:bookworm", "containerEnv": {"X": "${localEnvv:HOME}"}}"#,
            &[],
        ),
        name: "unknown-variable",
        needs: Needs::Docker,
        steps: &[
            Step::Up {
                args: &[],
                env: &[],
                stderr: &["{config}: unknown variable ${localEnvv:HOME} is left as written"],
            },
            Step::Sh {
                script: "echo \"$X\"",
                expect: Expect::Is("${localEnvv:HOME}"),
                what: "the variable as written",
            },
        ],
    };

    /// A failing hook is named with the file and its exit code, the hooks after it do not run, and the one container
    /// made stays.
    bad_input_failing_hook_names_file_hook_and_code: Case {
        source: Source::Inline(
            r#"{"image": "debian:bookworm", "onCreateCommand": "exit 3", "postCreateCommand": "touch /never"}"#,
            &[],
        ),
        name: "failing-hook",
        needs: Needs::Docker,
        steps: &[
            Step::UpFails(&["{config}", "onCreateCommand failed with exit code 3", "did not run"]),
            Step::Containers(1),
        ],
    };

    /// A `runArgs` flag skiff does not support is named.
    bad_input_unsupported_run_arg_is_named: Case {
        source: Source::Inline(
            r#"{"image": "debian:bookworm", "runArgs": ["--cgroup-parent=/x"]}"#,
            &[],
        ),
        name: "bad-run-arg",
        needs: Needs::Docker,
        steps: &[Step::UpFails(&["{config}", "\"runArgs\"", "--cgroup-parent", "not supported"])],
    };

    /// A changed devcontainer.json: `up` warns and keeps the container as it was; `up --rebuild` applies the change.
    changed_config_warns_and_rebuild_applies_it: Case {
        source: Source::Inline(
            r#"{"image": "debian:bookworm", "containerEnv": {"V": "one"}}"#,
            &[],
        ),
        name: "changed",
        needs: Needs::Docker,
        steps: &[
            UP,
            Step::WriteConfig(r#"{"image": "debian:bookworm", "containerEnv": {"V": "two"}}"#),
            Step::Up {
                args: &[],
                env: &[],
                stderr: &["devcontainer.json changed", "skiff up --rebuild"],
            },
            Step::Sh {
                script: "echo $V",
                expect: Expect::Is("one"),
                what: "without --rebuild the container stays as it was",
            },
            Step::Up {
                args: &["--rebuild"],
                env: &[],
                stderr: &[],
            },
            Step::Sh {
                script: "echo $V",
                expect: Expect::Is("two"),
                what: "after --rebuild",
            },
        ],
    };
}

/// A compose file's top-level `name:` (Compose v2) names the project, not `<workspace>_devcontainer`.
const COMPOSE_NAMED: &[Step] = &[
    Step::Up {
        args: &[],
        env: &[("CUSTOM_NAME", "custom-name-from-env")],
        stderr: &[],
    },
    Step::ComposeProject(Expect::NotEndingWith("_devcontainer")),
];

/// The `hello` Feature's option values reached its install.sh.
const HELLO_FEATURE: &[Step] = &[
    UP,
    Step::Sh {
        script: "hello",
        expect: Expect::Contains(&["Hello there", "!!!!"]),
        what: "the Feature's option values did not reach install.sh",
    },
];

/// The table keeps at least 30 reference fixtures that run on this machine, every fixture it names is there, and every
/// fixture skiff does not run is there with its reason.
#[test]
fn reference_table_runs_at_least_30_fixtures() {
    let root = reference_dir();
    let mut runnable = std::collections::BTreeSet::new();
    for (test, case) in CASES {
        if let Source::Fixture(fixture) = case.source {
            assert!(root.join(fixture).is_dir(), "{test}: no fixture {fixture}");
            let here = match case.needs {
                Needs::Arm64 => can_run_arm64(),
                Needs::ComposeV2(_) => compose_v2(),
                Needs::Nothing | Needs::Docker => true,
            };
            if here {
                runnable.insert(fixture);
            }
        }
    }
    for (fixture, reason) in NOT_RUN {
        assert!(root.join(fixture).is_dir(), "no fixture {fixture}");
        eprintln!("conformance: not run: {fixture}: {reason}");
    }
    assert!(
        runnable.len() >= 30,
        "only {} reference fixtures run here; the table lost some",
        runnable.len()
    );
}
/// The Feature folder `tests/fixtures/features-oci/<name>` as a tar, files at the top as `devcontainer features
/// package` makes them; gzip-compressed when `gzip`.
fn feature_archive(name: &str, gzip: bool) -> Vec<u8> {
    let folder = skiff_tests::fixtures_dir().join("features-oci").join(name);
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append_dir_all(".", &folder)
        .expect("archiving the Feature");
    let tar = builder.into_inner().expect("finishing the tar");
    if !gzip {
        return tar;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, &tar).expect("compressing");
    encoder.finish().expect("compressing")
}

/// A Feature in a registry that needs a login installs with only the laptop's Docker login for that registry (its
/// `config.json`, as `docker login` leaves it), which `up` sends for the pull; with no login the pull is refused
/// naming the registry and the `docker login` to run.
#[test]
fn a_feature_from_a_registry_that_needs_a_login_installs_with_the_laptops_docker_login() {
    use base64::Engine as _;
    require_docker();
    let registry = Registry::start_with_login("ada", "feature-s3cret");
    registry.push_artifact(
        "private/features/hello",
        "1",
        &feature_archive("hello", false),
        "application/vnd.devcontainers.layer.v1+tar",
    );
    let host = format!("127.0.0.1:{}", registry.port);
    let feature = format!("{host}/private/features/hello:1");
    let sandbox = Sandbox::new();
    let laptop = sandbox.root.path().join("docker-config");
    std::fs::create_dir_all(&laptop).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("ada:feature-s3cret");
    std::fs::write(
        laptop.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    let config = serde_json::json!({
        "image": "debian:bookworm",
        "remoteUser": "root",
        "features": { feature.as_str(): {"greeting": "ahoy"} }
    })
    .to_string();
    let anonymous = inline_workspace(&sandbox, "private-feature-anonymous", &config, &[]);
    let empty = sandbox.root.path().join("no-docker-config");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = up(
        &sandbox,
        &anonymous,
        &[],
        &[("DOCKER_CONFIG", empty.to_str().unwrap())],
    )
    .expect_err("an anonymous pull of a private Feature");
    assert!(
        refused.contains(&format!("registry {host} refuses anonymous access"))
            && refused.contains(&format!("docker login {host}")),
        "{refused}"
    );
    let folder = inline_workspace(&sandbox, "private-feature", &config, &[]);
    let stderr = up(
        &sandbox,
        &folder,
        &[],
        &[("DOCKER_CONFIG", laptop.to_str().unwrap())],
    )
    .unwrap_or_else(|stderr| panic!("up failed: {stderr}"));
    assert!(
        stderr.contains(&format!("pulling Feature {feature}")),
        "{stderr}"
    );
    assert_eq!(
        sh(
            &sandbox,
            "private-feature",
            "cat /usr/local/share/skiff-hello"
        ),
        "ahoy from root"
    );
}

/// A Feature pushed to a real registry and a Feature served as a tarball install with their options through the same
/// path as local Features, are listed in the image's metadata label, and a rebuild reuses both from the agent's cache:
/// the registry serves the layer once, the tarball server answers the second time with 304.
#[test]
fn features_from_a_registry_and_a_tarball_install_and_a_rebuild_reuses_them() {
    require_docker();
    let registry = Registry::start();
    let layer_digest = registry.push_artifact(
        "skiff-test/features/hello",
        "1",
        &feature_archive("hello", false),
        "application/vnd.devcontainers.layer.v1+tar",
    );
    let tarball = FileServer::start(
        "devcontainer-feature-greeter.tgz",
        feature_archive("greeter", true),
    );
    let oci_id = format!("127.0.0.1:{}/skiff-test/features/hello:1", registry.port);
    let tarball_id = format!(
        "http://127.0.0.1:{}/devcontainer-feature-greeter.tgz",
        tarball.port
    );
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "remote-features",
        &serde_json::json!({
            "image": "debian:bookworm",
            "remoteUser": "root",
            "features": {
                oci_id.as_str(): {"greeting": "ahoy"},
                tarball_id.as_str(): {"name": "skiff"}
            }
        })
        .to_string(),
        &[],
    );
    let stderr =
        up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("up failed: {stderr}"));
    assert!(
        stderr.contains(&format!("pulling Feature {oci_id}")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("downloading Feature {tarball_id}")),
        "{stderr}"
    );
    assert_eq!(
        sh(
            &sandbox,
            "remote-features",
            "cat /usr/local/share/skiff-hello"
        ),
        "ahoy from root"
    );
    assert_eq!(
        sh(
            &sandbox,
            "remote-features",
            "cat /usr/local/share/skiff-greeter"
        ),
        "hello skiff"
    );
    assert_eq!(
        sh(&sandbox, "remote-features", "echo $SKIFF_HELLO"),
        "installed"
    );
    let container = sandbox.container_of("remote-features");
    let label = docker_inspect(
        "{{index .Config.Labels \"devcontainer.metadata\"}}",
        &container,
    );
    let entries: serde_json::Value =
        serde_json::from_str(&label).expect("the metadata label is JSON");
    let ids: Vec<&str> = entries
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|entry| entry["id"].as_str())
        .collect();
    assert!(
        ids.contains(&oci_id.as_str()) && ids.contains(&tarball_id.as_str()),
        "{label}"
    );
    assert_eq!(tarball.counts(), (1, 0));

    let stderr = up(&sandbox, &folder, &["--rebuild"], &[])
        .unwrap_or_else(|stderr| panic!("up --rebuild failed: {stderr}"));
    assert!(
        !stderr.contains("pulling Feature") && !stderr.contains("downloading Feature"),
        "{stderr}"
    );
    assert_eq!(
        sh(
            &sandbox,
            "remote-features",
            "cat /usr/local/share/skiff-hello"
        ),
        "ahoy from root"
    );
    assert_eq!(
        tarball.counts(),
        (1, 1),
        "the tarball was downloaded once and then only revalidated"
    );
    let layer_fetches = registry
        .log_text()
        .lines()
        .filter(|line| {
            line.contains(&format!(
                "\"GET /v2/skiff-test/features/hello/blobs/{layer_digest}"
            ))
        })
        .count();
    assert_eq!(
        layer_fetches,
        1,
        "the registry served the layer {layer_fetches} times:\n{}",
        registry.log_text()
    );
}

/// A tag the registry does not have, an artifact that is not a Feature, and a registry nobody serves: each error names
/// the Feature, the registry and what to do, and nothing is built.
#[test]
fn bad_input_registry_features_name_the_feature_registry_and_fix() {
    require_docker();
    let registry = Registry::start();
    registry.push_artifact(
        "skiff-test/features/hello",
        "1",
        &feature_archive("hello", false),
        "application/vnd.devcontainers.layer.v1+tar",
    );
    registry.push_artifact(
        "skiff-test/features/image",
        "1",
        &feature_archive("hello", true),
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    let host = format!("127.0.0.1:{}", registry.port);
    let unused = format!("127.0.0.1:{}", skiff_tests::free_port());
    let sandbox = Sandbox::new();
    let cases = [
        (
            format!("{host}/skiff-test/features/hello:2"),
            vec![
                format!("registry {host} has no"),
                "check the Feature's name and tag".to_owned(),
            ],
        ),
        (
            format!("{host}/skiff-test/features/image:1"),
            vec![
                "is not a Dev Container Feature".to_owned(),
                "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
            ],
        ),
        (
            format!("{unused}/skiff-test/features/hello:1"),
            vec![
                format!("cannot reach registry {unused}"),
                "as a local Feature (\"./hello\")".to_owned(),
            ],
        ),
    ];
    for (index, (id, needles)) in cases.iter().enumerate() {
        let folder = inline_workspace(
            &sandbox,
            &format!("bad-feature-{index}"),
            &serde_json::json!({"image": "debian:bookworm", "features": {id.as_str(): {}}})
                .to_string(),
            &[],
        );
        let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        let named = format!("Feature {id:?}");
        needles.push(&named);
        needles.push("\"features\"");
        expect_error(&sandbox, &folder, &needles);
    }
}

/// `waitFor` (default `updateContentCommand`): `skiff up` says the workspace is ready before `postStartCommand` ends,
/// the workspace is usable then, and `up` stays attached showing the hook's output until it ends, as the reference CLI's
/// `up` does. A client that leaves at ready leaves the hook running in the agent. With `waitFor: postStartCommand`,
/// ready comes after that hook.
#[test]
fn wait_for_runs_later_hooks_after_ready_and_up_stays_attached() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "wait-for",
        r#"{"image": "debian:bookworm",
            "updateContentCommand": "echo update-content-ran",
            "postStartCommand": "sleep 4; date +%s%N >> /tmp/post-start; echo post-start-done"}"#,
        &[],
    );
    let start_up = || up_until_ready(&sandbox, &folder, "wait-for");
    let post_start_runs = || {
        sh(
            &sandbox,
            "wait-for",
            "cat /tmp/post-start 2>/dev/null | wc -l",
        )
        .parse::<usize>()
        .expect("a count")
    };

    let (mut child, receiver, before) = start_up();
    assert!(
        before
            .iter()
            .any(|line| line.contains("update-content-ran")),
        "{before:#?}"
    );
    assert_eq!(
        post_start_runs(),
        0,
        "postStartCommand had ended before ready"
    );
    let status = child.0.wait().expect("waiting for skiff up");
    let after: Vec<String> = receiver.try_iter().collect();
    assert!(status.success(), "up failed after ready: {after:#?}");
    assert!(
        after.iter().any(|line| line.contains("post-start-done")),
        "{after:#?}"
    );
    assert_eq!(post_start_runs(), 1);

    // After a stop, the next start's postStartCommand runs on though the client leaves at ready.
    sandbox.ok(&["stop", "wait-for"]);
    let (child, _receiver, _) = start_up();
    drop(child);
    skiff_tests::wait_until(std::time::Duration::from_secs(30), || {
        post_start_runs() == 2
    })
    .expect("postStartCommand did not run on after the client left");

    let folder = inline_workspace(
        &sandbox,
        "wait-for-start",
        r#"{"image": "debian:bookworm", "waitFor": "postStartCommand",
            "postStartCommand": "sleep 1; touch /tmp/started"}"#,
        &[],
    );
    let (mut child, _receiver, _) = up_until_ready(&sandbox, &folder, "wait-for-start");
    assert_eq!(
        sh(
            &sandbox,
            "wait-for-start",
            "test -e /tmp/started && echo yes || echo no"
        ),
        "yes",
        "ready came before the waitFor hook ended"
    );
    assert!(child.0.wait().expect("waiting for skiff up").success());
}

/// Starts `skiff up FOLDER` and reads its standard error until it says workspace `name` is ready; returns the running
/// client, the rest of its standard error (line by line), and the lines before ready.
fn up_until_ready(
    sandbox: &Sandbox,
    folder: &Path,
    name: &str,
) -> (
    skiff_tests::Reaped,
    std::sync::mpsc::Receiver<String>,
    Vec<String>,
) {
    use std::io::BufRead;
    let mut child = sandbox
        .skiff()
        .arg("up")
        .arg(folder)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running skiff up");
    let (lines, receiver) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let child = skiff_tests::Reaped(child);
    let mut before = Vec::new();
    loop {
        let line = receiver
            .recv_timeout(std::time::Duration::from_secs(120))
            .unwrap_or_else(|_| panic!("skiff up never said {name} is ready: {before:#?}"));
        let ready = line.contains(&format!("workspace {name} is ready"));
        before.push(line);
        if ready {
            return (child, receiver, before);
        }
    }
}

/// Features with a Docker Compose configuration, as the reference CLI runs them: compose builds the service's
/// image, the Features go into a layer on it, and the service runs from that layer. A second `up` reuses the
/// container, and `delete` removes both images with the project.
#[test]
fn compose_with_a_local_feature_runs_the_service_from_a_feature_layer() {
    require_docker();
    let sandbox = Sandbox::new();
    let name = "compose-feature";
    let folder = inline_workspace(
        &sandbox,
        name,
        r#"{
            "dockerComposeFile": "docker-compose.yml",
            "service": "app",
            "workspaceFolder": "/workspace",
            "features": { "./greeter": { "greeting": "ahoy" } }
        }"#,
        &[
            (
                ".devcontainer/docker-compose.yml",
                "version: '3'\nservices:\n  app:\n    build:\n      context: .\n      dockerfile: Dockerfile\n    \
                 command: [\"sleep\", \"infinity\"]\n    volumes:\n      - ..:/workspace\n",
            ),
            (
                ".devcontainer/Dockerfile",
                "FROM debian:bookworm\nRUN echo built > /built-by-compose\n",
            ),
        ],
    );
    let feature = folder.join(".devcontainer/greeter");
    std::fs::create_dir_all(&feature).expect("mkdir");
    std::fs::write(
        feature.join("devcontainer-feature.json"),
        r#"{ "id": "greeter", "version": "1.0.0",
             "options": { "greeting": { "type": "string", "default": "hello" } },
             "containerEnv": { "GREETER": "installed" } }"#,
    )
    .expect("write");
    std::fs::write(
        feature.join("install.sh"),
        "#!/bin/sh\nset -e\necho \"$GREETING\" > /greeting\n",
    )
    .expect("write");
    std::fs::set_permissions(
        feature.join("install.sh"),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .expect("chmod");

    up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("up failed: {stderr}"));
    assert_eq!(
        sh(&sandbox, name, "cat /built-by-compose"),
        "built",
        "the service's own build ran"
    );
    assert_eq!(
        sh(&sandbox, name, "cat /greeting"),
        "ahoy",
        "the Feature's install script ran with its option"
    );
    assert_eq!(
        sh(&sandbox, name, "echo $GREETER"),
        "installed",
        "the Feature's containerEnv"
    );
    let container = sandbox.container_of(name);
    let project = compose_project(&sandbox, name);
    let image = docker_inspect("{{.Config.Image}}", &container);
    assert_eq!(image, format!("{project}-app-features"));
    let metadata = docker_inspect(
        "{{index .Config.Labels \"devcontainer.metadata\"}}",
        &container,
    );
    assert!(metadata.contains("./greeter"), "{metadata}");

    up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("second up failed: {stderr}"));
    assert_eq!(
        sandbox.container_of(name),
        container,
        "the second up reuses the container"
    );
    assert_eq!(sh(&sandbox, name, "cat /greeting"), "ahoy");

    let exists = |image: &str| {
        Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .expect("docker image inspect")
            .status
            .success()
    };
    // Compose v1 names the image it builds project_service, v2 project-service.
    let images = [
        format!("{project}-app-features"),
        format!("{project}_app"),
        format!("{project}-app"),
    ];
    assert!(exists(&images[0]) && (exists(&images[1]) || exists(&images[2])));
    sandbox.ok(&["delete", name, "--yes"]);
    for image in &images {
        assert!(!exists(image), "delete left image {image} behind");
    }
}
