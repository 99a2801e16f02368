//! Tests of git reads in a folder the dev container writes: what they report, and that nothing the container
//! planted in the repository runs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::*;

/// Runs git in `folder` as a person would (their own config, hooks on), for setting a repository up.
fn git_in(folder: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .arg("-C")
        .arg(folder)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

/// A repository with one commit on no remote, one untracked file and one stash.
fn repository() -> tempfile::TempDir {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path();
    git_in(path, &["init", "-q", "-b", "main"]);
    std::fs::write(path.join("a.txt"), "one\n").unwrap();
    git_in(path, &["add", "a.txt"]);
    git_in(path, &["commit", "-q", "-m", "first"]);
    std::fs::write(path.join("a.txt"), "stashed\n").unwrap();
    git_in(path, &["stash", "-q"]);
    std::fs::write(path.join("new.txt"), "untracked\n").unwrap();
    folder
}

#[tokio::test]
async fn state_reports_what_a_delete_would_lose() {
    let folder = repository();
    let state = state(folder.path()).await.unwrap();
    assert!(state.repository);
    assert_eq!(state.uncommitted, 1, "{state:?}");
    assert_eq!(state.uncommitted_paths, vec!["new.txt".to_owned()]);
    assert_eq!(state.stashes, 1, "{state:?}");
    assert_eq!(state.unpushed.len(), 1, "{state:?}");
    assert_eq!(state.unpushed[0].branch, "main");
    assert_eq!(state.unpushed[0].commits, 1);
}

/// Changes inside a submodule are not looked at (git would run there with the submodule's own config, which the
/// container writes), so a submodule is reported as a place that may hold work, and a delete asks first.
#[tokio::test]
async fn a_submodule_counts_as_work_that_may_be_lost() {
    let folder = repository();
    let path = folder.path();
    git_in(
        path,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            "160000,1111111111111111111111111111111111111111,vendor/lib",
        ],
    );
    git_in(path, &["commit", "-q", "-m", "a submodule"]);
    let state = state(path).await.unwrap();
    assert!(!state.is_clean());
    assert!(
        state
            .uncommitted_paths
            .contains(&"vendor/lib (a submodule: changes inside it are not checked)".to_owned()),
        "{state:?}"
    );
    assert_eq!(
        gitlinks(b"100644 aaaa 0\ta.txt\x00160000 bbbb 0\tsub\x00"),
        vec!["sub".to_owned()]
    );
}

#[tokio::test]
async fn upstreams_and_remotes_are_read_through_the_view() {
    let upstream = repository();
    let clone = tempfile::tempdir().unwrap();
    let status = Command::new("git")
        .args(["clone", "-q", "--"])
        .arg(upstream.path())
        .arg(clone.path())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(clone.path().join("a.txt"), "two\n").unwrap();
    git_in(clone.path(), &["commit", "-q", "-am", "second"]);
    let state = state(clone.path()).await.unwrap();
    assert_eq!(state.uncommitted, 0, "{state:?}");
    assert_eq!(state.unpushed.len(), 1, "{state:?}");
    assert_eq!(state.unpushed[0].commits, 1);
    assert_eq!(state.unpushed[0].upstream.as_deref(), Some("origin/main"));
    // A clone of the same URL is recognised through the view's copy of `remote.origin.url`.
    let url = upstream.path().display().to_string();
    let cloned = clone_into_existing(&url, clone.path()).await;
    assert!(!cloned.cloned);
    assert!(cloned.head.is_some());
}

async fn clone_into_existing(url: &str, folder: &Path) -> Cloned {
    super::clone(url, None, folder, |_| {}).await.unwrap()
}

/// Attack (issue 13, item 4): the dev container writes the files folder, so it can set programs in
/// `.git/config` (`core.fsmonitor`, a clean filter named by `.gitattributes`, `core.hooksPath`, an `include.path`
/// holding more of them). The agent reads the repository as root before a delete; none of those programs may
/// run. Each would create the marker file.
#[tokio::test]
async fn programs_set_in_the_repository_config_never_run() {
    let folder = repository();
    let path = folder.path();
    let planted = tempfile::tempdir().unwrap();
    let marker = planted.path().join("ran-as-root");
    let program = planted.path().join("program");
    std::fs::write(
        &program,
        format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\ncat\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hooks = planted.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    for hook in [
        "post-index-change",
        "reference-transaction",
        "post-checkout",
    ] {
        std::os::unix::fs::symlink(&program, hooks.join(hook)).unwrap();
        std::os::unix::fs::symlink(&program, path.join(".git/hooks").join(hook)).unwrap();
    }
    let included = planted.path().join("included");
    std::fs::write(
        &included,
        format!("[core]\n\tfsmonitor = {}\n", program.display()),
    )
    .unwrap();
    std::fs::write(
        path.join(".gitattributes"),
        "* filter=planted diff=planted\n",
    )
    .unwrap();
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(path.join(".git/config"))
        .unwrap();
    std::io::Write::write_all(
        &mut config,
        format!(
            "[core]\n\tfsmonitor = {program}\n\thooksPath = {hooks}\n\tpager = {program}\n\
             [filter \"planted\"]\n\tclean = {program}\n\tsmudge = {program}\n\tprocess = {program}\n\trequired = true\n\
             [diff \"planted\"]\n\ttextconv = {program}\n\
             [diff]\n\texternal = {program}\n\
             [log]\n\tshowSignature = true\n\
             [gpg]\n\tprogram = {program}\n\
             [include]\n\tpath = {included}\n",
            program = program.display(),
            hooks = hooks.display(),
            included = included.display(),
        )
        .as_bytes(),
    )
    .unwrap();
    // A changed stat makes status look at the file's content, which would run the clean filter.
    std::fs::write(path.join("a.txt"), "one\n").unwrap();
    let state = state(path).await.unwrap();
    assert!(
        !marker.exists(),
        "a program planted in the repository ran: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
    assert!(state.repository);
    assert_eq!(state.stashes, 1, "{state:?}");
    let url = "https://example.invalid/never-fetched.git";
    let refused = super::clone(url, None, path, |_| {}).await.unwrap_err();
    assert!(matches!(refused, GitError::NotEmpty { .. }), "{refused}");
    assert!(
        !marker.exists(),
        "a planted program ran during clone's check"
    );
}

/// Attack: `.git` (or a file the view copies) replaced by a link to a file of the agent's machine is refused, not
/// followed as root.
#[tokio::test]
async fn links_in_the_repository_are_not_followed() {
    let folder = repository();
    let path = folder.path();
    std::fs::remove_file(path.join(".git/HEAD")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", path.join(".git/HEAD")).unwrap();
    let error = state(path).await.unwrap_err();
    assert!(matches!(error, GitError::Unreadable { .. }), "{error}");

    let elsewhere = repository();
    let linked = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join(".git"), linked.path().join(".git")).unwrap();
    let error = state(linked.path()).await.unwrap_err();
    assert!(error.to_string().contains("is a link or a file"), "{error}");
}

#[test]
fn the_view_config_keeps_only_inert_keys_as_quoted_values() {
    let listed = b"core.repositoryformatversion\n0\0core.fsmonitor\n/tmp/x\0core.filemode\ntrue\0\
remote.origin.url\nhttps://h/r\"x\\\0remote.origin.fetch\n+refs/heads/*:refs/remotes/origin/*\0\
filter.lfs.clean\ngit-lfs clean\0branch.main.remote\norigin\0branch.a\"b.merge\nrefs/heads/x\0include.path\n/etc/x\0core.bare\0";
    let config = String::from_utf8(view::inert_config(listed)).unwrap();
    assert!(!config.contains("fsmonitor"), "{config}");
    assert!(!config.contains("lfs"), "{config}");
    assert!(!config.contains("include"), "{config}");
    assert!(
        config.contains("[remote \"origin\"]\n\turl = \"https://h/r\\\"x\\\\\"\n"),
        "{config}"
    );
    assert!(
        config.contains("[branch \"a\\\"b\"]\n\tmerge = \"refs/heads/x\"\n"),
        "{config}"
    );
    assert!(config.contains("bare = \"false\""), "{config}");
}

#[test]
fn a_branch_that_is_not_one_is_refused_with_its_name() {
    let error = check_branch("--upload-pack=x").unwrap_err().to_string();
    assert!(
        error.contains("\"--upload-pack=x\" is not a branch or tag name"),
        "{error}"
    );
}

#[tokio::test]
async fn a_clone_at_a_branch_checks_that_branch_out() {
    let source = repository();
    git_in(source.path(), &["checkout", "-q", "-b", "feature"]);
    std::fs::write(source.path().join("feature.txt"), "only here\n").unwrap();
    git_in(source.path(), &["add", "feature.txt"]);
    git_in(source.path(), &["commit", "-q", "-m", "feature"]);
    git_in(source.path(), &["checkout", "-q", "main"]);
    let url = format!("file://{}", source.path().display());
    let target = tempfile::tempdir().unwrap();
    let folder = target.path().join("files");
    super::clone(&url, Some("feature"), &folder, |_| {})
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(folder.join("feature.txt")).unwrap(),
        "only here\n"
    );
    let other = target.path().join("default");
    super::clone(&url, None, &other, |_| {}).await.unwrap();
    assert!(
        !other.join("feature.txt").exists(),
        "the default branch has no feature.txt"
    );
    let missing = super::clone(&url, Some("nope"), &target.path().join("missing"), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("nope"), "{missing}");
}
