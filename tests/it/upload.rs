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
