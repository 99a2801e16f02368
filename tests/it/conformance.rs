//! Dev Container conformance: the reference CLI's own fixtures (`shared/devcontainer/reference-tests`, the "L" ones of
//! NOTES.md §6 that need no registry beyond their base image) run end to end through `skiff up` on the real Docker
//! engine, with the base images they name provided by local stand-ins (`cargo xtask images`).
//!
//! `reference_fixtures` runs the whole table, counts the passes and prints every fixture this machine cannot run with the
//! reason; it fails if any runnable fixture fails. The lifecycle ordering oracle (with a stop and a second `up`) and the
//! bad-input cases have tests of their own.
//! Features from a registry and a tarball URL run against a real registry server (Debian's `docker-registry`, started on
//! 127.0.0.1 per test) and a tarball server in the test, with the Features of `tests/fixtures/features-oci`; `waitFor`
//! has a test of when `up` says ready.
//! The shared folder is `../shared` beside the repository, or `$SKIFF_SHARED_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn check(condition: bool, what: impl Into<String>) -> Result<(), String> {
    if condition { Ok(()) } else { Err(what.into()) }
}

fn equal(actual: &str, expected: &str, what: &str) -> Result<(), String> {
    check(
        actual == expected,
        format!("{what}: expected {expected:?}, found {actual:?}"),
    )
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

/// What to do with one fixture.
enum Plan {
    /// Run it; the function does the `up` and the checks.
    Run(fn(&Sandbox, &str) -> Result<(), String>),
    /// This machine cannot run it, for this reason.
    Unsupported(&'static str),
}

/// A fixture: its path under `reference-tests`, and what to do.
fn fixtures() -> Vec<(&'static str, Plan)> {
    let arm64 = |run: fn(&Sandbox, &str) -> Result<(), String>| {
        if can_run_arm64() {
            Plan::Run(run)
        } else {
            Plan::Unsupported(
                "builds for linux/arm64, and this amd64 machine has no qemu binfmt handler to run arm64 code",
            )
        }
    };
    let named = |run: fn(&Sandbox, &str) -> Result<(), String>, reason: &'static str| {
        if compose_v2() {
            Plan::Run(run)
        } else {
            Plan::Unsupported(reason)
        }
    };
    vec![
        ("configs/image", Plan::Run(image)),
        ("configs/image-with-mounts", Plan::Run(image_with_mounts)),
        (
            "configs/image-with-parallel-initialize-command",
            Plan::Run(parallel_initialize),
        ),
        (
            "configs/image-with-local-feature",
            Plan::Run(local_feature_without_dot),
        ),
        ("configs/image-metadata", Plan::Run(image_metadata)),
        (
            "configs/dockerfile-without-features",
            Plan::Run(dockerfile_without_features),
        ),
        (
            "configs/dockerfile-with-parallel-commands",
            Plan::Run(parallel_commands),
        ),
        ("configs/updateUID", Plan::Run(update_uid)),
        ("configs/updateUIDOnly", Plan::Run(update_uid_only)),
        ("configs/updateUIDamd64", Plan::Run(update_uid)),
        (
            "configs/updateUIDamd64-platform-option",
            Plan::Run(update_uid),
        ),
        ("configs/updateUIDarm64", arm64(update_uid)),
        ("configs/updateUIDarm64-platform-option", arm64(update_uid)),
        ("configs/updateUIDarm64v8", arm64(update_uid)),
        (
            "configs/updateUIDarm64v8-platform-option",
            arm64(update_uid),
        ),
        (
            "configs/compose-image-without-features-minimal",
            Plan::Run(compose_minimal),
        ),
        (
            "configs/compose-without-name",
            Plan::Run(compose_without_name),
        ),
        (
            "configs/compose-image-with-mounts",
            Plan::Run(compose_with_mounts),
        ),
        (
            "configs/compose-image-without-features",
            Plan::Run(compose_node_mongo),
        ),
        (
            "configs/compose-Dockerfile-without-features",
            Plan::Run(compose_dockerfile),
        ),
        (
            "configs/image-containerEnv-issue",
            Plan::Run(compose_container_env),
        ),
        (
            "configs/compose-with-name",
            named(
                compose_with_name,
                "its compose file's top-level `name:` is Compose v2; this machine has only docker-compose v1, which rejects it",
            ),
        ),
        (
            "configs/compose-with-name-using-env-var",
            named(
                compose_with_name,
                "its compose file's top-level `name:` is Compose v2; this machine has only docker-compose v1, which rejects it",
            ),
        ),
        (
            "configs/compose-with-name-and-custom-yaml",
            named(
                compose_with_name,
                "its compose file uses `name:` and the `!reset` tag of Compose v2; this machine has only docker-compose v1",
            ),
        ),
        (
            "configs/compose-Dockerfile-alpine",
            Plan::Unsupported(
                "its Dockerfile runs alpine's `adduser`; no alpine image can be made here and the busybox stand-in has no adduser",
            ),
        ),
        (
            "configs/set-up-with-config",
            Plan::Unsupported(
                "a config for `devcontainer set-up` on an existing container (no image); skiff has no set-up command",
            ),
        ),
        (
            "configs/set-up-with-metadata",
            Plan::Unsupported(
                "a Dockerfile for `devcontainer set-up` (no devcontainer.json); skiff has no set-up command",
            ),
        ),
        (
            "container-features/dockerfile-with-v2-local-features-config-inside-dev-container-folder",
            Plan::Run(local_features_hello),
        ),
        (
            "container-features/dockerfile-with-v2-local-features-config-outside-dev-container-folder",
            Plan::Run(local_features_hello),
        ),
        (
            "container-features/lifecycle-hooks-advanced",
            Plan::Run(lifecycle_advanced),
        ),
        (
            "container-features/lifecycle-hooks-resume-existing-container",
            Plan::Run(lifecycle_resume),
        ),
        (
            "container-features/invalid-configs/dockerfile-with-v2-local-features-no-dev-container-folder",
            Plan::Run(features_outside_devcontainer),
        ),
        (
            "container-features/feature-dependencies/dependsOn/local-simple",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/dependsOn/local-with-options",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/installsAfter/local-simple",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/dependsOn-and-installsAfter/local-simple",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/overrideFeatureInstallOrder/local-simple",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/overrideFeatureInstallOrder/local-intermediate",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/overrideFeatureInstallOrder/local-roundPriority",
            Plan::Run(features_install),
        ),
        (
            "container-features/feature-dependencies/dependsOn/invalid-circular",
            Plan::Run(feature_cycle),
        ),
        (
            "container-features/feature-dependencies/installsAfter/invalid-circular",
            Plan::Run(feature_cycle),
        ),
    ]
}

/// A workspace name for a fixture path: its last component, lower-cased.
fn name_of(fixture: &str) -> String {
    fixture
        .rsplit('/')
        .next()
        .unwrap_or(fixture)
        .to_lowercase()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '-' {
                character
            } else {
                '-'
            }
        })
        .collect()
}

#[test]
fn reference_fixtures() {
    require_docker();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut unsupported = Vec::new();
    for (fixture, plan) in fixtures() {
        match plan {
            Plan::Unsupported(reason) => unsupported.push((fixture, reason)),
            Plan::Run(run) => {
                let sandbox = Sandbox::new();
                let started = std::time::Instant::now();
                let result = run(&sandbox, fixture);
                eprintln!(
                    "conformance: {fixture}: {} in {:.1}s",
                    if result.is_ok() { "pass" } else { "FAIL" },
                    started.elapsed().as_secs_f64()
                );
                match result {
                    Ok(()) => passed.push(fixture),
                    Err(why) => failed.push((fixture, why)),
                }
            }
        }
    }
    let tried = passed.len() + failed.len();
    eprintln!(
        "conformance: {} of {tried} reference fixtures pass end to end",
        passed.len()
    );
    for (fixture, reason) in &unsupported {
        eprintln!("conformance: unsupported here: {fixture}: {reason}");
    }
    assert!(
        tried >= 30,
        "only {tried} fixtures ran; the table lost some"
    );
    assert!(
        failed.is_empty(),
        "{} of {tried} reference fixtures failed:\n{}",
        failed.len(),
        failed
            .iter()
            .map(|(fixture, why)| format!("  {fixture}: {why}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn up_fixture(sandbox: &Sandbox, fixture: &str) -> Result<(PathBuf, String), String> {
    let name = name_of(fixture);
    let folder = workspace(sandbox, fixture, &name);
    up(sandbox, &folder, &[], &[]).map_err(|stderr| format!("skiff up failed: {stderr}"))?;
    Ok((folder, name))
}

fn image(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(
        &sh(sandbox, &name, "cat /postCreateCommand.txt"),
        "Val: ENV",
        "postCreateCommand with remoteEnv",
    )?;
    equal(
        &sh(sandbox, &name, "echo \"$TEST_RE\""),
        "TEST_VALUE3",
        "runArgs -e seen through ${containerEnv:TEST_CE}",
    )?;
    equal(
        &sh(sandbox, &name, "echo \"$TEST_ESCAPING\""),
        "{\n  \"fo$o\": \"ba'r\"\n}",
        "remoteEnv escaping",
    )?;
    check(
        !sh(sandbox, &name, "echo \"$CONTAINER_PATH\"").is_empty(),
        "${containerEnv:PATH} is empty",
    )
}

fn image_with_mounts(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(
        &sh(
            sandbox,
            &name,
            "test -d /home/test_devcontainer_config && echo yes",
        ),
        "yes",
        "volume mount",
    )
}

fn parallel_initialize(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (folder, _) = up_fixture(sandbox, fixture)?;
    for marker in [
        "initializeCommand.1.testMarker",
        "initializeCommand.2.testMarker",
    ] {
        check(
            folder.join(marker).is_file(),
            format!("{marker} is missing on the host"),
        )?;
    }
    Ok(())
}

fn local_feature_without_dot(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let folder = workspace(sandbox, fixture, "local-feature");
    match up(sandbox, &folder, &[], &[]) {
        Ok(_) => Err("up succeeded with a feature id lacking ./".to_owned()),
        Err(stderr) => check(
            stderr.contains("\"features\"")
                && stderr.contains("prepend its name with \"./\"")
                && stderr.contains(".devcontainer.json"),
            format!("the error does not name the file, the property and the fix: {stderr}"),
        ),
    }
}

/// The fixture's Features carry placeholder hooks (`one`, `three`, ...) that are no commands, so `up` stops at
/// onCreateCommand; what the reference tests check here is the merged metadata, which is on the image.
fn image_metadata(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let folder = workspace(sandbox, fixture, "image-metadata");
    let built = Command::new("docker")
        .args(["build", "-q", "-t", "image-metadata-test-base"])
        .arg(folder.join("base-image"))
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("running docker build");
    check(
        built.status.success(),
        format!(
            "building the base image: {}",
            String::from_utf8_lossy(&built.stderr)
        ),
    )?;
    let stderr = match up(sandbox, &folder, &[], &[]) {
        Ok(stderr) => {
            return Err(format!(
                "up ran the placeholder hooks without failing: {stderr}"
            ));
        }
        Err(stderr) => stderr,
    };
    if privileged_containers_run() {
        check(
            stderr.contains("onCreateCommand")
                && stderr.contains("./localFeatureA")
                && stderr.contains("devcontainer.json"),
            format!("the hook failure does not name the hook, its Feature and the file: {stderr}"),
        )?;
    } else {
        // Feature B makes the container privileged, which this machine's Docker refuses to start; the container is made
        // with the merged settings all the same, and those are what is checked below.
        check(
            stderr.contains("starting container") && stderr.contains("unable to apply caps"),
            format!("up failed for another reason than the privileged start: {stderr}"),
        )?;
    }
    let container = skiff_tests::containers_with_label("skiff.workspace", "image-metadata")
        .into_iter()
        .next()
        .ok_or("no container was made")?;
    let label = docker_inspect(
        "{{index .Config.Labels \"devcontainer.metadata\"}}",
        &container,
    );
    let entries: serde_json::Value =
        serde_json::from_str(&label).map_err(|error| format!("label {label:?}: {error}"))?;
    let ids: Vec<&str> = entries
        .as_array()
        .ok_or("the label is not an array")?
        .iter()
        .filter_map(|entry| entry.get("id").and_then(serde_json::Value::as_str))
        .collect();
    equal(
        &ids.join(","),
        "baseFeature,./localFeatureA,./localFeatureB",
        "metadata entry ids",
    )?;
    equal(
        &docker_inspect("{{.HostConfig.Init}}", &container),
        "true",
        "init from Feature A",
    )?;
    equal(
        &docker_inspect("{{.HostConfig.Privileged}}", &container),
        "true",
        "privileged from Feature B",
    )?;
    let image = docker_inspect("{{.Config.Image}}", &container);
    let installed = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--entrypoint",
            "/bin/sh",
            &image,
            "-c",
            "test -f /localFeatureA && test -f /localFeatureB",
        ])
        .status()
        .expect("running docker run");
    // The base image was this fixture's own: untagged now, its layers go with the Feature image when the sandbox is
    // dropped.
    let _ = Command::new("docker")
        .args(["rmi", "-f", "image-metadata-test-base"])
        .output();
    check(
        installed.success(),
        "the Features' install.sh did not run in the image",
    )
}

fn dockerfile_without_features(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (folder, name) = up_fixture(sandbox, fixture)?;
    equal(
        &sh(sandbox, &name, "cat /postCreateCommand.txt"),
        "Val: ENV",
        "postCreateCommand through sudo tee",
    )?;
    equal(
        &sh(sandbox, &name, "id -un"),
        "node",
        "remote user from the image's metadata",
    )?;
    // The sub-folder config needs --config.
    let sub_sandbox = Sandbox::new();
    let sub = workspace(&sub_sandbox, fixture, "dockerfile-subfolder");
    let config = sub.join(".devcontainer/subfolder/devcontainer.json");
    up(
        &sub_sandbox,
        &sub,
        &["--config", config.to_str().unwrap_or_default()],
        &[],
    )
    .map_err(|stderr| format!("up --config subfolder failed: {stderr}"))?;
    equal(
        &sh(
            &sub_sandbox,
            "dockerfile-subfolder",
            "test -f /subfolderConfigPostCreateCommand.txt && echo yes",
        ),
        "yes",
        "sub-folder postCreateCommand",
    )?;
    equal(
        &sh(
            &sub_sandbox,
            "dockerfile-subfolder",
            "echo $SUBFOLDER_CONFIG_REMOTE_ENV $SUBFOLDER_CONFIG_IMAGE_ENV",
        ),
        "true true",
        "sub-folder env",
    )?;
    let _ = folder;
    Ok(())
}

fn parallel_commands(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    for marker in [
        "postCreateCommand1",
        "postCreateCommand2",
        "postStartCommand1",
        "postStartCommand2",
        "postAttachCommand1",
        "postAttachCommand2",
    ] {
        equal(
            &sh(
                sandbox,
                &name,
                &format!("test -f /tmp/{marker}.testmarker && echo yes"),
            ),
            "yes",
            marker,
        )?;
    }
    Ok(())
}

/// The workspace's files get an owner other than root, which `updateRemoteUserUID` hands to the remote user.
fn update_uid_with(
    sandbox: &Sandbox,
    fixture: &str,
    env: &[(&str, &str)],
    expected: &str,
) -> Result<(), String> {
    let name = name_of(fixture);
    let folder = workspace(sandbox, fixture, &name);
    nix::unistd::chown(
        &folder,
        Some(nix::unistd::Uid::from_raw(4242)),
        Some(nix::unistd::Gid::from_raw(4242)),
    )
    .map_err(|error| format!("chown: {error}"))?;
    up(sandbox, &folder, &[], env).map_err(|stderr| format!("skiff up failed: {stderr}"))?;
    equal(
        &sh(sandbox, &name, "echo $(id -un):$(id -u):$(id -g)"),
        expected,
        "remote user after updateRemoteUserUID",
    )
}

fn update_uid(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    update_uid_with(sandbox, fixture, &[], "foo:4242:4242")
}

/// The GID is taken by another group, so the user keeps its GID and gets the UID.
fn update_uid_only(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    update_uid_with(sandbox, fixture, &[("LOCAL_GID", "4242")], "foo:4242:4321")
}

fn compose_minimal(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(
        &sh(sandbox, &name, "cat /postCreateCommand.txt"),
        "Val: ENV",
        "postCreateCommand",
    )?;
    equal(&sh(sandbox, &name, "pwd"), "/workspace", "workspaceFolder")
}

fn compose_project(sandbox: &Sandbox, name: &str) -> String {
    docker_inspect(
        "{{index .Config.Labels \"com.docker.compose.project\"}}",
        &sandbox.container_of(name),
    )
}

fn compose_without_name(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(
        &compose_project(sandbox, &name),
        &format!("{name}_devcontainer"),
        "project name",
    )
}

fn compose_with_name(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let name = name_of(fixture);
    let folder = workspace(sandbox, fixture, &name);
    up(
        sandbox,
        &folder,
        &[],
        &[("CUSTOM_NAME", "custom-name-from-env")],
    )
    .map_err(|stderr| format!("skiff up failed: {stderr}"))?;
    check(
        !compose_project(sandbox, &name).ends_with("_devcontainer"),
        "the compose name: was not used",
    )
}

fn compose_with_mounts(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(
        &sh(
            sandbox,
            &name,
            "test -d /home/test_devcontainer_config && test -d /home/test_docker_compose && echo yes",
        ),
        "yes",
        "mounts from devcontainer.json and compose",
    )
}

fn compose_node_mongo(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(&sh(sandbox, &name, "id -un"), "node", "remoteUser")
}

fn compose_dockerfile(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (_, name) = up_fixture(sandbox, fixture)?;
    equal(
        &sh(sandbox, &name, "cat /postCreateCommand.txt"),
        "Val: ENV",
        "postCreateCommand",
    )?;
    equal(
        &sh(sandbox, &name, "echo \"$TEST_ESCAPING\""),
        "{\n  \"fo$o\": \"ba'r\"\n}",
        "remoteEnv escaping",
    )
}

/// Named `cli` so the compose file's `../..:/workspaces` holds the workspace folder `/workspaces/cli`.
fn compose_container_env(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let folder = workspace(sandbox, fixture, "cli");
    up(sandbox, &folder, &[], &[]).map_err(|stderr| format!("skiff up failed: {stderr}"))?;
    let env = sandbox.ok(&["exec", "cli", "--", "env"]);
    for (key, value) in [
        ("SOME_PATH", "/tmp/path/doc-ver/loc"),
        ("VAR_WITH_SPACES", "value with spaces"),
        (
            "VAR_WITH_QUOTES_WE_WANT_TO_KEEP",
            "value with \"quotes\" we want to keep",
        ),
        ("VAR_WITH_DOLLAR_SIGN", "value with $dollar sign"),
        ("VAR_WITH_BACK_SLASH", "value with \\back slash"),
        ("ENV_WITH_COMMAND", "bash -c 'echo -n \"Hello, World!\"'"),
    ] {
        check(
            env.lines().any(|line| line == format!("{key}={value}")),
            format!("containerEnv {key}={value:?} missing from:\n{env}"),
        )?;
    }
    Ok(())
}

fn local_features_hello(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let name = if fixture.contains("inside") {
        "features-inside"
    } else {
        "features-outside"
    };
    let folder = workspace(sandbox, fixture, name);
    up(sandbox, &folder, &[], &[]).map_err(|stderr| format!("skiff up failed: {stderr}"))?;
    let hello = sh(sandbox, name, "hello");
    check(
        hello.contains("Hello there") && hello.contains("!!!!"),
        format!("the Feature's option values did not reach install.sh: {hello:?}"),
    )
}

fn lifecycle_advanced(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (folder, _) = up_fixture(sandbox, fixture)?;
    for marker in [
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
    ] {
        check(
            folder.join(marker).is_file(),
            format!("{marker} is missing"),
        )?;
    }
    Ok(())
}

fn lifecycle_resume(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let (folder, name) = up_fixture(sandbox, fixture)?;
    sandbox.ok(&["stop", &name]);
    up(sandbox, &folder, &[], &[]).map_err(|stderr| format!("second up failed: {stderr}"))?;
    equal(
        &markers(&folder).join(","),
        "0.hippo.postStartCommand.testMarker,1.hippo.postAttachCommand.testMarker,\
         2.hippo.postStartCommand.testMarker,3.hippo.postAttachCommand.testMarker",
        "markers after up, stop, up",
    )
}

fn features_outside_devcontainer(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let folder = workspace(sandbox, fixture, "features-outside-folder");
    match up(sandbox, &folder, &[], &[]) {
        Ok(_) => Err("up accepted local Features outside .devcontainer".to_owned()),
        Err(stderr) => check(
            stderr.contains("\"features\"")
                && stderr.contains("inside the workspace's .devcontainer folder"),
            format!("unclear error: {stderr}"),
        ),
    }
}

fn features_install(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let name = format!(
        "deps-{}",
        name_of(&fixture.replace("/local-", "-")).trim_start_matches("deps-")
    );
    let name: String = name.chars().take(40).collect();
    let folder = workspace(sandbox, fixture, &name);
    up(sandbox, &folder, &[], &[]).map_err(|stderr| format!("skiff up failed: {stderr}"))?;
    equal(&sh(sandbox, &name, "echo ok"), "ok", "the container runs")
}

fn feature_cycle(sandbox: &Sandbox, fixture: &str) -> Result<(), String> {
    let folder = workspace(sandbox, fixture, "feature-cycle");
    match up(sandbox, &folder, &[], &[]) {
        Ok(_) => Err("up accepted a Feature cycle".to_owned()),
        Err(stderr) => check(
            stderr.contains("\"features\"")
                && stderr.contains("cycle (./a, ./b, ./c)")
                && stderr.contains("devcontainer.json"),
            format!(
                "the cycle error does not name the file, the property and the Features: {stderr}"
            ),
        ),
    }
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

/// `container-features/lifecycle-hooks-inline-commands`: the reference order of every hook from the Features (installed
/// panda, then tiger) and devcontainer.json, and after a stop and a second `up` only the start and attach hooks, in order.
#[test]
fn lifecycle_order_matches_the_reference_including_after_stop_and_up() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = workspace(
        &sandbox,
        "container-features/lifecycle-hooks-inline-commands",
        "lifecycle-order",
    );
    up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("first up failed: {stderr}"));
    let mut expected = Vec::new();
    let mut number = 0;
    for hook in [
        "onCreateCommand",
        "updateContentCommand",
        "postCreateCommand",
        "postStartCommand",
        "postAttachCommand",
    ] {
        for origin in ["panda", "tiger", "devContainer"] {
            expected.push(format!("{number}.{origin}.{hook}.testMarker"));
            number += 1;
        }
    }
    assert_eq!(markers(&folder), expected, "after the first up");
    sandbox.ok(&["stop", "lifecycle-order"]);
    up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("second up failed: {stderr}"));
    for hook in ["postStartCommand", "postAttachCommand"] {
        for origin in ["panda", "tiger", "devContainer"] {
            expected.push(format!("{number}.{origin}.{hook}.testMarker"));
            number += 1;
        }
    }
    assert_eq!(markers(&folder), expected, "after stop and a second up");
    assert_eq!(number, 21);
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

#[test]
fn bad_input_image_and_build_together() {
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "image-and-build",
        r#"{"image": "debian:bookworm", "build": {"dockerfile": "Dockerfile"}}"#,
        &[],
    );
    expect_error(&sandbox, &folder, &["\"image\" and \"build\" are both set"]);
}

#[test]
fn bad_input_missing_dockerfile() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "no-dockerfile",
        r#"{"build": {"dockerfile": "Missing.Dockerfile"}}"#,
        &[],
    );
    expect_error(
        &sandbox,
        &folder,
        &[
            "\"build.dockerfile\"",
            "Missing.Dockerfile",
            "does not exist",
        ],
    );
}

#[test]
fn bad_input_unknown_variable_is_named() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "unknown-variable",
        r#"{"image": "debian:bookworm", "containerEnv": {"X": "${localEnvv:HOME}"}}"#,
        &[],
    );
    // The reference CLI leaves an unknown variable as written; skiff does too, and warns naming file and variable.
    let stderr =
        up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("up failed: {stderr}"));
    let file = folder.join(".devcontainer/devcontainer.json");
    assert!(
        stderr.contains(&format!(
            "{}: unknown variable ${{localEnvv:HOME}} is left as written",
            file.display()
        )),
        "{stderr}"
    );
    assert_eq!(
        sh(&sandbox, "unknown-variable", "echo \"$X\""),
        "${localEnvv:HOME}"
    );
}

#[test]
fn bad_input_feature_cycle() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = workspace(
        &sandbox,
        "container-features/feature-dependencies/installsAfter/invalid-circular",
        "cycle",
    );
    expect_error(
        &sandbox,
        &folder,
        &["\"features\"", "cycle (./a, ./b, ./c)"],
    );
}

#[test]
fn bad_input_failing_hook_names_file_hook_and_code() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "failing-hook",
        r#"{"image": "debian:bookworm", "onCreateCommand": "exit 3", "postCreateCommand": "touch /never"}"#,
        &[],
    );
    expect_error(
        &sandbox,
        &folder,
        &["onCreateCommand failed with exit code 3", "did not run"],
    );
    // The hook after it did not run: the container exists (stopped or running) without /never.
    let container = skiff_tests::containers_with_label("skiff.workspace", "failing-hook");
    assert_eq!(container.len(), 1, "one container was made");
}

#[test]
fn bad_input_unsupported_run_arg_is_named() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "bad-run-arg",
        r#"{"image": "debian:bookworm", "runArgs": ["--cgroup-parent=/x"]}"#,
        &[],
    );
    expect_error(
        &sandbox,
        &folder,
        &["\"runArgs\"", "--cgroup-parent", "not supported"],
    );
}

#[test]
fn changed_config_warns_and_rebuild_applies_it() {
    require_docker();
    let sandbox = Sandbox::new();
    let folder = inline_workspace(
        &sandbox,
        "changed",
        r#"{"image": "debian:bookworm", "containerEnv": {"V": "one"}}"#,
        &[],
    );
    up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("up failed: {stderr}"));
    std::fs::write(
        folder.join(".devcontainer/devcontainer.json"),
        r#"{"image": "debian:bookworm", "containerEnv": {"V": "two"}}"#,
    )
    .expect("write");
    let stderr =
        up(&sandbox, &folder, &[], &[]).unwrap_or_else(|stderr| panic!("up failed: {stderr}"));
    assert!(
        stderr.contains("devcontainer.json changed") && stderr.contains("skiff up --rebuild"),
        "{stderr}"
    );
    assert_eq!(
        sh(&sandbox, "changed", "echo $V"),
        "one",
        "without --rebuild the container stays as it was"
    );
    up(&sandbox, &folder, &["--rebuild"], &[])
        .unwrap_or_else(|stderr| panic!("up --rebuild failed: {stderr}"));
    assert_eq!(sh(&sandbox, "changed", "echo $V"), "two");
}

// Features from a registry and a tarball URL, against a real registry server (Debian's docker-registry, the CNCF
// distribution) and a tarball server in the test, both on 127.0.0.1.

/// The registry server binary of Debian's `docker-registry` package.
const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A registry on 127.0.0.1 with its storage and access log in a temporary folder; stopped when dropped.
struct Registry {
    port: u16,
    log: PathBuf,
    _folder: tempfile::TempDir,
    _process: skiff_tests::Reaped,
}

impl Registry {
    fn start() -> Registry {
        assert!(
            Path::new(REGISTRY_BINARY).is_file(),
            "{REGISTRY_BINARY} is missing: these tests need a registry server; install Debian's docker-registry package \
             (`apt-get install docker-registry`; .ci/run does)"
        );
        let folder = tempfile::tempdir().expect("a temporary folder");
        let port = skiff_tests::free_port();
        let config = folder.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                folder.path().join("storage").display()
            ),
        )
        .expect("writing the registry's configuration");
        let log = folder.path().join("registry.log");
        let output = std::fs::File::create(&log).expect("creating the registry's log");
        let process = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(output.try_clone().expect("a second handle"))
            .stderr(output)
            .spawn()
            .expect("starting docker-registry");
        let registry = Registry {
            port,
            log,
            _folder: folder,
            _process: skiff_tests::Reaped(process),
        };
        skiff_tests::wait_until(std::time::Duration::from_secs(20), || {
            http(port, "GET", "/v2/", &[], &[]).is_ok_and(|response| response.status == 200)
        })
        .unwrap_or_else(|| {
            panic!(
                "the registry did not answer on 127.0.0.1:{port}; its log:\n{}",
                registry.log_text()
            )
        });
        registry
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Uploads a blob to `repository`; returns its descriptor's digest.
    fn push_blob(&self, repository: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", sha256_hex(data));
        let started = http(
            self.port,
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &[],
            &[],
        )
        .expect("starting an upload");
        assert_eq!(started.status, 202, "starting an upload: {started:?}");
        let location = started.header("location").expect("an upload location");
        // The location may be absolute; the path and query are what this server needs.
        let path = match location.find("/v2/") {
            Some(start) => &location[start..],
            None => location,
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let put = http(
            self.port,
            "PUT",
            &format!("{path}{separator}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        )
        .expect("uploading a blob");
        assert_eq!(put.status, 201, "uploading a blob: {put:?}");
        digest
    }

    /// Pushes an artifact of one layer (of `layer_media_type`) with the devcontainers config media type as
    /// `repository:tag`; returns the layer's digest.
    fn push_artifact(
        &self,
        repository: &str,
        tag: &str,
        layer: &[u8],
        layer_media_type: &str,
    ) -> String {
        let config = b"{}";
        let config_digest = self.push_blob(repository, config);
        let layer_digest = self.push_blob(repository, layer);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.devcontainers", "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": layer_media_type,
                "digest": layer_digest,
                "size": layer.len(),
                "annotations": {"org.opencontainers.image.title": format!("devcontainer-feature-{tag}.tgz")}
            }]
        });
        let put = http(
            self.port,
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            manifest.to_string().as_bytes(),
        )
        .expect("pushing a manifest");
        assert_eq!(put.status, 201, "pushing a manifest: {put:?}");
        layer_digest
    }
}

/// A response of [`http`].
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` (`Connection: close`); the status and headers of the response.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {text:?}")))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Ok(Response { status, headers })
}

fn sha256_hex(data: &[u8]) -> String {
    let output = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(data)?;
            child.wait_with_output()
        })
        .expect("running sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
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

/// Serves one file at `/<name>` on 127.0.0.1 with an `ETag`, answering `If-None-Match` with 304, and counts both
/// answers; stops when dropped.
struct TarballServer {
    port: u16,
    downloads: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    not_modified: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl TarballServer {
    fn start(name: &'static str, content: Vec<u8>) -> TarballServer {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("binding the tarball server");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("an address").port();
        let downloads = Arc::new(AtomicUsize::new(0));
        let not_modified = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let etag = format!("\"{}\"", &sha256_hex(&content)[..16]);
        let (counted, unchanged, stopping) =
            (downloads.clone(), not_modified.clone(), stop.clone());
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            while !stopping.load(Ordering::Relaxed) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    }
                    Err(_) => break,
                };
                let _ = stream.set_nonblocking(false);
                let mut reader = std::io::BufReader::new(stream);
                let mut request = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    request.push(line.trim_end().to_owned());
                }
                let path_matches = request
                    .first()
                    .is_some_and(|line| line.starts_with(&format!("GET /{name} ")));
                let fresh = request.iter().any(|line| {
                    line.to_ascii_lowercase().starts_with("if-none-match:") && line.contains(&etag)
                });
                let mut stream = reader.into_inner();
                let _ = if !path_matches {
                    stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    )
                } else if fresh {
                    unchanged.fetch_add(1, Ordering::SeqCst);
                    stream.write_all(
                        format!(
                            "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                } else {
                    counted.fetch_add(1, Ordering::SeqCst);
                    stream
                        .write_all(
                            format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
                                 ETag: {etag}\r\nConnection: close\r\n\r\n",
                                content.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|()| stream.write_all(&content))
                };
            }
        });
        TarballServer {
            port,
            downloads,
            not_modified,
            stop,
        }
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        (
            self.downloads.load(Ordering::SeqCst),
            self.not_modified.load(Ordering::SeqCst),
        )
    }
}

impl Drop for TarballServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
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
    let tarball = TarballServer::start(
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
