//! A real OCI registry on 127.0.0.1 (Debian's `docker-registry`, the CNCF distribution), started per test, and
//! pushing artifacts to it: Dev Container Features from a registry.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::http::request as http;

/// The registry server binary of Debian's `docker-registry` package.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A registry on 127.0.0.1 with its storage and access log in a temporary folder; stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    /// The `Authorization` header pushes send, for a registry that needs a login.
    authorization: Option<String>,
    log: PathBuf,
    _folder: tempfile::TempDir,
    _process: crate::Reaped,
}

impl Registry {
    /// Starts a registry and waits until it answers; fails the test naming the package if the binary is missing.
    pub fn start() -> Registry {
        Self::start_with(None)
    }

    /// Starts a registry that lets only `user` with `password` in (htpasswd, bcrypt, as `docker login` uses it).
    pub fn start_with_login(user: &str, password: &str) -> Registry {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> Registry {
        assert!(
            Path::new(REGISTRY_BINARY).is_file(),
            "{REGISTRY_BINARY} is missing: these tests need a registry server; install Debian's docker-registry package \
             (`apt-get install docker-registry`; .ci/run does)"
        );
        let folder = tempfile::tempdir().expect("a temporary folder");
        let port = crate::free_port();
        let config = folder.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    \
             rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            folder.path().join("storage").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = folder.path().join("htpasswd");
            let hash = bcrypt::hash(password, 5).expect("hashing the password");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("writing htpasswd");
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).expect("writing the registry's configuration");
        let log = folder.path().join("registry.log");
        let output = std::fs::File::create(&log).expect("creating the registry's log");
        let process = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config)
            .stdout(output.try_clone().expect("a second handle"))
            .stderr(output)
            .spawn()
            .expect("starting docker-registry");
        let authorization = login.map(|(user, password)| {
            use base64::Engine as _;
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )
        });
        let registry = Registry {
            port,
            authorization,
            log,
            _folder: folder,
            _process: crate::Reaped(process),
        };
        crate::wait_until(std::time::Duration::from_secs(20), || {
            // With a login required, the registry answers 401 until one is given.
            http(port, "GET", "/v2/", &[], &[])
                .is_ok_and(|response| response.status == 200 || response.status == 401)
        })
        .unwrap_or_else(|| {
            panic!(
                "the registry did not answer on 127.0.0.1:{port}; its log:\n{}",
                registry.log_text()
            )
        });
        registry
    }

    /// `headers`, with the login's `Authorization` when the registry needs one.
    fn headers<'a>(&'a self, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = headers.to_vec();
        if let Some(authorization) = &self.authorization {
            all.push(("Authorization", authorization.as_str()));
        }
        all
    }

    /// The registry's log so far, with one access-log line per request.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Uploads a blob to `repository`; returns its descriptor's digest.
    pub fn push_blob(&self, repository: &str, data: &[u8]) -> String {
        let digest = format!("sha256:{}", crate::sha256_hex(data));
        let started = http(
            self.port,
            "POST",
            &format!("/v2/{repository}/blobs/uploads/"),
            &self.headers(&[]),
            &[],
        )
        .expect("starting an upload");
        assert_eq!(started.status, 202, "starting an upload: {started:?}");
        let location = started.header("location").expect("an upload location");
        // The location may be absolute; the path and query are what this server needs.
        let path = match location.find("/v2/") {
            Some(start) => &location[start..],
            None => location,
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        let put = http(
            self.port,
            "PUT",
            &format!("{path}{separator}digest={digest}"),
            &self.headers(&[("Content-Type", "application/octet-stream")]),
            data,
        )
        .expect("uploading a blob");
        assert_eq!(put.status, 201, "uploading a blob: {put:?}");
        digest
    }

    /// Pushes an artifact of one layer (of `layer_media_type`) with the devcontainers config media type as
    /// `repository:tag`; returns the layer's digest.
    pub fn push_artifact(
        &self,
        repository: &str,
        tag: &str,
        layer: &[u8],
        layer_media_type: &str,
    ) -> String {
        let config = b"{}";
        let config_digest = self.push_blob(repository, config);
        let layer_digest = self.push_blob(repository, layer);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.devcontainers", "digest": config_digest, "size": config.len()},
            "layers": [{
                "mediaType": layer_media_type,
                "digest": layer_digest,
                "size": layer.len(),
                "annotations": {"org.opencontainers.image.title": format!("devcontainer-feature-{tag}.tgz")}
            }]
        });
        let put = http(
            self.port,
            "PUT",
            &format!("/v2/{repository}/manifests/{tag}"),
            &self.headers(&[("Content-Type", "application/vnd.oci.image.manifest.v1+json")]),
            manifest.to_string().as_bytes(),
        )
        .expect("pushing a manifest");
        assert_eq!(put.status, 201, "pushing a manifest: {put:?}");
        layer_digest
    }
}
