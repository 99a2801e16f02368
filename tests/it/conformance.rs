//! Dev Container conformance: the reference CLI's own fixtures (`shared/devcontainer/reference-tests`, the "L" ones of
//! NOTES.md §6 that need no registry beyond their base image) run end to end through `skiff up` on the real Docker
//! engine, with the base images they name provided by local stand-ins (`cargo xtask images`).
//!
//! `reference_fixtures` runs the whole table, counts the passes and prints every fixture this machine cannot run with the
//! reason; it fails if any runnable fixture fails. The lifecycle ordering oracle (with a stop and a second `up`) and the
//! bad-input cases have tests of their own.
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
