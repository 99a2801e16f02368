//! Living in a workspace: what travels from the laptop into the dev container. The laptop's git identity is set
//! for the remote user where the container has none, and a hostile identity stays data; dotfiles install once per
//! container (an install script, else links), from `--dotfiles` or the global setting, and a bad URL is a warning
//! or, when it is not a URL at all, an error before anything is made.

use std::path::Path;
use std::process::Command;

use skiff_tests::{Sandbox, require_docker};

/// A sandbox whose git (for `skiff`, as the laptop's) has `name` and `email` as its global identity.
fn with_identity(name: &str, email: &str) -> Sandbox {
    let mut sandbox = Sandbox::new();
    let config = sandbox.root.path().join("laptop.gitconfig");
    std::fs::write(
        &config,
        format!(
            "[user]\n\tname = \"{}\"\n\temail = {email}\n",
            name.replace('\\', "\\\\").replace('"', "\\\"")
        ),
    )
    .unwrap();
    sandbox.set_env("GIT_CONFIG_GLOBAL", Some(config.into_os_string()));
    sandbox.set_env("GIT_CONFIG_NOSYSTEM", Some("1".into()));
    sandbox
}

fn git_config(sandbox: &Sandbox, name: &str, key: &str) -> String {
    sandbox
        .ok(&["exec", name, "--", "git", "config", "--get", key])
        .trim_end_matches('\n')
        .to_owned()
}

#[test]
fn the_laptops_git_identity_is_set_where_the_container_has_none_and_stays_data() {
    require_docker();
    // Shell syntax in the name: set as the container's identity byte for byte, never run.
    let hostile = "Ada $(touch /tmp/pwned-name) `touch /tmp/pwned-tick`; touch /tmp/pwned-semi";
    let sandbox = with_identity(hostile, "ada@example.com");
    let project = sandbox.project("image", "identity");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(git_config(&sandbox, "identity", "user.name"), hostile);
    assert_eq!(
        git_config(&sandbox, "identity", "user.email"),
        "ada@example.com"
    );
    let pwned = sandbox.run(&[
        "exec",
        "identity",
        "--",
        "sh",
        "-c",
        "ls /tmp/pwned-* 2>/dev/null",
    ]);
    assert!(
        pwned.stdout.is_empty(),
        "the identity ran as a command: {}",
        String::from_utf8_lossy(&pwned.stdout)
    );
    sandbox.ok(&["delete", "--yes", "identity"]);
}

#[test]
fn an_identity_the_container_already_has_is_kept() {
    require_docker();
    let sandbox = with_identity("Laptop Person", "laptop@example.com");
    let project = sandbox.project("image", "identity-kept");
    // The image (here its onCreateCommand, which runs before `up` says ready) has a name but no email.
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        r#"{
            "image": "debian:bookworm",
            "remoteUser": "root",
            "onCreateCommand": "git config --global user.name 'Image Person'"
        }"#,
    )
    .unwrap();
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(
        git_config(&sandbox, "identity-kept", "user.name"),
        "Image Person"
    );
    assert_eq!(
        git_config(&sandbox, "identity-kept", "user.email"),
        "laptop@example.com",
        "what the container lacks comes from the laptop"
    );
    sandbox.ok(&["delete", "--yes", "identity-kept"]);
}

/// Makes a git repository `dotfiles` inside `project` holding `files`, and returns its URL as the dev container sees
/// it (the project is mounted at /workspaces/FOLDER): a local repository, as a test's traffic stays on this machine.
fn dotfiles_repository(project: &Path, files: &[(&str, &str)]) -> String {
    let repository = project.join("dotfiles");
    std::fs::create_dir_all(&repository).unwrap();
    for (name, text) in files {
        let path = repository.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    }
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(args)
            .current_dir(&repository)
            .output()
            .expect("running git");
        assert!(output.status.success(), "git {args:?}: {output:?}");
    };
    git(&["init", "--quiet"]);
    git(&["add", "--all"]);
    git(&["commit", "--quiet", "-m", "dotfiles"]);
    format!(
        "file:///workspaces/{}/dotfiles",
        project.file_name().unwrap().to_str().unwrap()
    )
}

fn in_container(sandbox: &Sandbox, name: &str, script: &str) -> String {
    sandbox.ok(&["exec", name, "--", "sh", "-c", script])
}

#[test]
fn dotfiles_install_once_per_container_and_again_in_a_rebuilt_one() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "dotfiles-once");
    let url = dotfiles_repository(
        &project,
        &[(
            "install.sh",
            "#!/bin/sh\necho installing from \"$(pwd)\"\necho installed >> \"$HOME/dotfiles-ran.log\"\n",
        )],
    );
    let project = project.to_str().unwrap();
    let first = sandbox.ok_stderr(&["up", "--dotfiles", &url, project]);
    assert!(
        first.contains("installing from /root/dotfiles"),
        "the install's output is shown: {first}"
    );
    let count = "grep -c installed $HOME/dotfiles-ran.log";
    assert_eq!(in_container(&sandbox, "dotfiles-once", count), "1\n");
    let container = sandbox.container_of("dotfiles-once");

    // The record remembers the URL; the container has them already.
    let second = sandbox.ok_stderr(&["up", project]);
    assert!(!second.contains("installing from"), "{second}");
    assert_eq!(
        in_container(&sandbox, "dotfiles-once", count),
        "1\n",
        "once per container"
    );

    sandbox.ok(&["up", "--rebuild", project]);
    assert_ne!(
        sandbox.container_of("dotfiles-once"),
        container,
        "a new container"
    );
    assert_eq!(
        in_container(&sandbox, "dotfiles-once", count),
        "1\n",
        "the rebuilt container ran them too"
    );
    sandbox.ok(&["delete", "--yes", "dotfiles-once"]);
}

#[test]
fn dotfiles_without_an_install_script_are_linked_from_the_global_setting() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "dotfiles-linked");
    let url = dotfiles_repository(
        &project,
        &[
            (".aliases", "alias ll='ls -l'\n"),
            (".profile", "# from the dotfiles\n"),
            ("README.md", "not a dotfile\n"),
        ],
    );
    let saved = sandbox.ok_stderr(&["config", "--global", &format!("dotfiles={url}")]);
    assert!(saved.contains(&url), "{saved}");
    sandbox.ok(&["up", project.to_str().unwrap()]);
    assert_eq!(
        in_container(&sandbox, "dotfiles-linked", "readlink $HOME/.aliases"),
        "/root/dotfiles/.aliases\n"
    );
    assert_eq!(
        in_container(&sandbox, "dotfiles-linked", "cat $HOME/.profile"),
        "# from the dotfiles\n"
    );
    assert_eq!(
        in_container(
            &sandbox,
            "dotfiles-linked",
            "test -e $HOME/.profile.before-dotfiles && echo kept; test -e $HOME/README.md || echo only-dotfiles"
        ),
        "kept\nonly-dotfiles\n",
        "the image's own .profile is kept aside, and only dotfiles are linked"
    );
    sandbox.ok(&["delete", "--yes", "dotfiles-linked"]);
}

#[test]
fn dotfiles_that_cannot_be_cloned_are_a_warning_and_a_url_that_is_not_one_is_refused() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "dotfiles-bad");
    let project = project.to_str().unwrap();
    // A value clap would take as a flag, given as clap takes it: skiff's own check refuses it.
    let refused = sandbox.fails(&["up", "--dotfiles=--upload-pack=touch /tmp/pwned", project]);
    assert!(refused.contains("is not a repository URL"), "{refused}");
    assert!(
        !sandbox.ok(&["list"]).contains("dotfiles-bad"),
        "nothing was made for a refused URL"
    );
    let up = sandbox.ok_stderr(&["up", "--dotfiles", "file:///nowhere/dotfiles", project]);
    assert!(
        up.contains("file:///nowhere/dotfiles could not be cloned"),
        "a warning names the URL: {up}"
    );
    assert!(up.contains("is ready"), "the workspace came up: {up}");
    sandbox.ok(&["delete", "--yes", "dotfiles-bad"]);
}

/// `skiff code`: after the editor opens, the extensions the dev container's metadata names (a Feature's, then
/// devcontainer.json's, merged as VS Code merges them: each once, `-ID` dropping a Feature's) reach the server the
/// editor put in the dev container, in order, one `--install-extension` each; a failure is reported with the server's
/// words, an id that is not one never reaches it, and the merged settings (devcontainer.json's over the Feature's)
/// join the server's machine settings (the user's own win). The editor and its server are stand-ins here: a `code`
/// on PATH that records its arguments, and a `code-server` where VS Code puts it.
#[test]
fn skiff_code_installs_the_extensions_in_order_and_reports_failures() {
    require_docker();
    let sandbox = Sandbox::new();
    let project = sandbox.project("image", "editor");
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        r#"{
            "image": "debian:bookworm",
            "remoteUser": "root",
            "features": { "./editor-feature": {} },
            "customizations": { "vscode": {
                "extensions": ["good.one", "bad.two", "--evil", "good.three", "-feature.dropped"],
                "settings": { "editor.tabSize": 2, "files.eol": "\n" }
            } }
        }"#,
    )
    .unwrap();
    let feature = project.join(".devcontainer/editor-feature");
    std::fs::create_dir_all(&feature).unwrap();
    std::fs::write(
        feature.join("devcontainer-feature.json"),
        r#"{ "id": "editor-feature", "version": "1.0.0", "customizations": { "vscode": {
            "extensions": ["feature.first", "feature.dropped", "GOOD.ONE"],
            "settings": { "editor.tabSize": 8, "feature.only": true }
        } } }"#,
    )
    .unwrap();
    std::fs::write(
        feature.join("install.sh"),
        "#!/bin/sh
true
",
    )
    .unwrap();
    sandbox.ok(&["up", project.to_str().unwrap()]);
    in_container(
        &sandbox,
        "editor",
        r#"bin=$HOME/.vscode-server/cli/servers/Stable-0123abcd/server/bin
mkdir -p "$bin" "$HOME/.vscode-server/data/Machine"
printf '%s\n' '#!/bin/sh' 'echo "$@" >> "$HOME/installs.log"' \
  'case "$2" in bad.*) echo "Extension '"'"'$2'"'"' not found." >&2; exit 1;; esac' > "$bin/code-server"
chmod +x "$bin/code-server"
printf '{ "files.eol": "\\r\\n" }\n' > "$HOME/.vscode-server/data/Machine/settings.json""#,
    );
    let bin = sandbox.root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = sandbox.root.path().join("code-args");
    std::fs::write(
        bin.join("code"),
        format!("#!/bin/sh\necho \"$@\" > {}\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.join("code"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let home = sandbox.root.path().join("laptop-home");
    std::fs::create_dir_all(&home).unwrap();
    let code = sandbox
        .skiff()
        .args(["code", "editor"])
        .env("HOME", &home)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&code.stderr);
    assert!(code.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&opened).unwrap(),
        "--remote ssh-remote+editor.skiff /workspaces/editor\n"
    );
    assert_eq!(
        in_container(&sandbox, "editor", "cat $HOME/installs.log"),
        "--install-extension feature.first\n--install-extension GOOD.ONE\n--install-extension bad.two\n--install-extension good.three\n",
        "the Feature's first, in order, one each, and never the id that is not one or the one dropped"
    );
    assert!(
        stderr.contains(
            "extension bad.two was not installed (exit code 1): Extension 'bad.two' not found."
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("\"--evil\" is not an extension id"),
        "{stderr}"
    );
    let settings: serde_json::Value = serde_json::from_str(&in_container(
        &sandbox,
        "editor",
        "cat $HOME/.vscode-server/data/Machine/settings.json",
    ))
    .unwrap();
    assert_eq!(
        settings["editor.tabSize"], 2,
        "devcontainer.json's over the Feature's"
    );
    assert_eq!(settings["feature.only"], true, "the Feature's own");
    assert_eq!(settings["files.eol"], "\r\n", "the user's own setting wins");
    sandbox.ok(&["delete", "--yes", "editor"]);
}

/// The password of the private repository the credential tests serve; it must end up nowhere but where the test
/// put it (the laptop's credential store, and the server's configuration in the dev container).
const PASSWORD: &str = "s3cret-4d8f2b";

/// Serves a private repository over HTTP with basic authentication in the dev container, on its loopback: git's
/// own `http-backend` behind busybox's httpd (CGI, `ada` and [`PASSWORD`]); returns its URL.
fn private_repository(sandbox: &Sandbox, name: &str) -> String {
    let setup = format!(
        r#"set -e
bb=/workspaces/{name}/busybox
mkdir -p /srv/git /srv/www/cgi-bin
git init -q --bare /srv/git/private.git
git -C /srv/git/private.git config http.receivepack true
git -C /srv/git/private.git symbolic-ref HEAD refs/heads/main
seed=$(mktemp -d)
git -C "$seed" init -q -b main
echo first > "$seed/README"
git -C "$seed" add README
git -C "$seed" -c user.name=seed -c user.email=seed@example.com commit -q -m first
git -C "$seed" push -q /srv/git/private.git main
printf '%s\n' '#!/bin/sh' 'export GIT_PROJECT_ROOT=/srv/git GIT_HTTP_EXPORT_ALL=1' 'exec /usr/lib/git-core/git-http-backend' > /srv/www/cgi-bin/git
chmod 755 /srv/www/cgi-bin/git
echo '/cgi-bin:ada:{PASSWORD}' > /srv/httpd.conf
"$bb" httpd -p 127.0.0.1:8418 -h /srv/www -c /srv/httpd.conf
"#
    );
    sandbox.ok(&["exec", name, "--", "sh", "-c", &setup]);
    "http://127.0.0.1:8418/cgi-bin/git/private.git".to_owned()
}

/// Every file under `folder` whose bytes hold `needle`.
fn files_holding(folder: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![folder.to_owned()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(path),
                Ok(kind)
                    if kind.is_file()
                        && std::fs::read(&path).is_ok_and(|bytes| {
                            bytes
                                .windows(needle.len())
                                .any(|window| window == needle.as_bytes())
                        }) =>
                {
                    found.push(path);
                }
                _ => {}
            }
        }
    }
    found
}

/// Git in the dev container clones and pushes a private repository with credentials that exist only in the
/// laptop's credential store: `skiff exec`'s session answers the container's credential helper with the laptop's
/// `git credential fill`, for root and for another user alike. Afterwards the password is in no file of the
/// container but the server's, and in no file of the agent's state. With no session connected, or with
/// `--no-git-credentials`, the helper fails at once and says how to connect.
#[test]
fn git_in_the_container_uses_the_laptops_credentials_and_keeps_none() {
    require_docker();
    let sandbox = Sandbox::new();
    let laptop = sandbox.root.path().join("laptop");
    std::fs::create_dir_all(&laptop).unwrap();
    let store = laptop.join("git-credentials");
    std::fs::write(&store, format!("http://ada:{PASSWORD}@127.0.0.1%3a8418\n")).unwrap();
    let gitconfig = laptop.join("gitconfig");
    std::fs::write(
        &gitconfig,
        format!(
            "[credential]\n\thelper = store --file={}\n",
            store.display()
        ),
    )
    .unwrap();
    let mut sandbox = sandbox;
    sandbox.set_env("GIT_CONFIG_GLOBAL", Some(gitconfig.into_os_string()));
    sandbox.set_env("GIT_CONFIG_NOSYSTEM", Some("1".into()));
    let project = sandbox.project("image", "credentials");
    skiff_tests::add_busybox(&project);
    sandbox.ok(&["up", project.to_str().unwrap()]);
    let url = private_repository(&sandbox, "credentials");

    let git = |user: &str, script: &str| {
        sandbox.run(&[
            "exec",
            "-u",
            user,
            "-e",
            "GIT_TERMINAL_PROMPT=0",
            "credentials",
            "--",
            "sh",
            "-c",
            script,
        ])
    };
    let cloned = git(
        "root",
        &format!("git clone -q {url} /tmp/clone && cat /tmp/clone/README"),
    );
    assert!(
        cloned.status.success(),
        "clone: {}",
        String::from_utf8_lossy(&cloned.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&cloned.stdout), "first\n");
    let pushed = git(
        "root",
        "cd /tmp/clone && echo second >> README && git -c user.name=t -c user.email=t@example.com commit -qam second && git push -q origin main",
    );
    assert!(
        pushed.status.success(),
        "push: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    assert_eq!(
        in_container(
            &sandbox,
            "credentials",
            "git -C /srv/git/private.git log --format=%s main"
        ),
        "second\nfirst\n"
    );
    let other_user = git("nobody", &format!("HOME=/tmp git ls-remote {url} main"));
    assert!(
        other_user.status.success(),
        "another user's git asks the same helper: {}",
        String::from_utf8_lossy(&other_user.stderr)
    );

    // Nowhere but where the test put it.
    let holding = in_container(
        &sandbox,
        "credentials",
        &format!(
            "grep -rlF {PASSWORD} / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; true"
        ),
    );
    assert_eq!(
        holding, "/srv/httpd.conf\n",
        "the password is in no other file of the container"
    );
    assert_eq!(
        files_holding(&sandbox.home(), PASSWORD),
        Vec::<std::path::PathBuf>::new(),
        "the agent's state and logs hold no password"
    );

    // No session connected: the helper fails at once and says how to connect.
    let container = sandbox.container_of("credentials");
    let started = std::time::Instant::now();
    let alone = Command::new("docker")
        .args([
            "exec",
            "-e",
            "GIT_TERMINAL_PROMPT=0",
            &container,
            "git",
            "ls-remote",
            &url,
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success(), "{stderr}");
    assert!(
        stderr.contains("skiff ssh credentials") && stderr.contains("skiff exec credentials"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "at once: {:?}",
        started.elapsed()
    );
    let refused = sandbox.run(&[
        "exec",
        "--no-git-credentials",
        "-e",
        "GIT_TERMINAL_PROMPT=0",
        "credentials",
        "--",
        "git",
        "ls-remote",
        &url,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no skiff client is connected"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    sandbox.ok(&["delete", "--yes", "credentials"]);
}

/// Runs `docker ARGS` with the Docker configuration in `config` (as the laptop's own login would be kept), failing the
/// test unless it succeeds.
fn docker_with(config: &Path, args: &[&str], input: Option<&str>) {
    use std::io::Write as _;
    let mut child = Command::new("docker")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).unwrap();
    }
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Removes an image tag from the engine (the image stays under its other names).
fn untag(image: &str) {
    let _ = Command::new("docker").args(["image", "rm", image]).output();
}

/// A workspace whose image is in a registry that needs a login comes up with only the laptop's Docker login
/// (`docker login`, kept in `$DOCKER_CONFIG/config.json`), which skiff sends with `up` for that registry's pull; the
/// password is then in no file of skiff's on this machine. A wrong login is refused naming the registry and the
/// `docker login` to run, and so is a pull with no login, each before any container is made.
#[test]
fn an_image_from_a_registry_that_needs_a_login_is_pulled_with_the_laptops_docker_login() {
    require_docker();
    let registry = skiff_tests::registry::Registry::start_with_login("ada", PASSWORD);
    let host = format!("127.0.0.1:{}", registry.port);
    let image = format!("{host}/private/alpine:1");
    let sandbox = Sandbox::new();
    let laptop = sandbox.root.path().join("docker-config");
    std::fs::create_dir_all(&laptop).unwrap();
    docker_with(
        &laptop,
        &["login", &host, "--username", "ada", "--password-stdin"],
        Some(PASSWORD),
    );
    docker_with(
        &laptop,
        &["tag", "skiff-test/alpine:stand-in", &image],
        None,
    );
    docker_with(&laptop, &["push", &image], None);
    untag(&image);

    let project = |sandbox: &Sandbox, name: &str| {
        let project = sandbox.project("image", name);
        std::fs::write(
            project.join(".devcontainer/devcontainer.json"),
            format!(r#"{{ "image": "{image}", "remoteUser": "root" }}"#),
        )
        .unwrap();
        project
    };
    let mut sandbox = sandbox;
    sandbox.set_env("DOCKER_CONFIG", Some(laptop.clone().into_os_string()));
    let private = project(&sandbox, "private-image");
    sandbox.ok(&["up", private.to_str().unwrap()]);
    assert_eq!(
        in_container(&sandbox, "private-image", "echo pulled"),
        "pulled\n"
    );
    assert!(
        registry.log_text().contains("ada"),
        "the registry saw the laptop's user pull: {}",
        registry.log_text()
    );
    let holding = Command::new("grep")
        .args(["-rlF", PASSWORD])
        .arg(sandbox.home())
        .output()
        .unwrap();
    assert!(
        holding.stdout.is_empty(),
        "the password is kept in: {}",
        String::from_utf8_lossy(&holding.stdout)
    );
    sandbox.ok(&["delete", "private-image", "--yes"]);
    untag(&image);

    // A login the registry refuses, then none at all: each says which registry and how to log in.
    let wrong = sandbox.root.path().join("wrong-config");
    std::fs::create_dir_all(&wrong).unwrap();
    let auth = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("ada:not-{PASSWORD}"))
    };
    std::fs::write(
        wrong.join("config.json"),
        format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#),
    )
    .unwrap();
    sandbox.set_env("DOCKER_CONFIG", Some(wrong.into_os_string()));
    let refused_project = project(&sandbox, "refused-login");
    let refused = sandbox.run(&["up", refused_project.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains(&format!(
            "registry {host} refused the login of user \"ada\""
        )) && stderr.contains(&format!("docker login {host}")),
        "{stderr}"
    );
    let nobody = sandbox.root.path().join("no-config");
    std::fs::create_dir_all(&nobody).unwrap();
    sandbox.set_env("DOCKER_CONFIG", Some(nobody.into_os_string()));
    let anonymous_project = project(&sandbox, "anonymous-pull");
    let anonymous = sandbox.run(&["up", anonymous_project.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(!anonymous.status.success());
    assert!(
        stderr.contains(&format!(
            "registry {host} refused to let this machine pull anonymously"
        )) && stderr.contains(&format!("docker login {host}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains("reading this machine's Docker login"),
        "no Docker configuration is no login, not a warning: {stderr}"
    );
    // Refused before anything was made: neither workspace has a container.
    for name in ["refused-login", "anonymous-pull"] {
        let status: serde_json::Value =
            serde_json::from_str(&sandbox.ok(&["status", name, "--json"])).unwrap();
        assert!(status["container_id"].is_null(), "{name}: {status:#}");
    }
    untag(&image);
}
