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

/// Serves `body` once per connection on loopback, with or without a `Content-Length`; returns the URL.
async fn serve_once(body: Vec<u8>, with_length: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let head = if with_length {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            } else {
                "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_owned()
            };
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&body).await;
            let _ = socket.shutdown().await;
        }
    });
    format!("http://{address}/devcontainer-feature-huge.tgz")
}

/// Attacks the agent's memory with a Feature download larger than the cap, announced by its length or not:
/// refused with an error naming the Feature, and nothing is cached.
#[tokio::test]
async fn a_download_beyond_the_cap_is_refused_naming_the_feature() {
    let cache = tempfile::tempdir().unwrap();
    for with_length in [true, false] {
        let url = serve_once(vec![b'x'; 64 * 1024], with_length).await;
        let sources = Sources {
            config_folder: cache.path(),
            workspace: cache.path(),
            cache: cache.path(),
            events: None,
            limits: super::super::Limits {
                download: 1024,
                unpacked: 1024,
            },
            logins: &[],
        };
        let error = fetch("huge", &url, &sources).await.unwrap_err();
        assert!(
            error.0.contains("Feature \"huge\"") && error.0.contains("may download"),
            "{error}"
        );
    }
    assert!(
        std::fs::read_dir(cache.path()).unwrap().all(|entry| !entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("tarball")),
        "nothing cached"
    );
}
