//! Tests of the engine's pure parts: mounts, image tags, environment.

use std::path::Path;

use super::images::image_tag;
use super::mounts::relocate;
use super::*;

#[test]
fn mount_syntax_like_docker() {
    assert_eq!(
        parse_mount("type=bind,source=/a,target=/b,readonly").unwrap(),
        Mount::Bind {
            source: "/a".into(),
            target: "/b".into(),
            read_only: true
        }
    );
    assert_eq!(
        parse_mount("type=volume,src=cache,dst=/cache").unwrap(),
        Mount::Volume {
            source: Some("cache".into()),
            target: "/cache".into()
        }
    );
    assert_eq!(
        parse_mount("type=volume,target=/anonymous").unwrap(),
        Mount::Volume {
            source: None,
            target: "/anonymous".into()
        }
    );
    let error = parse_mount("type=tmpfs,target=/t").unwrap_err();
    assert!(
        error.contains("mount type \"tmpfs\" is not supported"),
        "{error}"
    );
    let error = parse_mount("type=bind,target=/t").unwrap_err();
    assert!(error.contains("needs source="), "{error}");
}

#[test]
fn image_tag_is_the_reference_cli_form() {
    let tag = image_tag(Path::new("/home/me/My App"));
    assert!(tag.starts_with("vsc-my-app-"), "{tag}");
    assert_eq!(tag.len(), "vsc-my-app-".len() + 64);
}

#[test]
fn remote_env_resolves_container_env_and_unsets_null() {
    let remote = BTreeMap::from([
        (
            "PATH".to_owned(),
            Some("${containerEnv:PATH}:/extra".to_owned()),
        ),
        ("GONE".to_owned(), None),
        (
            "DEFAULTED".to_owned(),
            Some("${containerEnv:MISSING:fallback}".to_owned()),
        ),
    ]);
    let env = remote_env(&remote, &["PATH=/usr/bin".to_owned()]);
    assert_eq!(
        env,
        vec!["DEFAULTED=fallback", "GONE=", "PATH=/usr/bin:/extra"]
    );
}

#[test]
fn relocate_moves_only_paths_inside() {
    assert_eq!(
        relocate(
            Path::new("/laptop/app/.devcontainer/devcontainer.json"),
            Path::new("/laptop/app"),
            Path::new("/srv/files")
        ),
        Path::new("/srv/files/.devcontainer/devcontainer.json")
    );
    assert_eq!(
        relocate(
            Path::new("/elsewhere"),
            Path::new("/laptop/app"),
            Path::new("/srv")
        ),
        Path::new("/elsewhere")
    );
}

/// The build error seen when a concurrent removal took a cached step's image (a full test run once failed on it) is
/// told from other build failures, so the build runs again.
#[test]
fn a_build_whose_cached_step_vanished_is_told_apart() {
    assert!(super::images::lost_cache_parent(
        "Docker stream error: failed to get digest sha256:8e4c7ed487c9126c8e68b9bda626c2f316935f1567e6cb20e33027bc04786cef: open /var/lib/docker/image/fuse-overlayfs/imagedb/content/sha256/8e4c7ed487c9126c8e68b9bda626c2f316935f1567e6cb20e33027bc04786cef: no such file or directory"
    ));
    assert!(!super::images::lost_cache_parent(
        "The command '/bin/sh -c make' returned a non-zero code: 2"
    ));
}
