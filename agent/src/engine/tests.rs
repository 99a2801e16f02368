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
