//! The SFTP server against russh-sftp's own client over an in-memory pipe: files written and read back,
//! listings, attributes, renames, links, and errors that name the path.

use russh_sftp::client::SftpSession;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn session() -> SftpSession {
    let (client, server) = tokio::io::duplex(1024 * 1024);
    tokio::spawn(serve(server));
    SftpSession::new(client).await.expect("the SFTP handshake")
}

#[test]
fn normalize_cleans_dots_and_makes_paths_absolute() {
    let base = Path::new("/workspaces/app");
    assert_eq!(normalize(base, ""), PathBuf::from("/workspaces/app"));
    assert_eq!(normalize(base, "."), PathBuf::from("/workspaces/app"));
    assert_eq!(
        normalize(base, "src/../README"),
        PathBuf::from("/workspaces/app/README")
    );
    assert_eq!(normalize(base, "/etc/./hosts"), PathBuf::from("/etc/hosts"));
    assert_eq!(normalize(base, "../../../.."), PathBuf::from("/"));
}

#[tokio::test]
async fn a_file_written_is_read_back_whole() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder
        .path()
        .join("data.bin")
        .to_string_lossy()
        .into_owned();
    let sftp = session().await;
    let contents: Vec<u8> = (0..700_000u32)
        .map(|index| (index * 7 % 251) as u8)
        .collect();
    let mut file = sftp.create(&path).await.unwrap();
    file.write_all(&contents).await.unwrap();
    file.shutdown().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), contents);
    let mut back = Vec::new();
    sftp.open(&path)
        .await
        .unwrap()
        .read_to_end(&mut back)
        .await
        .unwrap();
    assert_eq!(back, contents);
}

#[tokio::test]
async fn listings_attributes_renames_and_links_follow_the_disk() {
    let folder = tempfile::tempdir().unwrap();
    let base = folder.path().to_string_lossy().into_owned();
    let sftp = session().await;
    sftp.create_dir(format!("{base}/sub")).await.unwrap();
    std::fs::write(folder.path().join("sub/a.txt"), b"hello").unwrap();
    let mut names: Vec<String> = sftp
        .read_dir(format!("{base}/sub"))
        .await
        .unwrap()
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["a.txt"]);
    let metadata = sftp.metadata(format!("{base}/sub/a.txt")).await.unwrap();
    assert_eq!(metadata.size, Some(5));
    sftp.rename(format!("{base}/sub/a.txt"), format!("{base}/sub/b.txt"))
        .await
        .unwrap();
    assert!(folder.path().join("sub/b.txt").is_file());
    sftp.symlink(format!("{base}/sub/b.txt"), format!("{base}/link"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_link(folder.path().join("link")).unwrap(),
        folder.path().join("sub/b.txt"),
        "OpenSSH's argument order: target first, then the link"
    );
    sftp.remove_file(format!("{base}/sub/b.txt")).await.unwrap();
    sftp.remove_dir(format!("{base}/sub")).await.unwrap();
    assert!(!folder.path().join("sub").exists());
}

#[tokio::test]
async fn a_missing_file_is_no_such_file_and_names_the_path() {
    let sftp = session().await;
    let Err(error) = sftp.open("/no/such/file").await else {
        panic!("a missing file opened");
    };
    let text = error.to_string();
    assert!(text.contains("/no/such/file"), "{text}");
}

#[tokio::test]
async fn realpath_is_absolute() {
    let sftp = session().await;
    let path = sftp.canonicalize(".").await.unwrap();
    assert!(path.starts_with('/'), "{path}");
    assert_eq!(
        PathBuf::from(&path),
        std::env::current_dir().unwrap().canonicalize().unwrap()
    );
}
