//! Tests of reading OCI Feature references, of which registries get plain HTTP, and of the layer check.

use super::*;

#[test]
fn references_split_like_the_reference_cli() {
    let node = OciReference::parse("ghcr.io/devcontainers/features/node:1").unwrap();
    assert_eq!(node.registry, "ghcr.io");
    assert_eq!(node.repository, "devcontainers/features/node");
    assert_eq!(node.id, "node");
    assert_eq!(node.tag.as_deref(), Some("1"));
    assert_eq!(node.resource(), "ghcr.io/devcontainers/features/node");

    let latest = OciReference::parse("ghcr.io/devcontainers/features/node").unwrap();
    assert_eq!(latest.tag.as_deref(), Some("latest"));

    // A registry's port is not a tag.
    let local = OciReference::parse("127.0.0.1:5000/skiff-test/features/hello:1").unwrap();
    assert_eq!(local.registry, "127.0.0.1:5000");
    assert_eq!(local.repository, "skiff-test/features/hello");
    assert_eq!(local.tag.as_deref(), Some("1"));
    let untagged = OciReference::parse("localhost:5000/a/b").unwrap();
    assert_eq!(
        (untagged.registry.as_str(), untagged.tag.as_deref()),
        ("localhost:5000", Some("latest"))
    );

    let digest = format!("sha256:{}", "a".repeat(64));
    let pinned = OciReference::parse(&format!("ghcr.io/x/y/z@{digest}")).unwrap();
    assert_eq!(pinned.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(pinned.tag, None);
    assert_eq!(pinned.version(), digest);
    assert_eq!(pinned.to_string(), format!("ghcr.io/x/y/z@{digest}"));
}

#[test]
fn malformed_references_say_what_a_reference_looks_like() {
    for text in ["ghcr.io/node", "ghcr.io//node:1", "a/b/c@sha256:short"] {
        let error = OciReference::parse(text).unwrap_err();
        assert!(error.contains(text), "{error}");
    }
    assert!(
        OciReference::parse("ghcr.io/node")
            .unwrap_err()
            .contains("registry/namespace/id")
    );
}

#[test]
fn only_loopback_registries_get_plain_http() {
    for registry in [
        "127.0.0.1:5000",
        "localhost:5000",
        "localhost",
        "[::1]:5000",
        "127.1.2.3",
    ] {
        assert!(is_loopback(registry), "{registry}");
    }
    for registry in [
        "ghcr.io",
        "10.0.0.5:5000",
        "localhost.example.com",
        "mcr.microsoft.com",
    ] {
        assert!(!is_loopback(registry), "{registry}");
    }
}

#[test]
fn the_feature_layer_is_the_one_devcontainers_layer() {
    let layer = |media_type: &str| OciDescriptor {
        media_type: media_type.to_owned(),
        ..Default::default()
    };
    assert!(feature_layer(&[layer(LAYER_MEDIA_TYPE)]).is_ok());
    let image = feature_layer(&[layer("application/vnd.oci.image.layer.v1.tar+gzip")]).unwrap_err();
    assert!(
        image.contains("application/vnd.oci.image.layer.v1.tar+gzip"),
        "{image}"
    );
    assert!(feature_layer(&[]).unwrap_err().contains("no layer"));
    assert!(
        feature_layer(&[layer(LAYER_MEDIA_TYPE), layer(LAYER_MEDIA_TYPE)])
            .unwrap_err()
            .contains("2 layers")
    );
}
