//! Tests of unpacking Feature archives into the cache.

use super::*;

fn archive(files: &[(&str, &str)], gzip: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder
            .append_data(&mut header, name, text.as_bytes())
            .unwrap();
    }
    let tar = builder.into_inner().unwrap();
    if !gzip {
        return tar;
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut encoder, &tar).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn plain_and_gzip_archives_unpack_without_dotfiles() {
    let cache = tempfile::tempdir().unwrap();
    for gzip in [false, true] {
        let target = cache.path().join(format!("feature-{gzip}"));
        let files = [
            ("./devcontainer-feature.json", "{\"id\": \"hello\"}"),
            ("./install.sh", "#!/bin/sh\n"),
            ("./.DS_Store", "junk"),
        ];
        unpack(archive(&files, gzip), target.clone(), Limits::DEFAULT)
            .await
            .unwrap();
        assert!(target.join("devcontainer-feature.json").is_file());
        assert!(target.join("install.sh").is_file());
        assert!(!target.join(".DS_Store").exists());
        // A second unpack of the same content leaves the folder as it is.
        unpack(archive(&files, gzip), target.clone(), Limits::DEFAULT)
            .await
            .unwrap();
    }
    let leftovers: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn an_archive_without_a_feature_is_refused_and_leaves_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let target = cache.path().join("nothing");
    let error = unpack(
        archive(&[("README", "hi")], true),
        target.clone(),
        Limits::DEFAULT,
    )
    .await
    .unwrap_err();
    assert!(error.contains("no devcontainer-feature.json"), "{error}");
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    let error = unpack(
        b"not a tar at all, just text".to_vec(),
        target.clone(),
        Limits::DEFAULT,
    )
    .await
    .unwrap_err();
    assert!(!error.is_empty());
}

/// Attacks the agent's disk with a Feature archive: a gzip bomb (a few KiB that decompress to far more than
/// the cap) and an archive larger than the download cap are refused with the cap in the message, and leave
/// nothing in the cache.
#[tokio::test]
async fn archives_beyond_the_caps_are_refused_and_leave_nothing() {
    let cache = tempfile::tempdir().unwrap();
    let zeros = "\0".repeat(4 * 1024 * 1024);
    let bomb = archive(
        &[
            ("./devcontainer-feature.json", "{\"id\": \"bomb\"}"),
            ("./install.sh", "#!/bin/sh\n"),
            ("./.padding", &zeros),
        ],
        true,
    );
    assert!(bomb.len() < 64 * 1024, "the bomb is small: {}", bomb.len());
    let small = Limits {
        download: 1024 * 1024,
        unpacked: 1024 * 1024,
    };
    let target = cache.path().join("bomb");
    let error = unpack(bomb.clone(), target.clone(), small)
        .await
        .unwrap_err();
    assert!(
        error.contains("more than the 1.0 MiB a Feature may unpack to"),
        "{error}"
    );
    assert!(!target.exists());
    let large = Limits {
        download: 1024,
        unpacked: MAX_UNPACKED,
    };
    let error = unpack(bomb.clone(), target.clone(), large)
        .await
        .unwrap_err();
    assert!(
        error.contains("larger than the 1 KiB a Feature may download"),
        "{error}"
    );
    assert!(!target.exists());
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    // Within the default caps the same archive unpacks.
    unpack(bomb, target.clone(), Limits::DEFAULT).await.unwrap();
    assert!(target.join("install.sh").is_file());
}
