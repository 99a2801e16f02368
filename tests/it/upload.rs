//! `Upload`: a gzip-compressed tar stream lands in the agent's files folder, and nothing lands outside it (not
//! through `..`, nor through a link planted in the folder); setuid and setgid bits never land.

use skiff_tests::agent::InProcessAgent;

fn gzip_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<(&str, &[u8], u32)> = entries
        .iter()
        .map(|(path, contents)| (*path, *contents, 0o644))
        .collect();
    gzip_tar_with_modes(&entries)
}

fn gzip_tar_with_modes(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (path, contents, mode) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(*mode);
        // `set_path` refuses `..`; write the raw name so the agent sees what a hostile archive would hold.
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, *contents).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[tokio::test]
async fn files_arrive_and_paths_outside_are_refused() {
    let agent = InProcessAgent::start("upload").await;
    let mut client = agent.connect().await;

    let big = vec![7u8; 3 * 1024 * 1024];
    let archive = gzip_tar(&[("src/main.rs", b"fn main() {}\n"), ("data/big.bin", &big)]);
    let chunks: Vec<Vec<u8>> = archive.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let (folder, files, bytes) = client
        .upload(archive.len() as u64, futures::stream::iter(chunks))
        .await
        .expect("upload");
    assert_eq!(files, 2);
    assert_eq!(bytes, 13 + big.len() as u64);
    let folder = std::path::PathBuf::from(folder);
    assert_eq!(
        std::fs::read(folder.join("src/main.rs")).unwrap(),
        b"fn main() {}\n"
    );
    assert_eq!(std::fs::read(folder.join("data/big.bin")).unwrap(), big);

    let hostile = gzip_tar(&[("../escaped.txt", b"nope")]);
    let result = client
        .upload(hostile.len() as u64, futures::stream::iter(vec![hostile]))
        .await;
    assert!(
        !folder.parent().unwrap().join("escaped.txt").exists(),
        "nothing lands outside the folder"
    );
    assert!(result.is_err() || result.is_ok_and(|(_, files, _)| files == 0));

    // Attacks the instance through modes: a setuid root program would let the dev container, which
    // mounts the folder, become root there; it lands with its permission bits only.
    let setuid = gzip_tar_with_modes(&[("bin/root-shell", b"#!/bin/sh\n", 0o4755)]);
    client
        .upload(setuid.len() as u64, futures::stream::iter(vec![setuid]))
        .await
        .expect("upload");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(folder.join("bin/root-shell"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(
        mode & 0o7777,
        0o755,
        "an upload with mode 04755 lands as 0755"
    );

    // Attacks the instance through a link the dev container plants in the folder, pointing outside it.
    let outside = agent.state.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("planted")).unwrap();
    let through = gzip_tar(&[("planted/written.txt", b"nope")]);
    let _ = client
        .upload(through.len() as u64, futures::stream::iter(vec![through]))
        .await;
    assert!(
        !outside.join("written.txt").exists(),
        "an upload through a planted link writes nothing outside the folder"
    );

    drop(client);
    agent.stop().await;
}

/// A small file system of its own (tmpfs), unmounted when dropped: a disk that fills up.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(folder: &std::path::Path, size: &str) -> Self {
        std::fs::create_dir_all(folder).unwrap();
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(folder)
            .output()
            .expect("running mount");
        assert!(
            output.status.success(),
            "this test mounts a {size} tmpfs as a disk that fills up, which needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self(folder.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&self.0)
            .status();
    }
}

fn leftovers(folder: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type().unwrap().is_dir() {
            found.extend(leftovers(&entry.path()));
        } else if name.contains("skiff-upload") {
            found.push(name);
        }
    }
    found
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_that_names_it_and_leaves_no_partial_file() {
    let holder = tempfile::tempdir().unwrap();
    let disk = holder.path().join("disk");
    let _small = SmallDisk::mount(&disk, "2m");
    let state_dir = disk.join("agent");
    let identity = skiff::tls::Identity::generate("skiff-client").unwrap();
    let agent = InProcessAgent::start_with("disk-full", &identity, |config| {
        config.state_dir = state_dir.clone();
    })
    .await;
    let mut client = agent.connect().await;

    let kept = gzip_tar(&[("src/kept.rs", b"fn kept() {}\n")]);
    let (folder, _, _) = client
        .upload(kept.len() as u64, futures::stream::iter(vec![kept]))
        .await
        .expect("a small upload fits");
    let folder = std::path::PathBuf::from(folder);

    let mut state = 7u64;
    let big = skiff_tests::noise(&mut state, 4 * 1024 * 1024);
    let archive = gzip_tar(&[("data/big.bin", &big)]);
    let chunks: Vec<Vec<u8>> = archive.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
    let error = client
        .upload(archive.len() as u64, futures::stream::iter(chunks))
        .await
        .expect_err("4 MiB do not fit on a 2 MiB disk")
        .to_string();
    assert!(
        error.contains("is full") && error.contains(&folder.display().to_string()),
        "the error names the full disk: {error}"
    );
    assert!(
        error.contains("free space there"),
        "and says what to do: {error}"
    );
    assert_eq!(
        std::fs::read(folder.join("src/kept.rs")).unwrap(),
        b"fn kept() {}\n",
        "what was there stays"
    );
    assert!(!folder.join("data/big.bin").exists());
    assert_eq!(leftovers(&folder), Vec::<String>::new(), "no partial file");

    drop(client);
    agent.stop().await;
}

/// An upload cut short (the agent killed, the machine rebooted) never leaves a half-written file under its final
/// name, only its temporary file; the next agent removes those, and nothing else, without following links.
#[tokio::test]
async fn an_upload_cut_short_leaves_nothing_once_the_agent_starts_again() {
    let holder = tempfile::tempdir().unwrap();
    let state_dir = holder.path().join("agent");
    let files = state_dir.join("files");
    std::fs::create_dir_all(files.join("src")).unwrap();
    std::fs::write(files.join("src/kept.rs"), b"fn kept() {}\n").unwrap();
    // What a writer with process id 1 (not this one) left while writing src/kept.rs again.
    let stale = files.join("src/.kept.rs.skiff-upload-1-0-0");
    std::fs::write(&stale, b"fn ke").unwrap();
    std::fs::write(files.join(".notes.txt"), b"the user's own dotfile\n").unwrap();
    let outside = holder.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let outside_temporary = outside.join(".x.skiff-upload-1-0-0");
    std::fs::write(&outside_temporary, b"not the agent's").unwrap();
    std::os::unix::fs::symlink(&outside, files.join("planted")).unwrap();

    let identity = skiff::tls::Identity::generate("skiff-client").unwrap();
    let agent = InProcessAgent::start_with("cut-short", &identity, |config| {
        config.state_dir = state_dir.clone();
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while stale.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!stale.exists(), "the temporary file was removed");
    assert_eq!(
        std::fs::read(files.join("src/kept.rs")).unwrap(),
        b"fn kept() {}\n"
    );
    assert!(files.join(".notes.txt").exists(), "other dotfiles stay");
    assert!(
        outside_temporary.exists(),
        "nothing is removed through a link"
    );

    // The next upload of the same file finishes.
    let mut client = agent.connect().await;
    let again = gzip_tar(&[("src/kept.rs", b"fn kept() { again() }\n")]);
    client
        .upload(again.len() as u64, futures::stream::iter(vec![again]))
        .await
        .expect("the next upload");
    assert_eq!(
        std::fs::read(files.join("src/kept.rs")).unwrap(),
        b"fn kept() { again() }\n"
    );
    drop(client);
    agent.stop().await;
}
