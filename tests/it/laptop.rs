//! The laptop's boundary: what comes from an image, a repository or an agent is data on this machine.
//! Each test tries the attack as an attacker would set it up, and checks that nothing ran here.
//!
//! - An image's `devcontainer.metadata` label sets a `remoteUser` holding a newline and a `ProxyCommand` line:
//!   `skiff ssh-config` refuses it, and `ssh NAME.skiff` runs nothing on the laptop.
//! - A repository's devcontainer.json runs `initializeCommand` and reads `${localEnv:…}`: `skiff up GIT_URL` shows
//!   both and goes on only with `--trust` (no terminal here to answer a question), remembering the answer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use skiff_tests::{BASE_IMAGE, Sandbox, require_docker};

/// A local image deleted when dropped; its name is ours, never a public image's.
struct TestImage(String);

impl TestImage {
    /// `BASE_IMAGE` with one more label.
    fn labelled(tag: &str, label: &str) -> TestImage {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(
            context.path().join("Dockerfile"),
            format!("FROM {BASE_IMAGE}\n"),
        )
        .unwrap();
        let output = Command::new("docker")
            .args(["build", "--quiet", "--label", label, "--tag", tag])
            .arg(context.path())
            .output()
            .expect("running docker build");
        assert!(
            output.status.success(),
            "docker build {tag}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        TestImage(tag.to_owned())
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["image", "rm", "--force", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A workspace folder whose devcontainer.json is `config`.
fn project(sandbox: &Sandbox, name: &str, config: &str) -> PathBuf {
    let folder = sandbox.root.path().join("projects").join(name);
    std::fs::create_dir_all(folder.join(".devcontainer")).unwrap();
    std::fs::write(folder.join(".devcontainer/devcontainer.json"), config).unwrap();
    folder
}

#[test]
fn an_image_label_remote_user_with_a_proxy_command_runs_nothing_on_the_laptop() {
    require_docker();
    let sandbox = Sandbox::new();
    let marker = sandbox.root.path().join("owned");
    // The label as an image author would write it: JSON whose remoteUser ends the `User` line and adds one.
    let remote_user = format!("root\n    ProxyCommand sh -c 'touch {}'", marker.display());
    let metadata = serde_json::json!([{ "remoteUser": remote_user }]).to_string();
    let image = TestImage::labelled(
        "skiff-test/label-remote-user:1",
        &format!("devcontainer.metadata={metadata}"),
    );
    let folder = project(
        &sandbox,
        "label-user",
        &format!(
            "{{ \"image\": \"{}\", \"userEnvProbe\": \"none\" }}",
            image.0
        ),
    );
    sandbox.ok(&["up", folder.to_str().unwrap()]);

    let config = sandbox.root.path().join("ssh_config");
    let refused = sandbox.run(&[
        "ssh-config",
        "--config",
        config.to_str().unwrap(),
        "label-user",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "ssh-config accepted it: {stderr}"
    );
    assert!(
        stderr.contains("remote user") && stderr.contains("remoteUser"),
        "the error names the value and where it is set: {stderr}"
    );
    let written = std::fs::read_to_string(&config).unwrap_or_default();
    assert!(
        !written.contains("ProxyCommand sh"),
        "the injected line reached {}: {written}",
        config.display()
    );
    let printed = sandbox.run(&["ssh-config", "--print", "label-user"]);
    assert!(!printed.status.success());
    assert!(!String::from_utf8_lossy(&printed.stdout).contains("ProxyCommand sh"));

    // What an IDE or the user would do next: connect. Nothing may run on this machine.
    if Command::new("ssh").arg("-V").output().is_ok() {
        let _ = Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
                "label-user.skiff",
                "true",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    assert!(
        !marker.exists(),
        "a command from the image ran on the laptop"
    );
    // `skiff code` goes through the same entry and refuses too, before it looks for VS Code.
    let code = sandbox.run(&["code", "label-user"]);
    assert!(!code.status.success());
    assert!(String::from_utf8_lossy(&code.stderr).contains("remoteUser"));
    assert!(!marker.exists());
}

/// A bare repository at `root/origin.git` whose devcontainer.json is `config`.
fn repository(root: &Path, config: &str) -> PathBuf {
    let work = root.join("work");
    let bare = root.join("origin.git");
    std::fs::create_dir_all(work.join(".devcontainer")).unwrap();
    std::fs::write(work.join(".devcontainer/devcontainer.json"), config).unwrap();
    let git = |folder: &Path, args: &[&str]| {
        let output = Command::new("git")
            .args([
                "-c",
                "user.name=skiff test",
                "-c",
                "user.email=test@skiff.invalid",
            ])
            .args(args)
            .current_dir(folder)
            .output()
            .expect("running git");
        assert!(output.status.success(), "git {args:?}: {output:?}");
    };
    git(root, &["init", "-q", "--bare", "-b", "main", "origin.git"]);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    bare
}

#[test]
fn an_untrusted_repository_runs_nothing_on_the_laptop_until_trusted() {
    require_docker();
    let sandbox = Sandbox::new();
    let marker = sandbox.root.path().join("initialized");
    let config = format!(
        "{{ \"image\": \"{BASE_IMAGE}\", \"remoteUser\": \"root\", \"initializeCommand\": \"touch {}\", \"containerEnv\": {{ \"STOLEN\": \"${{localEnv:SKIFF_TEST_SECRET}}\" }} }}",
        marker.display()
    );
    let bare = repository(sandbox.root.path(), &config);
    let url = format!("file://{}", bare.display());

    let refused = sandbox
        .skiff()
        .args(["up", &url, "--name", "untrusted"])
        .env("SKIFF_TEST_SECRET", "hunter2")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "up went on without asking: {stderr}"
    );
    assert!(stderr.contains("initializeCommand"), "{stderr}");
    assert!(stderr.contains(&marker.display().to_string()), "{stderr}");
    assert!(stderr.contains("SKIFF_TEST_SECRET"), "{stderr}");
    assert!(stderr.contains("--trust"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the value is never shown: {stderr}"
    );
    assert!(!marker.exists(), "initializeCommand ran without a yes");
    // With --trust it runs, and the answer holds for the same configuration.
    sandbox.ok(&["up", &url, "--name", "untrusted", "--trust"]);
    assert!(
        marker.exists(),
        "initializeCommand did not run with --trust"
    );
    std::fs::remove_file(&marker).unwrap();
    sandbox.ok(&["up", &url, "--name", "untrusted"]);
    assert!(
        marker.exists(),
        "an unchanged, trusted repository is not asked about again"
    );
}
