//! Tests of which tarball URLs are accepted and the id their file names give.

use super::*;

#[test]
fn the_id_comes_from_the_file_name() {
    let url = |text: &str| reqwest::Url::parse(text).unwrap();
    assert_eq!(
        id_of(&url(
            "https://example.com/releases/devcontainer-feature-hello.tgz"
        ))
        .as_deref(),
        Some("hello")
    );
    assert_eq!(
        id_of(&url(
            "https://example.com/devcontainer-feature-go-tools.tgz?x=1"
        ))
        .as_deref(),
        Some("go-tools")
    );
    assert_eq!(id_of(&url("https://example.com/hello.tgz")), None);
    assert_eq!(
        id_of(&url("https://example.com/devcontainer-feature-.tgz")),
        None
    );
}

#[test]
fn plain_http_only_from_loopback_and_the_name_is_checked() {
    for good in [
        "https://example.com/devcontainer-feature-a.tgz",
        "http://127.0.0.1:8080/devcontainer-feature-a.tgz",
        "http://localhost/devcontainer-feature-a.tgz",
        "http://[::1]:9/devcontainer-feature-a.tgz",
    ] {
        assert!(check_url(good, good).is_ok(), "{good}");
    }
    let error = check_url("x", "http://example.com/devcontainer-feature-a.tgz").unwrap_err();
    assert!(error.0.contains("https"), "{error}");
    let error = check_url("x", "https://example.com/feature.tgz").unwrap_err();
    assert!(error.0.contains("devcontainer-feature-<id>.tgz"), "{error}");
}
