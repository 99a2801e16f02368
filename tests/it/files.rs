//! The workspace's files through the real agent and client: packing as git sees the folder, an upload spread over
//! four connections landing the same tree as one, a part that never comes, `sync`, cloning a repository by a
//! `file://` URL, the git state a delete checks, and `skiff up GIT_URL` / `skiff delete` end to end.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rand::{Rng, RngCore, SeedableRng};
use skiff_client::agent_client::{ArchiveCompression, UploadHeader, UploadPart};
use skiff_client::files::{self, SyncOptions};
use skiff_tests::agent::InProcessAgent;
use skiff_tests::{Sandbox, require_docker};

fn write(folder: &Path, relative: &str, contents: impl AsRef<[u8]>) {
    let path = folder.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

fn git(folder: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args([
            "-c",
            "user.name=skiff test",
            "-c",
            "user.email=test@skiff.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .arg("-C")
        .arg(folder)
        .args(args)
        .output()
        .expect("running git (the tests need git)");
    assert!(
        output.status.success(),
        "git {} in {}: {}",
        args.join(" "),
        folder.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every path under `folder` with what identifies it: kind, mode, and content or link target.
fn tree(folder: &Path) -> BTreeMap<String, String> {
    fn visit(root: &Path, folder: &Path, found: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(folder).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let relative = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let metadata = path.symlink_metadata().unwrap();
            let mode = metadata.permissions().mode() & 0o7777;
            let value = if metadata.file_type().is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if metadata.is_dir() {
                visit(root, &path, found);
                format!("dir {mode:o}")
            } else {
                let contents = std::fs::read(&path).unwrap();
                let digest: u64 = contents.iter().fold(0xcbf29ce484222325, |hash, byte| {
                    (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3)
                });
                format!("file {mode:o} {} {digest:x}", contents.len())
            };
            found.insert(relative, value);
        }
    }
    let mut found = BTreeMap::new();
    visit(folder, folder, &mut found);
    found
}

/// A project of about `megabytes` MB: source-like text (compressible), some random bytes, a link, an empty folder,
/// an executable, ignored build output and a git repository.
fn project(folder: &Path, megabytes: usize, seed: u64) {
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let words = [
        "fn", "let", "match", "impl", "struct", "pub", "async", "await", "self", "return", "Ok",
        "Err", "String", "Vec", "usize", "config", "client", "agent", "stream", "folder",
    ];
    let text_bytes = megabytes * 1024 * 1024 * 4 / 5;
    let mut written = 0;
    let mut index = 0;
    while written < text_bytes {
        let mut text = String::new();
        let size = random.random_range(2_000..60_000);
        while text.len() < size {
            for _ in 0..random.random_range(3..12) {
                text.push_str(words[random.random_range(0..words.len())]);
                text.push(' ');
            }
            text.push_str(&format!("{};\n", random.random_range(0..100_000)));
        }
        written += text.len();
        write(
            folder,
            &format!("src/module{}/file{index}.rs", index % 17),
            &text,
        );
        index += 1;
    }
    let mut binary = vec![0u8; megabytes * 1024 * 1024 / 5];
    random.fill_bytes(&mut binary);
    write(folder, "assets/blob.bin", &binary);
    write(folder, "run.sh", "#!/bin/sh\necho run\n");
    std::fs::set_permissions(
        folder.join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("src/module0/file0.rs", folder.join("main-link")).unwrap();
    std::fs::create_dir_all(folder.join("empty/inner")).unwrap();
    write(folder, ".gitignore", "target/\n*.tmp\n");
    write(folder, "target/debug/big-output", vec![1u8; 100_000]);
    write(folder, "notes.tmp", "scratch");
    git(folder, &["init", "-q"]);
    git(folder, &["add", "-A"]);
    git(folder, &["commit", "-q", "-m", "first"]);
}

#[tokio::test]
async fn upload_honours_gitignore_and_keeps_git_links_and_modes() {
    let source = tempfile::tempdir().unwrap();
    project(source.path(), 1, 1);
    let agent = InProcessAgent::start("files-pack").await;
    let mut clients = agent.clients(1).await;
    let outcome = files::upload(&mut clients, source.path(), &|_| {})
        .await
        .expect("upload");
    assert_eq!(outcome.parts, 1);
    assert_eq!(Path::new(&outcome.files_folder), agent.files());
    let files = agent.files();
    assert!(!files.join("target").exists(), "ignored folder absent");
    assert!(!files.join("notes.tmp").exists(), "ignored file absent");
    assert!(files.join(".git/HEAD").is_file(), ".git present");
    assert_eq!(
        std::fs::read_link(files.join("main-link")).unwrap(),
        Path::new("src/module0/file0.rs"),
        "the link is kept as a link"
    );
    assert!(files.join("empty/inner").is_dir(), "empty folders kept");
    let mode = std::fs::metadata(files.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755, "modes kept");
    // The uploaded repository works on the agent's side.
    assert_eq!(git(&files, &["status", "--porcelain"]), "");
    agent.stop().await;
}

#[tokio::test]
async fn four_connections_land_the_same_tree_as_one() {
    let source = tempfile::tempdir().unwrap();
    project(source.path(), 6, 2);
    let single = InProcessAgent::start("files-single").await;
    let pooled = InProcessAgent::start("files-pooled").await;

    let mut one = single.clients(1).await;
    let by_one = files::upload(&mut one, source.path(), &|_| {})
        .await
        .expect("upload over one connection");
    let mut four = pooled.clients(4).await;
    let by_four = files::upload(&mut four, source.path(), &|_| {})
        .await
        .expect("upload over four connections");

    assert_eq!(by_one.parts, 1);
    assert_eq!(by_four.parts, 4);
    assert!(
        by_four.compressed > 8 * files::STRIPE_SIZE as u64,
        "the archive spans many stripes ({} bytes)",
        by_four.compressed
    );
    assert_eq!((by_one.files, by_one.bytes), (by_four.files, by_four.bytes));
    let expected = tree(&single.files());
    assert!(expected.len() > 50, "{} paths", expected.len());
    assert_eq!(tree(&pooled.files()), expected);
    assert!(
        !pooled
            .state
            .path()
            .join("agent/uploads")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "no parts are left behind"
    );
    single.stop().await;
    pooled.stop().await;
}

#[tokio::test]
async fn a_part_that_never_comes_fails_cleanly() {
    let agent = InProcessAgent::start("files-missing").await;
    let mut clients = agent.clients(2).await;
    let header = |part| UploadHeader {
        compression: ArchiveCompression::Zstd,
        size: 0,
        part: Some(UploadPart {
            upload_id: "missing-part".into(),
            part,
            parts: 3,
            stripe_size: 1024,
            wait_seconds: 1,
        }),
        remove: Vec::new(),
        expected: Vec::new(),
    };
    let (first, second) = clients.split_at_mut(1);
    let started = std::time::Instant::now();
    let (zero, two) = tokio::join!(
        first[0].upload_with(header(0), futures::stream::iter(vec![vec![1u8; 1024]])),
        second[0].upload_with(header(2), futures::stream::iter(vec![vec![3u8; 100]])),
    );
    for result in [zero, two] {
        let error = result.expect_err("the upload cannot complete").to_string();
        assert!(
            error.contains("missing-part") && error.contains("part 1 of 3 did not arrive"),
            "{error}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let parts = agent.state.path().join("agent/uploads/missing-part");
    assert!(!parts.exists(), "the parts that came are removed");
    assert!(
        !agent.files().exists() || agent.files().read_dir().unwrap().next().is_none(),
        "nothing was unpacked"
    );
    agent.stop().await;
}

#[tokio::test]
async fn sync_sends_only_changes_and_keeps_work_made_there() {
    let source = tempfile::tempdir().unwrap();
    let folder = source.path();
    write(folder, "keep.txt", "unchanged\n");
    write(folder, "edit.txt", "before\n");
    write(folder, "delete.txt", "going away\n");
    write(folder, "touch.txt", "same content\n");
    write(folder, "both.txt", "original\n");
    write(folder, "gone/deep/file.txt", "in a folder deleted here\n");
    let agent = InProcessAgent::start("files-sync").await;
    let mut clients = agent.clients(2).await;
    files::upload(&mut clients, folder, &|_| {})
        .await
        .expect("upload");
    let files = agent.files();

    // Nothing changed: nothing is sent.
    let outcome = files::sync(&mut clients, folder, &SyncOptions::default(), &|_| {})
        .await
        .expect("sync");
    assert_eq!(outcome.summary(), "nothing changed");

    // Here: an edit, a new file, a deletion, a folder deleted, a touch with the same content.
    write(folder, "edit.txt", "after, and longer\n");
    write(folder, "new/added.txt", "new\n");
    std::fs::remove_file(folder.join("delete.txt")).unwrap();
    std::fs::remove_dir_all(folder.join("gone")).unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(120);
    std::fs::File::options()
        .write(true)
        .open(folder.join("touch.txt"))
        .unwrap()
        .set_modified(later)
        .unwrap();
    // There: a file made on the instance, and one edited on both sides.
    write(&files, "made-there.txt", "work on the instance\n");
    write(&files, "both.txt", "edited on the instance\n");
    write(folder, "both.txt", "edited on the laptop too\n");

    let outcome = files::sync(&mut clients, folder, &SyncOptions::default(), &|_| {})
        .await
        .expect("sync");
    assert_eq!(outcome.files, 2, "{outcome:?}");
    assert_eq!(
        outcome.removed, 4,
        "a file, a folder and what it held: {outcome:?}"
    );
    assert_eq!(outcome.conflicts, ["both.txt"]);
    assert_eq!(
        outcome.summary(),
        format!(
            "2 files sent, 4 removed, {}",
            files::human_bytes(("after, and longer\n".len() + "new\n".len()) as u64)
        )
    );
    assert_eq!(
        std::fs::read_to_string(files.join("edit.txt")).unwrap(),
        "after, and longer\n"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("new/added.txt")).unwrap(),
        "new\n"
    );
    assert!(!files.join("delete.txt").exists());
    assert!(!files.join("gone").exists());
    assert_eq!(
        std::fs::read_to_string(files.join("made-there.txt")).unwrap(),
        "work on the instance\n"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("both.txt")).unwrap(),
        "edited on the instance\n"
    );

    // --force: this machine's version wins; afterwards both sides agree and nothing is left to send.
    let outcome = files::sync(&mut clients, folder, &SyncOptions { force: true }, &|_| {})
        .await
        .expect("sync --force");
    assert_eq!(outcome.files, 1, "{outcome:?}");
    assert_eq!(
        std::fs::read_to_string(files.join("both.txt")).unwrap(),
        "edited on the laptop too\n"
    );
    let outcome = files::sync(&mut clients, folder, &SyncOptions::default(), &|_| {})
        .await
        .expect("sync");
    assert_eq!(outcome.summary(), "nothing changed", "{outcome:?}");
    agent.stop().await;
}

/// A gzip tar holding `files` (path, contents) with mode 0644.
fn gzip_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(1_700_000_000);
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Attacks a sync's decision with time: work done on the instance after the client read the manifest and
/// before the agent writes (a long sync) used to be overwritten or removed. The agent checks each path again
/// at that moment; the changed ones are kept as the instance has them and reported as conflicts.
#[tokio::test]
async fn work_done_there_during_a_sync_is_reported_not_lost() {
    let agent = InProcessAgent::start("files-sync-race").await;
    let mut client = agent.connect().await;
    let archive = gzip_tar(&[
        ("edited.txt", b"v1\n"),
        ("removed.txt", b"v1\n"),
        ("calm.txt", b"v1\n"),
    ]);
    let header = |expected| UploadHeader {
        compression: ArchiveCompression::Gzip,
        size: 0,
        part: None,
        remove: vec!["removed.txt".to_owned()],
        expected,
    };
    client
        .upload(archive.len() as u64, futures::stream::iter(vec![archive]))
        .await
        .expect("the first upload");
    // The client decides from the manifest...
    let manifest = client.manifest(Vec::new()).await.expect("manifest");
    let current = |path: &str| {
        manifest
            .iter()
            .find(|entry| entry.path == path)
            .and_then(|entry| entry.current.clone())
    };
    let expected = vec![
        ("edited.txt".to_owned(), current("edited.txt")),
        ("removed.txt".to_owned(), current("removed.txt")),
        ("calm.txt".to_owned(), current("calm.txt")),
    ];
    // ...and meanwhile someone works on the instance.
    let files = agent.files();
    write(&files, "edited.txt", "work on the instance, longer\n");
    write(&files, "removed.txt", "also work on the instance\n");
    let archive = gzip_tar(&[
        ("edited.txt", b"v2 from the laptop\n"),
        ("calm.txt", b"v2\n"),
    ]);
    let reply = client
        .upload_with(header(expected), futures::stream::iter(vec![archive]))
        .await
        .expect("the sync's upload");
    let mut conflicts = reply.conflicts.clone();
    conflicts.sort();
    assert_eq!(conflicts, ["edited.txt", "removed.txt"], "{reply:?}");
    assert_eq!(
        std::fs::read_to_string(files.join("edited.txt")).unwrap(),
        "work on the instance, longer\n"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("removed.txt")).unwrap(),
        "also work on the instance\n"
    );
    assert_eq!(
        std::fs::read_to_string(files.join("calm.txt")).unwrap(),
        "v2\n",
        "an unchanged path is still written"
    );
    assert_eq!((reply.files, reply.removed), (1, 0), "{reply:?}");
    agent.stop().await;
}

/// A bare repository at `root/origin.git` holding a devcontainer.json and a README, pushed from `root/work`.
pub(crate) fn bare_repository(root: &Path) -> (PathBuf, PathBuf) {
    let bare = root.join("origin.git");
    let work = root.join("work");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare"]);
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    write(
        &work,
        ".devcontainer/devcontainer.json",
        format!(
            "// cloned by the agent\n{{ \"image\": \"{}\", \"remoteUser\": \"root\", }}\n",
            skiff_tests::BASE_IMAGE
        ),
    );
    write(&work, "README.md", "hello from the repository\n");
    write(&work, "src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git(&work, &["push", "-q", "origin", "main"]);
    (bare, work)
}

/// The repository `skiff up` would clone for `text`.
fn repository(text: &str) -> files::Repository {
    files::Repository::parse(text).unwrap()
}

#[tokio::test]
async fn clone_of_a_file_url_and_its_git_state() {
    let root = tempfile::tempdir().unwrap();
    let (bare, _) = bare_repository(root.path());
    let url = format!("file://{}", bare.display());
    let agent = InProcessAgent::start("files-clone").await;
    let mut client = agent.connect().await;

    let cloned = files::clone_remote(&mut client, &repository(&url), &mut |_| {})
        .await
        .expect("clone");
    assert!(cloned.cloned);
    assert_eq!(Path::new(&cloned.files_folder), agent.files());
    let files = agent.files();
    assert_eq!(
        std::fs::read_to_string(files.join("README.md")).unwrap(),
        "hello from the repository\n"
    );
    assert!(files.join("src/lib.rs").is_file());

    // The config comes back as text, parsed as a local one is.
    let loaded = files::fetch_config(&mut client, None, false)
        .await
        .expect("config");
    assert_eq!(
        loaded.config_file,
        files.join(".devcontainer/devcontainer.json")
    );
    assert_eq!(
        loaded.config.image.as_deref(),
        Some(skiff_tests::BASE_IMAGE)
    );
    let missing = files::fetch_config(&mut client, Some("other/devcontainer.json"), false)
        .await
        .expect_err("no such config");
    assert!(
        missing.to_string().contains("other/devcontainer.json"),
        "{missing}"
    );
    let outside = files::fetch_config(&mut client, Some("../../etc/devcontainer.json"), false)
        .await
        .expect_err("outside the files folder");
    assert!(
        outside.to_string().contains("outside the files folder"),
        "{outside}"
    );

    // Attacks the next `up` from the dev container, which can write the clone: a devcontainer.json changed
    // there to ask for a privileged container is not what the agent answers; the copy pinned at clone time is,
    // until the user asks for the change with `--rebuild` (`refresh`).
    write(
        &files,
        ".devcontainer/devcontainer.json",
        "{ \"image\": \"attacker\", \"privileged\": true }",
    );
    let pinned = files::fetch_config(&mut client, None, false)
        .await
        .expect("the pinned config");
    assert_eq!(
        pinned.config.image.as_deref(),
        Some(skiff_tests::BASE_IMAGE),
        "the change made in the clone is ignored"
    );
    let refreshed = files::fetch_config(&mut client, None, true)
        .await
        .expect("the clone's config, asked for");
    assert_eq!(refreshed.config.image.as_deref(), Some("attacker"));
    let again = files::fetch_config(&mut client, None, false)
        .await
        .expect("the config pinned by the refresh");
    assert_eq!(again.config.image.as_deref(), Some("attacker"));
    git(
        &files,
        &["checkout", "-q", "--", ".devcontainer/devcontainer.json"],
    );

    // The same URL again keeps the clone; another URL is refused.
    let again = files::clone_remote(&mut client, &repository(&url), &mut |_| {})
        .await
        .expect("clone again");
    assert!(!again.cloned);
    let other = files::clone_remote(
        &mut client,
        &repository("file:///nonexistent/other.git"),
        &mut |_| {},
    )
    .await
    .expect_err("a second repository");
    assert!(other.to_string().contains("already holds files"), "{other}");

    // Git state: clean, then an uncommitted file, then an unpushed commit, then clean after the push.
    assert!(client.git_state().await.unwrap().is_clean());
    write(&files, "notes.md", "work on the instance\n");
    let state = client.git_state().await.unwrap();
    assert!(state.repository);
    assert_eq!(state.uncommitted, 1);
    assert_eq!(state.uncommitted_paths, ["notes.md"]);
    assert!(state.unpushed.is_empty());
    git(&files, &["add", "notes.md"]);
    git(&files, &["commit", "-q", "-m", "notes"]);
    git(&files, &["checkout", "-q", "-b", "spike"]);
    write(&files, "spike.md", "an idea\n");
    git(&files, &["add", "spike.md"]);
    git(&files, &["commit", "-q", "-m", "spike"]);
    let state = client.git_state().await.unwrap();
    assert_eq!(state.uncommitted, 0);
    let unpushed: Vec<(&str, u32, Option<&str>)> = state
        .unpushed
        .iter()
        .map(|branch| {
            (
                branch.branch.as_str(),
                branch.commits,
                branch.upstream.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        unpushed,
        [("main", 1, Some("origin/main")), ("spike", 2, None)]
    );
    git(&files, &["push", "-q", "origin", "main", "spike"]);
    let state = client.git_state().await.unwrap();
    assert!(state.is_clean(), "{state:?}");
    agent.stop().await;
}

#[test]
fn up_from_a_git_url_then_delete_protects_unpushed_work() {
    require_docker();
    let sandbox = Sandbox::new();
    let (bare, _) = bare_repository(sandbox.root.path());
    let url = format!("file://{}", bare.display());
    let up = sandbox.ok(&["up", &url, "--name", "cloned"]);
    assert_eq!(up.trim(), "cloned");
    let readme = sandbox.ok(&["exec", "cloned", "--", "cat", "README.md"]);
    assert_eq!(readme, "hello from the repository\n");

    let sync = sandbox.run(&["sync", "cloned"]);
    assert!(sync.status.success());
    assert!(
        String::from_utf8_lossy(&sync.stderr).contains("sync is not needed"),
        "{}",
        String::from_utf8_lossy(&sync.stderr)
    );

    // Work made in the dev container exists only in the clone: delete refuses without --yes and names it.
    sandbox.ok(&["exec", "cloned", "--", "sh", "-c", "echo idea > idea.md"]);
    let refused = sandbox.run(&["delete", "cloned"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("1 uncommitted change: idea.md"), "{stderr}");
    assert!(stderr.contains("--yes"), "{stderr}");
    assert_eq!(sandbox.workspaces(), ["cloned"]);
    sandbox.ok(&["delete", "--yes", "cloned"]);
    assert!(sandbox.workspaces().is_empty());
}

/// The dev container can write its clone (the workspace folder is mounted read-write), so a devcontainer.json that
/// code in the container rewrites there must not take effect on the next `up` by itself: here a `remoteEnv`, which
/// the next `up` applies to the running container (so would a `remoteUser`, and a `privileged` to the next container
/// made). The agent pinned the configuration when it cloned; only `up --rebuild`, the user's say-so on the laptop,
/// reads the clone's again.
#[test]
fn a_clones_config_rewritten_from_the_container_waits_for_rebuild() {
    require_docker();
    let sandbox = Sandbox::new();
    let (bare, _) = bare_repository(sandbox.root.path());
    let url = format!("file://{}", bare.display());
    sandbox.ok(&["up", &url, "--name", "pinned"]);
    let planted = format!(
        "{{ \"image\": \"{}\", \"remoteUser\": \"root\", \"remoteEnv\": {{ \"PLANTED\": \"yes\" }} }}",
        skiff_tests::BASE_IMAGE
    );
    sandbox.ok(&[
        "exec",
        "pinned",
        "--",
        "sh",
        "-c",
        "printf '%s' \"$1\" > .devcontainer/devcontainer.json",
        "sh",
        &planted,
    ]);
    let planted_value =
        || sandbox.ok(&["exec", "pinned", "--", "sh", "-c", "echo ${PLANTED:-unset}"]);

    sandbox.ok(&["up", &url, "--name", "pinned"]);
    assert_eq!(
        planted_value().trim(),
        "unset",
        "the rewritten configuration took effect without --rebuild"
    );
    sandbox.ok(&["up", &url, "--name", "pinned", "--rebuild"]);
    assert_eq!(
        planted_value().trim(),
        "yes",
        "--rebuild reads the clone's configuration again"
    );
    sandbox.ok(&["delete", "--yes", "pinned"]);
}

/// The figures in the notes: a 50 MB tree (or `SKIFF_FILES_BENCH_FOLDER`) packed and sent over one connection and
/// over four, on loopback, each landing the same tree. Loopback is not what the pool is for (Session Manager's
/// ~1 MB/s per session is); this shows what packing and unpacking cost and that striping adds nothing to it.
#[tokio::test]
async fn fifty_megabytes_over_one_and_four_connections() {
    let generated = tempfile::tempdir().unwrap();
    let source = match std::env::var_os("SKIFF_FILES_BENCH_FOLDER") {
        Some(folder) => PathBuf::from(folder),
        None => {
            project(generated.path(), 50, 3);
            generated.path().to_owned()
        }
    };
    let mut trees = Vec::new();
    for connections in [1, 4] {
        let agent = InProcessAgent::start(&format!("files-bench-{connections}")).await;
        let mut clients = agent.clients(connections).await;
        let outcome = files::upload(&mut clients, &source, &|_| {})
            .await
            .expect("upload");
        eprintln!(
            "{connections} connection(s): {} files, {} of content, {} compressed, in {:.2} s",
            outcome.files,
            files::human_bytes(outcome.bytes),
            files::human_bytes(outcome.compressed),
            outcome.elapsed.as_secs_f64()
        );
        assert_eq!(outcome.parts, connections as u32);
        trees.push(tree(&agent.files()));
        agent.stop().await;
    }
    assert_eq!(trees[0], trees[1]);
}

/// Attack (issue 13, item 4): the files folder is mounted read-write in the dev container, so code there can set
/// `core.fsmonitor` and a clean filter (named by a `.gitattributes` it writes) in the clone's `.git/config`, both
/// pointing at a script it wrote beside them. `skiff delete` makes the agent read the repository as root on the
/// agent's machine; neither program may run there (before the fix the fsmonitor ran at once).
#[test]
fn programs_planted_in_the_clone_from_the_container_never_run_on_delete() {
    require_docker();
    let sandbox = Sandbox::new();
    let (bare, _) = bare_repository(sandbox.root.path());
    let url = format!("file://{}", bare.display());
    sandbox.ok(&["up", &url, "--name", "planted"]);
    let container = sandbox.container_of("planted");
    let workdir = sandbox.ok(&["exec", "planted", "--", "pwd"]);
    let workdir = workdir.trim();
    // Where the container's folder is on the agent's machine: an attacker would guess it; the test looks.
    let source = skiff_tests::docker_inspect(
        &format!(
            "{{{{range .Mounts}}}}{{{{if eq .Destination \"{workdir}\"}}}}{{{{.Source}}}}{{{{end}}}}{{{{end}}}}"
        ),
        &container,
    );
    let source = source.trim();
    assert!(!source.is_empty(), "no mount at {workdir} in {container}");
    let marker = sandbox.root.path().join("ran-on-the-agent-machine");
    let plant = format!(
        "printf '#!/bin/sh\\nid -u >> {marker}\\ncat\\n' > .git/plant.sh && chmod +x .git/plant.sh && \
         printf '[core]\\n\\tfsmonitor = {source}/.git/plant.sh\\n[filter \"p\"]\\n\\tclean = {source}/.git/plant.sh\\n' >> .git/config && \
         echo '* filter=p' > .gitattributes",
        marker = marker.display(),
    );
    sandbox.ok(&["exec", "planted", "--", "sh", "-c", &plant]);

    let refused = sandbox.run(&["delete", "planted"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !marker.exists(),
        "a program planted from the container ran on the agent's machine as uid {}",
        std::fs::read_to_string(&marker).unwrap_or_default().trim()
    );
    // The state was still read: the planted .gitattributes is the one uncommitted change.
    assert!(
        stderr.contains("1 uncommitted change: .gitattributes"),
        "{stderr}"
    );
    sandbox.ok(&["delete", "--yes", "planted"]);
    assert!(!marker.exists(), "a planted program ran during the delete");
}

/// `skiff up URL@BRANCH#PATH`: the agent clones that branch, the devcontainer.json of that folder is used, and that
/// folder is the workspace mounted in the dev container (a monorepo's project).
#[test]
fn up_of_a_branch_and_a_folder_of_a_repository() {
    require_docker();
    let sandbox = Sandbox::new();
    let (bare, work) = bare_repository(sandbox.root.path());
    git(&work, &["checkout", "-q", "-b", "feature"]);
    write(
        &work,
        "services/api/.devcontainer/devcontainer.json",
        format!(
            "{{ \"image\": \"{}\", \"remoteUser\": \"root\", \"containerEnv\": {{ \"MARKER\": \"feature-api\" }} }}\n",
            skiff_tests::BASE_IMAGE
        ),
    );
    write(&work, "services/api/api.txt", "the api service\n");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "the api service"]);
    git(&work, &["push", "-q", "origin", "feature"]);

    let url = format!("file://{}@feature#services/api", bare.display());
    let up = sandbox.ok(&["up", &url]);
    assert_eq!(up.trim(), "api", "named after the folder");
    assert_eq!(
        sandbox.ok(&[
            "exec",
            "api",
            "--",
            "sh",
            "-c",
            "echo $MARKER; pwd; cat api.txt"
        ]),
        "feature-api\n/workspaces/api\nthe api service\n",
        "that folder's devcontainer.json, that folder as the workspace, that branch's files"
    );

    // A branch that does not exist is git's error, named; a folder without a devcontainer.json says where it looked.
    let missing = sandbox.fails(&[
        "up",
        &format!("file://{}@nope", bare.display()),
        "--name",
        "nope",
    ]);
    assert!(missing.contains("nope"), "{missing}");
    let no_config = sandbox.fails(&[
        "up",
        &format!("file://{}#src", bare.display()),
        "--name",
        "no-config",
    ]);
    assert!(
        no_config.contains("src/.devcontainer/devcontainer.json"),
        "{no_config}"
    );
    assert_eq!(
        sandbox.workspaces(),
        ["api"],
        "the failed ups left no workspace behind"
    );
    sandbox.ok(&["delete", "--yes", "api"]);
}
