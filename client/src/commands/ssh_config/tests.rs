//! The managed block: where it goes, what it keeps, that writing twice changes nothing, and the quoting of
//! paths ssh and its shell read.

use super::*;

fn entry(name: &str) -> Entry {
    Entry {
        name: name.to_owned(),
        user: "vscode".to_owned(),
        proxy_command: format!("/usr/local/bin/skiff proxy {name}"),
        identity_file: PathBuf::from(format!(
            "/home/me/.local/share/skiff/workspaces/{name}/client.key"
        )),
        known_hosts: PathBuf::from(format!(
            "/home/me/.local/share/skiff/workspaces/{name}/known_hosts"
        )),
        forward_agent: false,
    }
}

fn path() -> PathBuf {
    PathBuf::from("/home/me/.ssh/config")
}

#[test]
fn an_entry_names_the_proxy_key_user_and_pinned_host_key() {
    let text = render(&entry("app")).unwrap();
    assert_eq!(
        text,
        "Host app.skiff\n    HostKeyAlias app.skiff\n    User vscode\n    ProxyCommand /usr/local/bin/skiff proxy app\n    IdentityFile /home/me/.local/share/skiff/workspaces/app/client.key\n    IdentitiesOnly yes\n    UserKnownHostsFile /home/me/.local/share/skiff/workspaces/app/known_hosts\n    StrictHostKeyChecking yes\n"
    );
}

#[test]
fn a_new_block_goes_first_and_hands_the_rest_back_to_every_host() {
    let existing = "ServerAliveInterval 60\n\nHost work\n    User alice\n";
    let updated = update(&path(), existing, &[entry("app")], |_| true).unwrap();
    assert!(updated.starts_with(BEGIN), "{updated}");
    assert!(
        updated.ends_with(existing),
        "everything else is kept as it was: {updated}"
    );
    let block_end = updated.find(END).unwrap();
    assert!(
        updated[..block_end].trim_end().ends_with("Host *"),
        "{updated}"
    );
}

#[test]
fn writing_twice_changes_nothing() {
    let existing = "Host work\n    User alice\n";
    let once = update(&path(), existing, &[entry("app"), entry("api")], |_| true).unwrap();
    let twice = update(&path(), &once, &[entry("app"), entry("api")], |_| true).unwrap();
    assert_eq!(once, twice);
    let empty = update(&path(), "", &[entry("app")], |_| true).unwrap();
    assert_eq!(
        update(&path(), &empty, &[entry("app")], |_| true).unwrap(),
        empty
    );
}

#[test]
fn an_existing_block_is_replaced_in_place_keeping_other_live_workspaces() {
    let first = update(&path(), "", &[entry("app"), entry("gone")], |_| true).unwrap();
    let existing = format!("Host before\n    User a\n{first}Host after\n    User b\n");
    let mut changed = entry("api");
    changed.user = "root".to_owned();
    let updated = update(&path(), &existing, &[changed], |name| name != "gone").unwrap();
    assert!(
        updated.starts_with("Host before\n    User a\n# BEGIN skiff"),
        "{updated}"
    );
    assert!(
        updated.ends_with("# END skiff\nHost after\n    User b\n"),
        "{updated}"
    );
    assert!(
        updated.contains("Host app.skiff\n"),
        "another live workspace is kept: {updated}"
    );
    assert!(updated.contains("Host api.skiff\n    HostKeyAlias api.skiff\n    User root\n"));
    assert!(
        !updated.contains("gone.skiff"),
        "a deleted workspace's entry goes: {updated}"
    );
    assert_eq!(updated.matches(BEGIN).count(), 1);
    let app = updated.find("Host app.skiff").unwrap();
    let api = updated.find("Host api.skiff").unwrap();
    assert!(api < app, "entries are sorted by name");
}

#[test]
fn a_file_without_a_final_newline_keeps_its_last_line() {
    let updated = update(
        &path(),
        "Host work\n    User alice",
        &[entry("app")],
        |_| true,
    )
    .unwrap();
    assert!(
        updated.ends_with("\nHost work\n    User alice"),
        "{updated:?}"
    );
}

#[test]
fn unpaired_markers_are_an_error_that_names_the_file_and_the_fix() {
    let error = update(
        &path(),
        &format!("{BEGIN}\nHost x\n"),
        &[entry("app")],
        |_| true,
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with(
            "/home/me/.ssh/config: the `# BEGIN skiff` and `# END skiff` lines do not pair up"
        ),
        "{text}"
    );
    assert!(text.contains("run `skiff ssh-config` again"), "{text}");
}

#[test]
fn proxy_commands_quote_for_the_shell_and_escape_ssh_tokens() {
    assert_eq!(
        proxy_command(Path::new("/usr/bin/skiff"), None, None, "app"),
        "/usr/bin/skiff proxy app"
    );
    assert_eq!(
        proxy_command(
            Path::new("/Users/Jo Smith/bin/skiff"),
            Some(Path::new("/tmp/100%/home")),
            Some(Path::new("/opt/skiffd")),
            "app"
        ),
        "env SKIFF_HOME='/tmp/100%%/home' '/Users/Jo Smith/bin/skiff' proxy --agent-binary /opt/skiffd app"
    );
    assert_eq!(shell_word("it's"), "'it'\\''s'");
}

#[test]
fn file_settings_are_quoted_when_they_have_spaces() {
    assert_eq!(config_path(Path::new("/a b/key")).unwrap(), "\"/a b/key\"");
    assert_eq!(config_path(Path::new("/a%b/key")).unwrap(), "/a%%b/key");
}

/// An image's `devcontainer.metadata` label (or a repository's devcontainer.json) chooses `remoteUser`. Written as
/// it came, a newline and a `ProxyCommand` line in it would make the next `ssh NAME.skiff` run a command on this
/// machine; every such value is refused before anything is written.
#[test]
fn a_remote_user_that_would_add_an_ssh_config_line_is_refused() {
    let path = path();
    for user in [
        "root\n    ProxyCommand touch /tmp/owned",
        "root\r\nProxyCommand sh",
        "root ProxyCommand=sh",
        "\"root\"",
        "-oProxyCommand=sh",
        "",
        "root%d",
        "root#",
    ] {
        let mut bad = entry("app");
        bad.user = user.to_owned();
        let error = render(&bad).unwrap_err().to_string();
        assert!(
            error.contains("remote user") && error.contains("remoteUser"),
            "{user:?}: {error}"
        );
        let updated = update(&path, "Host work\n    User alice\n", &[bad], |_| true);
        assert!(updated.is_err(), "{user:?} reached the file: {updated:?}");
    }
    for user in ["vscode", "node", "root", "1000", "dev_user", "a.b-c"] {
        let mut good = entry("app");
        good.user = user.to_owned();
        assert!(render(&good).is_ok(), "{user:?}");
    }
}

#[test]
fn a_path_that_ssh_config_cannot_hold_is_refused() {
    let mut bad = entry("app");
    bad.identity_file = PathBuf::from("/home/me/a\"b/client.key");
    assert!(
        render(&bad)
            .unwrap_err()
            .to_string()
            .contains("double quote")
    );
    let mut bad = entry("app");
    bad.known_hosts = PathBuf::from("/home/me/a\nProxyCommand sh/known_hosts");
    assert!(render(&bad).is_err());
    let mut spaced = entry("app");
    spaced.known_hosts = PathBuf::from("/home/my files/known_hosts");
    assert!(
        render(&spaced)
            .unwrap()
            .contains("UserKnownHostsFile \"/home/my files/known_hosts\"\n")
    );
}

#[test]
fn a_workspace_name_from_elsewhere_cannot_add_a_line() {
    let mut bad = entry("app");
    bad.name = "app\nHost *\n    ProxyCommand sh".to_owned();
    assert!(render(&bad).is_err());
}

/// The folder `skiff code` opens comes from the agent and becomes an argument of `code`: an option there
/// (`--install-extension`, `--extensions-dir`) would change what VS Code does on this machine.
#[test]
fn a_remote_folder_that_looks_like_an_option_is_refused() {
    for folder in [
        "--install-extension=evil.vsix",
        "-r",
        "relative/folder",
        "/workspaces/app\u{1b}[2J",
    ] {
        assert!(
            check_remote_folder("app", folder).is_err(),
            "{folder:?} was accepted"
        );
    }
    check_remote_folder("app", "/workspaces/my app").unwrap();
}

/// `--forward-agent` asks ssh to forward this machine's agent, and only for the entries written with it.
#[test]
fn forward_agent_is_written_only_when_asked() {
    let plain = render(&entry("api")).unwrap();
    assert!(!plain.contains("ForwardAgent"), "{plain}");
    let forwarding = render(&Entry {
        forward_agent: true,
        ..entry("api")
    })
    .unwrap();
    assert!(
        forwarding.ends_with("    ForwardAgent yes\n"),
        "{forwarding}"
    );
}
