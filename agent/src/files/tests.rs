//! Unit tests of the files folder's helpers: paths that stay inside, stripes read back in order, the record
//! written by an unpack and read back by the manifest, removals, and configs that point outside.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;

use skiff::api::Compression;
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
        &crate::upload::Expected::new(),
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
        &crate::upload::Expected::new(),
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
        &crate::upload::Expected::new(),
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
        &crate::upload::Expected::new(),
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

/// Attacks the instance through an upload's modes: a setuid root program (04755), a setgid one and a
/// sticky folder would give the dev container a way to root on the files folder; only the permission bits
/// land, and the record says what landed.
#[test]
fn an_upload_keeps_no_setuid_setgid_or_sticky_bit() {
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::tempdir().unwrap();
    let folder = state.path().join("files");
    let record_file = Record::file_in(state.path());
    let archive = tar_gz(|builder| {
        let mut folder_header = tar::Header::new_gnu();
        folder_header.set_entry_type(tar::EntryType::Directory);
        folder_header.set_size(0);
        folder_header.set_mode(0o1777);
        builder
            .append_data(&mut folder_header, "shared", std::io::empty())
            .unwrap();
        let mut setuid = file_header(2, 0o4755, 1_700_000_000);
        builder
            .append_data(&mut setuid, "shared/root-shell", &b"#!"[..])
            .unwrap();
        let mut setgid = file_header(2, 0o2711, 1_700_000_000);
        builder
            .append_data(&mut setgid, "group-tool", &b"#!"[..])
            .unwrap();
    });
    crate::upload::unpack_reader(
        &folder,
        Some(&record_file),
        Compression::Gzip,
        archive.as_slice(),
        &[],
        &crate::upload::Expected::new(),
    )
    .unwrap();
    let mode = |path: &str| {
        std::fs::symlink_metadata(folder.join(path))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("shared/root-shell"), 0o755);
    assert_eq!(mode("group-tool"), 0o711);
    assert_eq!(mode("shared"), 0o777);
    let record = Record::load(&record_file);
    assert_eq!(record.get("shared/root-shell").unwrap().mode, 0o755);
}

/// Attacks the instance through links the dev container plants in the files folder: a folder that is a
/// link out (absolute) and a file name that is a link out; an upload writes neither outside, and a removal
/// through the folder link removes nothing outside.
#[test]
fn links_planted_in_the_folder_never_make_an_upload_write_or_remove_outside() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("files");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("passwd"), "root:x:0:0").unwrap();
    std::os::unix::fs::symlink(&outside, folder.join("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("passwd"), folder.join("victim")).unwrap();
    let archive = tar_gz(|builder| {
        let mut through_folder = file_header(5, 0o644, 1_700_000_000);
        builder
            .append_data(&mut through_folder, "etc/passwd", &b"owned"[..])
            .unwrap();
    });
    let result = crate::upload::unpack_reader(
        &folder,
        None,
        Compression::Gzip,
        archive.as_slice(),
        &[],
        &crate::upload::Expected::new(),
    );
    assert!(result.is_err(), "a write through a link out fails");
    let archive = tar_gz(|builder| {
        let mut at_the_link = file_header(5, 0o644, 1_700_000_000);
        builder
            .append_data(&mut at_the_link, "victim", &b"owned"[..])
            .unwrap();
    });
    crate::upload::unpack_reader(
        &folder,
        None,
        Compression::Gzip,
        archive.as_slice(),
        &["etc/passwd".into()],
        &crate::upload::Expected::new(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.join("passwd")).unwrap(),
        "root:x:0:0",
        "nothing outside was written or removed"
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("victim")).unwrap(),
        "owned",
        "the planted link was replaced, not followed"
    );
    assert!(
        !folder
            .join("victim")
            .symlink_metadata()
            .unwrap()
            .is_symlink()
    );
}

/// Attacks the unpack with a symlink swap race: while uploads write `race/file` again and again, another
/// thread keeps replacing the folder `race` with a link to a folder outside. Nothing may ever land there.
#[test]
fn a_folder_swapped_for_a_link_during_uploads_never_gets_a_write_outside() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("files");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(folder.join("race")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (folder, outside, stop) = (folder.clone(), outside.clone(), stop.clone());
        std::thread::spawn(move || {
            let race = folder.join("race");
            let aside = folder.join("race-aside");
            let link = folder.join("race-link");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = std::os::unix::fs::symlink(&outside, &link);
                let _ = std::fs::rename(&race, &aside);
                let _ = std::fs::rename(&link, &race);
                std::thread::yield_now();
                let _ = std::fs::rename(&race, &link);
                let _ = std::fs::rename(&aside, &race);
            }
        })
    };
    let archive = tar_gz(|builder| {
        let mut header = file_header(5, 0o644, 1_700_000_000);
        builder
            .append_data(&mut header, "race/file", &b"owned"[..])
            .unwrap();
    });
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(2) {
        let _ = crate::upload::unpack_reader(
            &folder,
            None,
            Compression::Gzip,
            archive.as_slice(),
            &["race/file".into()],
            &crate::upload::Expected::new(),
        );
        assert!(
            std::fs::read_dir(&outside).unwrap().next().is_none(),
            "an upload wrote outside the files folder"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
}
