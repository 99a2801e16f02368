//! The foundation end to end on the local Docker engine.

use std::io::Write;
use std::process::Stdio;

use rand::RngCore;
use skiff_tests::{Sandbox, containers_with_label, docker_inspect, require_docker};

#[test]
fn image_workspace_lifecycle() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "image-lifecycle");
    let up = sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(up.trim(), "image-lifecycle", "up prints the workspace name");
    let first = sandbox.container_of("image-lifecycle");
    assert_eq!(docker_inspect("{{.State.Running}}", &first), "true");
    assert_eq!(
        docker_inspect(
            "{{index .Config.Labels \"devcontainer.local_folder\"}}",
            &first
        ),
        project.to_str().unwrap()
    );

    let os_release = sandbox.ok(&["exec", "image-lifecycle", "--", "cat", "/etc/os-release"]);
    assert!(os_release.contains("Debian GNU/Linux 12"), "{os_release}");
    let env = sandbox.ok(&["exec", "image-lifecycle", "--", "printenv", "GREETING"]);
    assert_eq!(env.trim(), "hello from containerEnv");
    let folder = sandbox.ok(&["exec", "image-lifecycle", "--", "pwd"]);
    assert_eq!(folder.trim(), "/workspaces/image-lifecycle");

    let logs = sandbox.ok(&["logs", "image-lifecycle"]);
    assert!(
        logs.contains("Container started"),
        "the container's own output: {logs}"
    );

    // A second `up` finds the same container and does not run the create hooks again.
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(sandbox.container_of("image-lifecycle"), first);
    let log = sandbox.ok(&[
        "exec",
        "image-lifecycle",
        "--",
        "cat",
        "/root/post-create.log",
    ]);
    assert_eq!(log, "created\n");

    // Stop, then up: the same container starts again.
    sandbox.ok(&["stop", "image-lifecycle"]);
    assert_eq!(docker_inspect("{{.State.Running}}", &first), "false");
    let listed = sandbox.ok(&["list", "--json"]);
    assert!(listed.contains("\"state\": \"stopped\""), "{listed}");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(sandbox.container_of("image-lifecycle"), first);
    assert_eq!(docker_inspect("{{.State.Running}}", &first), "true");
    let log = sandbox.ok(&[
        "exec",
        "image-lifecycle",
        "--",
        "cat",
        "/root/post-create.log",
    ]);
    assert_eq!(
        log, "created\n",
        "postCreateCommand runs once per container"
    );

    // Delete leaves no container and no state.
    sandbox.ok(&["delete", "--yes", "image-lifecycle"]);
    assert!(
        containers_with_label("skiff.workspace", "image-lifecycle")
            .into_iter()
            .all(|id| id != first)
    );
    assert_eq!(docker_inspect("{{.Id}}", &first), "");
    assert!(!sandbox.home().join("workspaces/image-lifecycle").exists());
    let missing = sandbox.run(&["status", "image-lifecycle"]);
    assert!(!missing.status.success());
}

#[test]
fn dockerfile_workspace_builds_and_reuses() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("dockerfile", "dockerfile-build");
    sandbox.ok(&["up", "--name", "built", project.to_str().unwrap()]);
    let first = sandbox.container_of("built");
    let flavour = sandbox.ok(&["exec", "built", "--", "cat", "/tmp/flavour-seen"]);
    assert_eq!(
        flavour.trim(),
        "built-by-skiff",
        "build.args reached the build and postCreateCommand ran"
    );
    let image = docker_inspect("{{.Config.Image}}", &first);
    assert!(image.starts_with("vsc-dockerfile-build-"), "{image}");
    let image_id = docker_inspect("{{.Image}}", &first);

    let again = sandbox.run(&["up", project.to_str().unwrap()]);
    assert!(again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        !stderr.contains("building image"),
        "a second up must not rebuild: {stderr}"
    );
    assert_eq!(sandbox.container_of("built"), first);
    assert_eq!(docker_inspect("{{.Image}}", &first), image_id);

    sandbox.ok(&["delete", "--yes", "built"]);
    assert_eq!(
        docker_inspect("{{.Id}}", &image),
        "",
        "delete removes the image built for the workspace"
    );
}

#[test]
fn exec_passes_exit_codes_and_bytes_through() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "exec-bytes");
    sandbox.ok(&["up", project.to_str().unwrap()]);

    let three = sandbox.run(&[
        "exec",
        "exec-bytes",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(three.status.code(), Some(3));
    assert_eq!(three.stdout, b"out\n");
    assert_eq!(three.stderr, b"err\n");

    let mut data = vec![0u8; 1024 * 1024];
    rand::rng().fill_bytes(&mut data);
    let mut child = sandbox
        .skiff()
        .args(["exec", "exec-bytes", "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting skiff exec");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || stdin.write_all(&data))
    };
    let output = child.wait_with_output().expect("waiting for skiff exec");
    writer.join().unwrap().expect("writing stdin");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout.len(), data.len());
    assert!(output.stdout == data, "the bytes came back changed");
}

#[test]
fn ssh_runs_a_login_shell_in_a_terminal() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "ssh-shell");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    // `script` gives skiff a real pseudo-terminal, as a person's terminal would.
    let skiff = skiff_tests::binary("skiff");
    let mut script = std::process::Command::new("script");
    script
        .args([
            "-q",
            "-e",
            "-c",
            &format!("{} ssh ssh-shell", skiff.display()),
            "/dev/null",
        ])
        .env("SKIFF_HOME", sandbox.home())
        .env("SKIFF_AGENT_BINARY", skiff_tests::binary("skiffd"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = script.spawn().expect("running script(1)");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"tty && echo shell-says-$((40+2)) && echo \"$0\"\nexit 7\n")
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().expect("waiting for the shell");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("shell-says-42"), "{text}");
    assert!(
        text.contains("/dev/pts/"),
        "the shell has a terminal: {text}"
    );
    assert!(
        text.contains("-bash") || text.contains("bash"),
        "a login shell: {text}"
    );
    assert_eq!(output.status.code(), Some(7), "{text}");
}
