//! Tests of the pure parts of the Docker adapter.

use super::split_image_reference;

#[test]
fn image_references_split_like_docker() {
    assert_eq!(split_image_reference("debian"), ("debian", "latest"));
    assert_eq!(split_image_reference("debian:12"), ("debian", "12"));
    assert_eq!(
        split_image_reference("localhost:5000/team/app"),
        ("localhost:5000/team/app", "latest")
    );
    assert_eq!(
        split_image_reference("localhost:5000/team/app:v2"),
        ("localhost:5000/team/app", "v2")
    );
    assert_eq!(
        split_image_reference("mcr.microsoft.com/devcontainers/base:bookworm"),
        ("mcr.microsoft.com/devcontainers/base", "bookworm")
    );
    assert_eq!(
        split_image_reference("app@sha256:abc"),
        ("app", "sha256:abc")
    );
}
