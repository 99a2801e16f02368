//! Features from tarball URLs (`https://…/devcontainer-feature-<id>.tgz`): the file name must be
//! `devcontainer-feature-<id>.tgz` as the reference CLI requires, the download (a tar, gzip-compressed or not) is unpacked
//! into `<cache>/tarball/sha256-<hex>/`, named by the SHA-256 of its content.
//!
//! What each URL last gave is remembered in `<cache>/tarball/urls/<sha256 of the URL>.json` with the server's `ETag` and
//! `Last-Modified`; a later resolution asks again with `If-None-Match` / `If-Modified-Since`, so an unchanged file is not
//! downloaded again (`304 Not Modified`) and a changed one is. A server that gives neither validator is downloaded again
//! each time, and the unpacked folder is still shared when the content is the same.

use std::path::{Path, PathBuf};

use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use sha2::{Digest, Sha256};

use super::{FeatureError, Sources, unpack};

/// What a URL gave last time.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Remembered {
    url: String,
    /// The SHA-256 of the content, hex; it names the unpacked folder.
    sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

/// The Feature id a tarball URL names (`…/devcontainer-feature-hello.tgz` → `hello`).
pub fn id_of(url: &reqwest::Url) -> Option<String> {
    let name = url.path_segments()?.next_back()?;
    let id = name
        .strip_prefix("devcontainer-feature-")?
        .strip_suffix(".tgz")?;
    (!id.is_empty()).then(|| id.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn content_folder(cache: &Path, sha256: &str) -> PathBuf {
    cache.join("tarball").join(format!("sha256-{sha256}"))
}

fn remembered_path(cache: &Path, url: &str) -> PathBuf {
    cache
        .join("tarball")
        .join("urls")
        .join(format!("{}.json", hex(&Sha256::digest(url.as_bytes()))))
}

/// Checks a tarball URL: https, or http to this machine's loopback only; a file named `devcontainer-feature-<id>.tgz`.
pub fn check_url(id: &str, text: &str) -> Result<reqwest::Url, FeatureError> {
    let url = reqwest::Url::parse(text)
        .map_err(|error| FeatureError(format!("Feature {id:?}: {text} is not a URL: {error}")))?;
    let loopback = url.host_str().is_some_and(|host| {
        host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    });
    match url.scheme() {
        "https" => {}
        // Plain HTTP only reaches this machine, where it cannot be tampered with on the way (tests serve Features so).
        "http" if loopback => {}
        _ => {
            return Err(FeatureError(format!(
                "Feature {id:?}: tarball Features are fetched over https only (http only from this machine's loopback); \
                 use an https:// URL"
            )));
        }
    }
    if id_of(&url).is_none() {
        return Err(FeatureError(format!(
            "Feature {id:?}: a tarball Feature's file must be named devcontainer-feature-<id>.tgz, as the reference \
             CLI requires; rename the file or use the Feature from a registry"
        )));
    }
    Ok(url)
}

/// Fetches the tarball Feature at `url` (written `id` by the user) into the cache; returns its folder.
pub async fn fetch(id: &str, url: &str, sources: &Sources<'_>) -> Result<PathBuf, FeatureError> {
    let parsed = check_url(id, url)?;
    let host = parsed.host_str().unwrap_or_default().to_owned();
    let memory_path = remembered_path(sources.cache, url);
    let remembered: Option<Remembered> = std::fs::read(&memory_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .filter(|remembered: &Remembered| {
            remembered.url == url && content_folder(sources.cache, &remembered.sha256).is_dir()
        });

    super::install_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(300))
        .user_agent(concat!("skiffd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| {
            FeatureError(format!(
                "Feature {id:?}: cannot make an HTTP client: {error}"
            ))
        })?;
    let mut request = client.get(parsed);
    if let Some(remembered) = &remembered {
        if let Some(etag) = &remembered.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(last_modified) = &remembered.last_modified {
            request = request.header(IF_MODIFIED_SINCE, last_modified);
        }
    }
    let unreachable = |error: reqwest::Error| {
        FeatureError(format!(
            "Feature {id:?}: cannot download it from {host}: {}; check the network and the URL, or unpack the tarball \
             into .devcontainer/ and use it as a local Feature",
            super::chain(&error)
        ))
    };
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED
        && let Some(remembered) = remembered
    {
        tracing::debug!(
            url,
            sha256 = remembered.sha256,
            "tarball Feature is unchanged"
        );
        return Ok(content_folder(sources.cache, &remembered.sha256));
    }
    if !status.is_success() {
        let fix = if status == StatusCode::NOT_FOUND {
            "; check the URL (the file may have moved or been renamed)"
        } else {
            ""
        };
        return Err(FeatureError(format!(
            "Feature {id:?}: {host} answered {status} for {url}{fix}"
        )));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|value: &reqwest::header::HeaderValue| value.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header(ETAG);
    let last_modified = header(LAST_MODIFIED);
    sources.note(format!("downloading Feature {url}")).await;
    let too_large = |size: u64| {
        FeatureError(format!(
            "Feature {id:?} ({url}): {}",
            sources.limits.too_large_download(size)
        ))
    };
    if let Some(length) = response.content_length()
        && length > sources.limits.download
    {
        return Err(too_large(length));
    }
    // Read in chunks and capped, whatever the server said the length would be.
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
        let size = (body.len() + chunk.len()) as u64;
        if size > sources.limits.download {
            return Err(too_large(size));
        }
        body.extend_from_slice(&chunk);
    }
    let sha256 = hex(&Sha256::digest(&body));
    let folder = content_folder(sources.cache, &sha256);
    unpack::unpack(body, folder.clone(), sources.limits)
        .await
        .map_err(|message| FeatureError(format!("Feature {id:?}: {message}")))?;
    let memory = Remembered {
        url: url.to_owned(),
        sha256,
        etag,
        last_modified,
    };
    // Forgetting is harmless (the next resolution downloads again), so a failure to remember is only logged.
    if let Err(error) = remember(&memory_path, &memory) {
        tracing::warn!(
            url,
            "cannot remember the tarball Feature's validators: {error}"
        );
    }
    Ok(folder)
}

fn remember(path: &Path, memory: &Remembered) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    skiff::atomic::write(path, &serde_json::to_vec_pretty(memory)?, 0o600)
}

#[cfg(test)]
mod tests;
