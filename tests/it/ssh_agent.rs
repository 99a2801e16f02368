//! SSH agent forwarding: `skiff exec -A`, `skiff ssh -A` and OpenSSH's `ForwardAgent yes` (written by `skiff
//! ssh-config --forward-agent`) give the dev container an `SSH_AUTH_SOCK` that reaches the laptop's own ssh-agent, so
//! `ssh-add -l` lists the laptop's key and git signs a commit with it (SSH signing), which the laptop's git verifies,
//! while the key stays on the laptop;
//! without `-A` there is none; `--gpg` does the same for the laptop's gpg-agent and GPG signing. The attack: another user in the container, who finds the forwarding's abstract socket
//! and runs the relay themselves, gets nothing from the laptop's agent.

use std::path::{Path, PathBuf};

use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_tests::{Reaped, Sandbox, add_busybox, require_docker, wait_until};

/// The laptop's ssh-agent, holding one fresh key; killed when the test ends.
struct LaptopAgent {
    socket: PathBuf,
    public_key: String,
    fingerprint: String,
    _agent: Reaped,
}

fn program(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "these tests need OpenSSH's {name}: `apt-get install -y openssh-client` (cargo xtask test does)"
    );
}

fn laptop_agent(folder: &Path) -> LaptopAgent {
    for name in ["ssh-agent", "ssh-add", "ssh-keygen", "ssh"] {
        program(name);
    }
    std::fs::create_dir_all(folder).unwrap();
    let key = folder.join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "laptop-key", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let socket = folder.join("agent.sock");
    let agent = Reaped(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()).is_some(),
        "the laptop's ssh-agent did not listen"
    );
    let added = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(added.success(), "ssh-add");
    let public_key = std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned();
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_owned();
    LaptopAgent {
        socket,
        public_key,
        fingerprint,
        _agent: agent,
    }
}

/// Stores `commit` (a commit object's text) in a fresh repository under `folder` on the laptop and runs `git
/// verify-commit` on it with the laptop's git, its `config` and `env`; returns what git said.
fn verify_on_laptop(
    folder: &Path,
    commit: &str,
    config: &[String],
    env: &[(&str, &Path)],
) -> String {
    use std::io::Write as _;
    let repository = folder.join("verify");
    let git = |args: &[&str]| {
        let mut command = Command::new("git");
        command
            .arg("-C")
            .arg(&repository)
            .args(config.iter().flat_map(|setting| ["-c", setting.as_str()]))
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        for (key, value) in env {
            command.env(key, value);
        }
        command
    };
    std::fs::create_dir_all(&repository).unwrap();
    assert!(git(&["init", "-q"]).status().unwrap().success());
    let mut stored = git(&["hash-object", "-t", "commit", "-w", "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    stored
        .stdin
        .take()
        .unwrap()
        .write_all(commit.as_bytes())
        .unwrap();
    let stored = stored.wait_with_output().unwrap();
    assert!(stored.status.success(), "storing the commit on the laptop");
    let hash = String::from_utf8(stored.stdout).unwrap().trim().to_owned();
    let verified = git(&["verify-commit", &hash]).output().unwrap();
    assert!(verified.status.success(), "{}", text(&verified));
    String::from_utf8_lossy(&verified.stderr).into_owned()
}

/// `ssh -F CONFIG -o BatchMode=yes OPTIONS agent-forwarding.skiff COMMAND` with the laptop's agent at `socket`.
fn openssh(config: &Path, socket: &Path, options: &[&str], command: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes"])
        .args(options)
        .args(["agent-forwarding.skiff", command])
        .env("SSH_AUTH_SOCK", socket)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_laptops_agent_signs_in_the_container_only_when_forwarded_and_only_for_its_user() {
    require_docker();
    let mut sandbox = Sandbox::new();
    let laptop = laptop_agent(&sandbox.root.path().join("laptop"));
    sandbox.set_env(
        "SSH_AUTH_SOCK",
        Some(laptop.socket.clone().into_os_string()),
    );
    let project = sandbox.project("image", "agent-forwarding");
    add_busybox(&project);
    sandbox.ok(&["up", project.to_str().unwrap()]);

    // Off unless asked, as in OpenSSH.
    let plain = sandbox.ok(&[
        "exec",
        "agent-forwarding",
        "--",
        "sh",
        "-c",
        "echo ${SSH_AUTH_SOCK:-none}",
    ]);
    assert_eq!(plain, "none\n");

    // `exec -A`: the laptop's key is listed, and git signs with it; the signature verifies.
    let listed = sandbox.run(&["exec", "-A", "agent-forwarding", "--", "ssh-add", "-l"]);
    assert!(
        listed.status.success()
            && String::from_utf8_lossy(&listed.stdout).contains(&laptop.fingerprint),
        "ssh-add -l lists the laptop's key: {}",
        text(&listed)
    );
    let signed = sandbox.run(&[
        "exec",
        "-A",
        "-e",
        &format!("KEY={}", laptop.public_key),
        "agent-forwarding",
        "--",
        "sh",
        "-c",
        "set -e; cd /tmp; rm -rf signed; git init -q signed; cd signed; \
         git -c user.name=Ada -c user.email=ada@example.com -c gpg.format=ssh -c \"user.signingkey=key::$KEY\" \
           commit -q -S --allow-empty -m signed; \
         echo \"ada@example.com $KEY\" > /tmp/allowed_signers; \
         git -c gpg.ssh.allowedSignersFile=/tmp/allowed_signers verify-commit HEAD 2>&1; \
         git cat-file commit HEAD",
    ]);
    let signed_text = String::from_utf8_lossy(&signed.stdout);
    assert!(
        signed.status.success()
            && signed_text.contains("Good \"git\" signature for ada@example.com")
            && signed_text.contains("-----BEGIN SSH SIGNATURE-----"),
        "an SSH-signed commit that verifies: {}",
        text(&signed)
    );
    // And on the laptop: the commit object, taken out of the container, verifies there against the laptop's key.
    let commit = sandbox.ok(&[
        "exec",
        "agent-forwarding",
        "--",
        "git",
        "-C",
        "/tmp/signed",
        "cat-file",
        "commit",
        "HEAD",
    ]);
    let signers = sandbox.root.path().join("laptop/allowed_signers");
    std::fs::write(&signers, format!("ada@example.com {}\n", laptop.public_key)).unwrap();
    let verified = verify_on_laptop(
        &sandbox.root.path().join("laptop"),
        &commit,
        &[format!("gpg.ssh.allowedSignersFile={}", signers.display())],
        &[],
    );
    assert!(
        verified.contains("Good \"git\" signature for ada@example.com"),
        "the laptop's git verifies the container's signature: {verified}"
    );
    // The session's socket went with the session: no relay folder is left.
    let left = || {
        sandbox.ok(&[
            "exec",
            "agent-forwarding",
            "--",
            "sh",
            "-c",
            "ls -d /tmp/skiff-agent.* 2>/dev/null | wc -l",
        ])
    };
    assert!(
        wait_until(Duration::from_secs(10), || left().trim() == "0").is_some(),
        "relay folders left behind: {}",
        left()
    );

    // The attack: while root's session forwards the agent, `nobody` finds the abstract socket and runs a relay of its
    // own to it; the agent refuses its connections, so the laptop's agent answers nothing. The session's own socket
    // is in a folder only root may enter.
    let attack = sandbox.run(&[
        "exec",
        "-A",
        "agent-forwarding",
        "--",
        "sh",
        "-c",
        r#"name=$(grep -o '@skiff-ssh-agent-[0-9a-f]*' /proc/net/unix | head -n 1 | cut -c2-)
[ -n "$name" ] || { echo "no abstract socket found"; exit 3; }
echo "own socket: $(su -s /bin/sh nobody -c "ssh-add -l" 2>&1; echo "exit $?")" | sed "s#$SSH_AUTH_SOCK#SOCK#"
su -s /bin/sh nobody -c "
  (sleep 20 | /.skiff/skiff-procd ssh-agent $name > /tmp/nobody-relay 2>/dev/null) &
  for i in 1 2 3 4 5 6 7 8 9 10; do [ -s /tmp/nobody-relay ] && break; sleep 0.5; done
  read ready uid path < /tmp/nobody-relay
  echo \"relay as \$uid\"
  SSH_AUTH_SOCK=\$path ssh-add -l 2>&1; echo \"exit \$?\"
  SSH_AUTH_SOCK=$SSH_AUTH_SOCK ssh-add -l 2>&1; echo \"exit \$?\"
""#,
    ]);
    let attack_text = String::from_utf8_lossy(&attack.stdout).into_owned();
    assert!(attack.status.success(), "{}", text(&attack));
    assert!(
        !attack_text.contains(&laptop.fingerprint),
        "another user reached the laptop's agent: {attack_text}"
    );
    assert!(
        attack_text.contains("relay as 65534"),
        "the attacker's relay ran as nobody: {attack_text}"
    );
    let refusals = attack_text
        .lines()
        .filter(|line| line.starts_with("exit ") && *line != "exit 0")
        .count();
    assert!(
        refusals >= 2 && !attack_text.lines().any(|line| line == "exit 0"),
        "every try of nobody's failed: {attack_text}"
    );

    // OpenSSH through `skiff proxy` with `ForwardAgent yes` from `skiff ssh-config --forward-agent`.
    let config = sandbox.root.path().join("ssh_config");
    sandbox.ok(&[
        "ssh-config",
        "--forward-agent",
        "--config",
        config.to_str().unwrap(),
        "agent-forwarding",
    ]);
    assert!(
        std::fs::read_to_string(&config)
            .unwrap()
            .contains("ForwardAgent yes")
    );
    let through_ssh = openssh(
        &config,
        &laptop.socket,
        &["-o", "ConnectTimeout=20"],
        "ssh-add -l",
    );
    assert!(
        through_ssh.status.success()
            && String::from_utf8_lossy(&through_ssh.stdout).contains(&laptop.fingerprint),
        "ssh with ForwardAgent lists the laptop's key: {}",
        text(&through_ssh)
    );
    // And without it, OpenSSH asks for nothing and the session has no socket.
    let without = openssh(
        &config,
        &laptop.socket,
        &["-o", "ForwardAgent=no"],
        "echo ${SSH_AUTH_SOCK:-none}",
    );
    assert_eq!(
        String::from_utf8_lossy(&without.stdout),
        "none\n",
        "{}",
        text(&without)
    );
}

/// `-A` with no agent on the laptop is refused before anything runs, and says how to start one.
#[test]
fn forwarding_without_a_laptop_agent_says_how_to_start_one() {
    let mut sandbox = Sandbox::new();
    sandbox.set_env("SSH_AUTH_SOCK", None);
    let refused = sandbox.run(&["exec", "-A", "nowhere", "--", "true"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("SSH_AUTH_SOCK is not set") && stderr.contains("ssh-agent"),
        "{stderr}"
    );
}

/// The laptop's gpg-agent, with one fresh signing key in its own GnuPG home; stopped when the test ends.
struct LaptopGpg {
    home: PathBuf,
    fingerprint: String,
}

impl LaptopGpg {
    fn new(home: PathBuf) -> Self {
        for name in ["gpg", "gpgconf", "gpg-agent", "gpg-connect-agent"] {
            program(name);
        }
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let made = Command::new("gpg")
            .args([
                "--batch",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
                "--quick-gen-key",
                "Ada <ada@example.com>",
                "ed25519",
                "sign",
                "never",
            ])
            .env("GNUPGHOME", &home)
            .output()
            .unwrap();
        assert!(made.status.success(), "{}", text(&made));
        let listed = Command::new("gpg")
            .args(["--batch", "--with-colons", "--list-secret-keys"])
            .env("GNUPGHOME", &home)
            .output()
            .unwrap();
        let fingerprint = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .expect("the key's fingerprint")
            .to_owned();
        Self { home, fingerprint }
    }
}

impl Drop for LaptopGpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", &self.home)
            .output();
    }
}

/// `skiff exec --gpg`: the laptop's gpg-agent (its extra socket) answers gpg in the container at the socket gpg uses
/// there, with the laptop's public key imported, so git signs a commit with GPG that the laptop's git verifies; the
/// container holds no secret key, and without `--gpg` its gpg signs with nothing.
#[test]
fn the_laptops_gpg_agent_signs_commits_in_the_container_with_gpg() {
    require_docker();
    let mut sandbox = Sandbox::new();
    let laptop = LaptopGpg::new(sandbox.root.path().join("gnupg"));
    sandbox.set_env("GNUPGHOME", Some(laptop.home.clone().into_os_string()));
    let project = sandbox.project("image", "gpg-forwarding");
    add_busybox(&project);
    sandbox.ok(&["up", project.to_str().unwrap()]);

    let signed = sandbox.run(&[
        "exec",
        "--gpg",
        "-e",
        &format!("KEY={}", laptop.fingerprint),
        "gpg-forwarding",
        "--",
        "sh",
        "-c",
        "set -e; cd /tmp; rm -rf signed; git init -q signed; cd signed; \
         git -c user.name=Ada -c user.email=ada@example.com -c user.signingkey=$KEY commit -q -S --allow-empty -m signed; \
         git cat-file commit HEAD",
    ]);
    let commit = String::from_utf8_lossy(&signed.stdout).into_owned();
    assert!(
        signed.status.success() && commit.contains("-----BEGIN PGP SIGNATURE-----"),
        "a GPG-signed commit: {}",
        text(&signed)
    );
    let verified = verify_on_laptop(
        sandbox.root.path(),
        &commit,
        &[],
        &[("GNUPGHOME", laptop.home.as_path())],
    );
    assert!(
        verified.contains("Good signature from \"Ada <ada@example.com>\""),
        "the laptop's git verifies it: {verified}"
    );
    // No secret key in the container, and once the session has ended its gpg signs with nothing.
    let alone = sandbox.run(&[
        "exec",
        "gpg-forwarding",
        "--",
        "sh",
        "-c",
        "gpg --batch --with-colons --list-secret-keys 2>/dev/null; \
         echo x | gpg --batch --pinentry-mode error --local-user ada@example.com --sign >/dev/null 2>&1; echo \"sign exit $?\"",
    ]);
    let alone_text = String::from_utf8_lossy(&alone.stdout);
    assert!(
        !alone_text.contains("sec:") && !alone_text.contains("sign exit 0"),
        "the container signs on its own: {}",
        text(&alone)
    );
}
