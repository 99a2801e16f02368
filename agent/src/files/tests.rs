//! Unit tests of the files folder's helpers: paths that stay inside, stripes read back in order, the record
//! written by an unpack and read back by the manifest, removals, and configs that point outside.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;

use crate::upload::Compression;
use skiff::api::FileKind;

use super::parts::StripedReader;
use super::record::Record;
use super::*;

#[test]
fn relative_paths_stay_inside() {
    assert_eq!(relative_path("a/b.txt"), Some(PathBuf::from("a/b.txt")));
    assert_eq!(relative_path("./a//b"), Some(PathBuf::from("a/b")));
    for outside in ["", ".", "/etc/passwd", "../x", "a/../../x", "a/..", "a\0b"] {
        assert_eq!(relative_path(outside), None, "{outside:?}");
    }
    assert_eq!(relative_key(Path::new("./a/b")).as_deref(), Some("a/b"));
}

#[test]
fn stripes_are_read_back_in_order() {
    let folder = tempfile::tempdir().unwrap();
    let archive: Vec<u8> = (0..10_000u32).map(|index| (index % 251) as u8).collect();
    for (parts, stripe) in [
        (1usize, 1000usize),
        (3, 1000),
        (4, 7),
        (4, 2500),
        (3, 10_000),
        (5, 64),
    ] {
        let files: Vec<PathBuf> = (0..parts)
            .map(|part| folder.path().join(format!("{parts}-{stripe}-{part}")))
            .collect();
        let mut writers: Vec<std::fs::File> = files
            .iter()
            .map(|file| std::fs::File::create(file).unwrap())
            .collect();
        for (index, chunk) in archive.chunks(stripe).enumerate() {
            writers[index % parts].write_all(chunk).unwrap();
        }
        drop(writers);
        let mut reader = StripedReader::open(&files, stripe as u64).unwrap();
        let mut back = Vec::new();
        reader.read_to_end(&mut back).unwrap();
        assert_eq!(back, archive, "{parts} parts of {stripe}-byte stripes");
    }
}

fn tar_gz(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder);
    let tar = builder.into_inner().unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&tar).unwrap();
    encoder.finish().unwrap()
}

fn file_header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header
}

#[test]
fn an_unpack_records_what_it_wrote_and_the_manifest_reports_it() {
    let state = tempfile::tempdir().unwrap();
    let folder = state.path().join("files");
    let record_file = Record::file_in(state.path());
    let archive = tar_gz(|builder| {
        let mut header = file_header(5, 0o640, 1_700_000_000);
        builder
            .append_data(&mut header, "a/hello.txt", &b"hello"[..])
            .unwrap();
        let mut link = tar::Header::new_gnu();
        link.set_entry_type(tar::EntryType::Symlink);
        link.set_size(0);
        builder
            .append_link(&mut link, "a/link", "hello.txt")
            .unwrap();
    });
    let unpacked = crate::upload::unpack_reader(
        &folder,
        Some(&record_file),
        Compression::Gzip,
        archive.as_slice(),
        &[],
    )
    .unwrap();
    assert_eq!((unpacked.files, unpacked.bytes), (1, 5));

    std::fs::write(folder.join("made-here.txt"), "x").unwrap();
    let mut entries = Vec::new();
    manifest::list(&folder, &record_file, &HashSet::new(), |batch| {
        entries.extend(batch);
        true
    })
    .unwrap();
    entries.sort_by(|left, right| left.path.cmp(&right.path));
    let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(paths, ["a", "a/hello.txt", "a/link", "made-here.txt"]);
    let hello = &entries[1];
    assert_eq!(hello.current, hello.uploaded, "unchanged since the upload");
    assert_eq!(hello.current.as_ref().unwrap().mode, 0o640);
    assert_eq!(hello.current.as_ref().unwrap().mtime, 1_700_000_000);
    assert_eq!(entries[2].current, entries[2].uploaded);
    assert_eq!(entries[2].current.as_ref().unwrap().kind, FileKind::Symlink);
    assert!(entries[3].uploaded.is_none(), "made on this machine");

    // Asked about one path, the manifest lists it alone, with its hash.
    let mut hashed = Vec::new();
    let only: HashSet<String> = ["a/hello.txt".to_owned()].into();
    manifest::list(&folder, &record_file, &only, |batch| {
        hashed.extend(batch);
        true
    })
    .unwrap();
    assert_eq!(hashed.len(), 1);
    assert_eq!(
        hashed[0].sha256,
        Some(manifest::hash(&folder.join("a/hello.txt")).unwrap())
    );

    // Removing: the file and its now-empty folder; a link is removed, never followed; nothing outside.
    let empty = tar_gz(|_| {});
    let unpacked = crate::upload::unpack_reader(
        &folder,
        Some(&record_file),
        Compression::Gzip,
        empty.as_slice(),
        &["a/hello.txt".into(), "a/link".into(), "a".into()],
    )
    .unwrap();
    assert_eq!(unpacked.removed, 3);
    assert!(!folder.join("a").exists());
    assert!(Record::load(&record_file).get("a/hello.txt").is_none());
    let refused = crate::upload::unpack_reader(
        &folder,
        Some(&record_file),
        Compression::Gzip,
        empty.as_slice(),
        &["../outside".into()],
    );
    assert!(refused.is_err());
}

#[test]
fn removals_never_pass_through_a_link() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("files");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("precious"), "keep").unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("escape")).unwrap();
    let empty = tar_gz(|_| {});
    let unpacked = crate::upload::unpack_reader(
        &folder,
        None,
        Compression::Gzip,
        empty.as_slice(),
        &["escape/precious".into()],
    )
    .unwrap();
    assert_eq!(unpacked.removed, 0);
    assert!(outside.join("precious").exists());
}

#[test]
fn a_config_that_points_outside_is_not_read() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("files");
    std::fs::create_dir_all(folder.join(".devcontainer")).unwrap();
    std::fs::write(root.path().join("secret.json"), "{\"image\": \"secret\"}").unwrap();
    std::os::unix::fs::symlink(
        root.path().join("secret.json"),
        folder.join(".devcontainer/devcontainer.json"),
    )
    .unwrap();
    let error = config::read(&folder, None).unwrap_err();
    assert!(
        error.to_string().contains("outside the files folder"),
        "{error}"
    );

    std::fs::remove_file(folder.join(".devcontainer/devcontainer.json")).unwrap();
    std::fs::write(folder.join(".devcontainer.json"), "{ \"image\": \"x\" }").unwrap();
    let found = config::read(&folder, None).unwrap();
    assert_eq!(found.config_path, ".devcontainer.json");
    assert!(config::read(&folder, Some("../secret.json")).is_err());
}

#[test]
fn porcelain_paths_skip_rename_sources() {
    let status = b" M src/lib.rs\0R  new.rs\0old.rs\0?? notes.md\0";
    assert_eq!(
        crate::git::porcelain_paths(status),
        ["src/lib.rs", "new.rs", "notes.md"]
    );
}
