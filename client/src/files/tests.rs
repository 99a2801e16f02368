//! Unit tests of the files module: the walk's rules, the archive, the sync plan, git URLs, and the delete warning.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use skiff::api::{FileKind, FileStamp, GitState, ManifestEntry, UnpushedBranch};

use super::*;
use crate::agent_client::ArchiveCompression;

fn write(folder: &Path, relative: &str, contents: &str) {
    let path = folder.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

fn names(entries: &[Entry]) -> Vec<&str> {
    entries
        .iter()
        .map(|entry| entry.relative.as_str())
        .collect()
}

#[test]
fn walk_honours_gitignore_but_keeps_the_git_folder() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write(root, ".gitignore", "target/\n*.log\nlogs\n");
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "build.log", "noise");
    write(root, "target/debug/app", "binary");
    write(root, "sub/.gitignore", "local.txt\n");
    write(root, "sub/local.txt", "ignored in sub");
    write(root, "sub/kept.txt", "kept");
    // git's own files are never subject to the ignore rules (`logs` above would hide .git/logs).
    write(root, ".git/HEAD", "ref: refs/heads/main\n");
    write(root, ".git/logs/HEAD", "log");
    write(root, ".git/info/exclude", "secret.env\n");
    write(root, "secret.env", "TOKEN=1");
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("src/main.rs", root.join("link")).unwrap();

    let entries = walk(root).unwrap();
    let listed = names(&entries);
    for present in [
        ".git",
        ".git/HEAD",
        ".git/logs/HEAD",
        ".git/info/exclude",
        ".gitignore",
        "empty",
        "link",
        "src/main.rs",
        "sub/kept.txt",
    ] {
        assert!(
            listed.contains(&present),
            "{present} missing from {listed:?}"
        );
    }
    for absent in [
        "build.log",
        "target",
        "target/debug/app",
        "sub/local.txt",
        "secret.env",
    ] {
        assert!(!listed.contains(&absent), "{absent} listed in {listed:?}");
    }
    let link = entries
        .iter()
        .find(|entry| entry.relative == "link")
        .unwrap();
    assert_eq!(link.stamp.kind, FileKind::Symlink);
    assert_eq!(link.stamp.link_target, "src/main.rs");
}

#[test]
fn pack_keeps_modes_links_and_empty_folders_with_relative_names() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write(root, "run.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::os::unix::fs::symlink("run.sh", root.join("link")).unwrap();
    let entries = walk(root).unwrap();
    for compression in [ArchiveCompression::Zstd, ArchiveCompression::Gzip] {
        let mut archive = Vec::new();
        let packed = pack(&entries, compression, &mut archive, |_| {}).unwrap();
        assert_eq!(packed.files, 1);
        assert_eq!(packed.entries, 3);
        let reader: Box<dyn std::io::Read> = match compression {
            ArchiveCompression::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(archive.as_slice()).unwrap())
            }
            ArchiveCompression::Gzip => Box::new(flate2::read::GzDecoder::new(archive.as_slice())),
            ArchiveCompression::None => Box::new(archive.as_slice()),
        };
        let mut tar = tar::Archive::new(reader);
        let mut seen = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            assert!(path.is_relative(), "{}", path.display());
            let header = entry.header();
            match path.to_str().unwrap() {
                "run.sh" => assert_eq!(header.mode().unwrap() & 0o7777, 0o750),
                "empty" => assert!(header.entry_type().is_dir()),
                "link" => {
                    assert!(header.entry_type().is_symlink());
                    assert_eq!(entry.link_name().unwrap().unwrap().to_str(), Some("run.sh"));
                }
                other => panic!("unexpected entry {other}"),
            }
            seen.push(path);
        }
        assert_eq!(seen.len(), 3);
    }
}

fn file(size: u64, mtime: i64) -> FileStamp {
    FileStamp {
        kind: FileKind::File,
        size,
        mtime,
        mode: 0o644,
        link_target: String::new(),
    }
}

fn local(relative: &str, stamp: FileStamp) -> Entry {
    Entry {
        relative: relative.into(),
        path: Path::new("/nowhere").join(relative),
        stamp,
    }
}

fn remote(path: &str, current: Option<FileStamp>, uploaded: Option<FileStamp>) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        current,
        uploaded,
        sha256: None,
    }
}

#[test]
fn sync_sends_changes_made_here_and_keeps_work_made_there() {
    let here = vec![
        local("unchanged.rs", file(10, 100)),
        local("edited-here.rs", file(12, 200)),
        local("new-here.rs", file(5, 300)),
        local("edited-there.rs", file(10, 100)),
        local("edited-both.rs", file(11, 200)),
    ];
    let there = vec![
        remote("unchanged.rs", Some(file(10, 100)), Some(file(10, 100))),
        remote("edited-here.rs", Some(file(10, 100)), Some(file(10, 100))),
        remote("edited-there.rs", Some(file(20, 900)), Some(file(10, 100))),
        remote("edited-both.rs", Some(file(30, 900)), Some(file(10, 100))),
        remote("deleted-here.rs", Some(file(10, 100)), Some(file(10, 100))),
        remote(
            "deleted-here-edited-there.rs",
            Some(file(40, 900)),
            Some(file(10, 100)),
        ),
        remote("made-there.rs", Some(file(10, 100)), None),
        remote(
            "ignored-here-now.rs",
            Some(file(10, 100)),
            Some(file(10, 100)),
        ),
    ];
    let exists_here = |path: &str| path == "ignored-here-now.rs";
    let plan = plan_sync(&here, &there, Some(&HashSet::new()), false, exists_here);
    assert_eq!(plan.send, ["edited-here.rs", "new-here.rs"]);
    assert_eq!(plan.remove, ["deleted-here.rs"]);
    assert_eq!(
        plan.conflicts,
        ["edited-both.rs", "deleted-here-edited-there.rs"]
    );

    let forced = plan_sync(&here, &there, Some(&HashSet::new()), true, exists_here);
    assert_eq!(
        forced.send,
        ["edited-here.rs", "new-here.rs", "edited-both.rs"]
    );
    assert_eq!(
        forced.remove,
        ["deleted-here-edited-there.rs", "deleted-here.rs"]
    );
    assert!(forced.conflicts.is_empty());
}

#[test]
fn sync_compares_content_when_only_the_time_differs() {
    // Touched here (same size, new time): whether it is sent depends on its content.
    let here = vec![local("touched.rs", file(10, 500))];
    let there = vec![remote(
        "touched.rs",
        Some(file(10, 100)),
        Some(file(10, 100)),
    )];
    let first = plan_sync(&here, &there, None, false, |_| false);
    assert_eq!(first.hash, ["touched.rs"]);
    assert!(first.send.is_empty());
    let equal: HashSet<String> = ["touched.rs".to_owned()].into();
    assert!(
        plan_sync(&here, &there, Some(&equal), false, |_| false)
            .send
            .is_empty()
    );
    assert_eq!(
        plan_sync(&here, &there, Some(&HashSet::new()), false, |_| false).send,
        ["touched.rs"]
    );
}

#[test]
fn sync_replaces_a_path_whose_kind_changed() {
    let folder = FileStamp {
        kind: FileKind::Directory,
        size: 0,
        mtime: 0,
        mode: 0o755,
        link_target: String::new(),
    };
    let here = vec![local("thing", file(3, 100))];
    let there = vec![remote("thing", Some(folder.clone()), Some(folder))];
    let plan = plan_sync(&here, &there, Some(&HashSet::new()), false, |_| true);
    assert_eq!(plan.send, ["thing"]);
    assert_eq!(plan.remove, ["thing"]);
}

#[test]
fn git_urls_are_told_from_folders() {
    for url in [
        "https://github.com/org/repo.git",
        "HTTPS://example.com/repo",
        "ssh://git@example.com:2222/org/repo.git",
        "git://example.com/repo",
        "file:///srv/git/repo.git",
        "git@github.com:org/repo.git",
        "deploy_user@git.example.com:repo",
    ] {
        assert_eq!(git_url(Path::new(url)).as_deref(), Some(url), "{url}");
    }
    for folder in [
        ".",
        "projects/app",
        "/home/me/app",
        "host:folder",
        "./a@b:c",
        "C:/code/app",
        "https://",
        "me@host:",
    ] {
        assert_eq!(git_url(Path::new(folder)), None, "{folder}");
    }
    // A local folder that happens to look like an scp URL stays a folder.
    let parent = tempfile::tempdir().unwrap();
    let odd = parent.path().join("me@host:repo");
    std::fs::create_dir(&odd).unwrap();
    assert_eq!(git_url(&odd), None);
}

#[test]
fn workspace_names_come_from_the_last_segment() {
    assert_eq!(
        name_from_url("https://github.com/org/My-Repo.git"),
        "my-repo"
    );
    assert_eq!(name_from_url("git@github.com:org/tool.git"), "tool");
    assert_eq!(name_from_url("git@host:repo"), "repo");
    assert_eq!(name_from_url("file:///srv/git/app.git/"), "app");
}

#[test]
fn unsaved_work_is_described_and_clean_is_silent() {
    assert!(describe_unsaved(&GitState::default()).is_empty());
    let state = GitState {
        repository: true,
        uncommitted: 7,
        uncommitted_paths: vec!["a.rs".into(), "b.rs".into()],
        unpushed: vec![
            UnpushedBranch {
                branch: "main".into(),
                commits: 1,
                upstream: Some("origin/main".into()),
            },
            UnpushedBranch {
                branch: "spike".into(),
                commits: 3,
                upstream: None,
            },
        ],
        stashes: 1,
    };
    assert_eq!(
        describe_unsaved(&state),
        [
            "7 uncommitted changes: a.rs, b.rs, …",
            "branch main (upstream origin/main): 1 commit on no remote",
            "branch spike (no upstream): 3 commits on no remote",
            "1 stash entry",
        ]
    );
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(human_bytes(512), "512 B");
    assert_eq!(human_bytes(12 * 1024), "12 KiB");
    assert_eq!(human_bytes(3_500_000), "3.3 MiB");
}

#[test]
fn a_sync_expects_each_path_it_writes_or_removes_as_the_manifest_saw_it() {
    let stamp = |size| FileStamp {
        kind: FileKind::File,
        size,
        mtime: 1_700_000_000,
        mode: 0o644,
        link_target: String::new(),
    };
    let there = vec![
        ManifestEntry {
            path: "edited.txt".into(),
            current: Some(stamp(3)),
            uploaded: Some(stamp(3)),
            sha256: None,
        },
        ManifestEntry {
            path: "gone.txt".into(),
            current: Some(stamp(5)),
            uploaded: Some(stamp(5)),
            sha256: None,
        },
    ];
    let plan = SyncPlan {
        send: vec!["edited.txt".into(), "new.txt".into()],
        remove: vec!["gone.txt".into()],
        conflicts: Vec::new(),
        hash: Vec::new(),
    };
    assert_eq!(
        sync::expectations(&plan, &there),
        vec![
            ("edited.txt".to_owned(), Some(stamp(3))),
            ("gone.txt".to_owned(), Some(stamp(5))),
            ("new.txt".to_owned(), None),
        ]
    );
}

#[test]
fn a_repository_argument_splits_into_url_branch_and_folder() {
    let parse = |text: &str| Repository::parse(text).unwrap();
    let plain = parse("https://github.com/org/repo.git");
    assert_eq!(plain.url, "https://github.com/org/repo.git");
    assert_eq!((plain.branch, plain.subfolder), (None, None));

    let full = parse("https://github.com/org/mono.git@release/2026#services/api");
    assert_eq!(full.url, "https://github.com/org/mono.git");
    assert_eq!(full.branch.as_deref(), Some("release/2026"));
    assert_eq!(full.subfolder.as_deref(), Some(Path::new("services/api")));
    assert_eq!(full.name(), "api");

    // The user of an scp-like or https URL is not a branch.
    let scp = parse("git@github.com:org/repo.git");
    assert_eq!(
        (scp.url.as_str(), scp.branch),
        ("git@github.com:org/repo.git", None)
    );
    let scp_branch = parse("git@github.com:repo.git@dev");
    assert_eq!(scp_branch.url, "git@github.com:repo.git");
    assert_eq!(scp_branch.branch.as_deref(), Some("dev"));
    let user = parse("https://ada@example.com/org/repo");
    assert_eq!(
        (user.url.as_str(), user.branch),
        ("https://ada@example.com/org/repo", None)
    );
    assert_eq!(parse("file:///srv/git/repo@v1.0#app").name(), "app");

    for (bad, why) in [
        (
            "https://example.com/repo#../../etc",
            "not a folder inside the repository",
        ),
        (
            "https://example.com/repo#/etc",
            "not a folder inside the repository",
        ),
        (
            "https://example.com/repo#",
            "not a folder inside the repository",
        ),
        ("https://example.com/repo@", "nothing follows @"),
        (
            "https://example.com/repo@--upload-pack=x",
            "not a branch or tag name",
        ),
        ("https://example.com/repo@a..b", "not a branch or tag name"),
    ] {
        let error = Repository::parse(bad).unwrap_err().to_string();
        assert!(error.contains(why), "{bad}: {error}");
    }
}
