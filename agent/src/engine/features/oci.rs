//! Features from OCI registries (`ghcr.io/devcontainers/features/node:1`): the reference is read as the reference CLI reads
//! it (the first segment is the registry, the last the Feature's id, `latest` when no tag or digest is given), the manifest
//! is pulled anonymously (oci-client asks the registry for an anonymous token when it wants one), its one layer of media
//! type `application/vnd.devcontainers.layer.v1+tar` is pulled and unpacked into `<cache>/oci/<manifest digest>/`.
//!
//! A digest names content for good, so a cached digest is never fetched again, and a reference by digest needs no network
//! once cached; a tag is looked up on every resolution (one HEAD request: tags move), and its layer is fetched only when
//! the tag points at a digest the cache does not hold.

use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::{FeatureError, Sources, unpack};

/// The media type of a Feature's layer (a tar of the Feature's folder).
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.devcontainers.layer.v1+tar";

/// A Feature's OCI reference, split as the reference CLI splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// `ghcr.io` or `127.0.0.1:5000`.
    pub registry: String,
    /// `devcontainers/features/node`.
    pub repository: String,
    /// `node`: the last segment.
    pub id: String,
    /// The tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// `sha256:…`.
    pub digest: Option<String>,
}

impl OciReference {
    /// Reads `registry/namespace/id[:tag|@digest]`.
    pub fn parse(text: &str) -> Result<OciReference, String> {
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_owned())),
            None => (text, None),
        };
        let last = name.rfind('/').map_or(0, |slash| slash + 1);
        let (path, tag) = match name[last..].split_once(':') {
            Some((segment, tag)) => (&name[..last + segment.len()], Some(tag.to_owned())),
            None => (name, None),
        };
        let segments: Vec<&str> = path.split('/').collect();
        if segments.len() < 3 || segments.iter().any(|segment| segment.is_empty()) {
            return Err(format!(
                "{text:?} is not a Feature reference; OCI Features are named registry/namespace/id[:tag], such as \
                 ghcr.io/devcontainers/features/node:1"
            ));
        }
        if let Some(digest) = &digest
            && !(digest.starts_with("sha256:") && digest.len() == 71)
        {
            return Err(format!(
                "{text:?}: the digest {digest:?} is not a sha256 digest (sha256: and 64 hex digits)"
            ));
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_owned()),
        };
        Ok(OciReference {
            registry: segments[0].to_owned(),
            repository: segments[1..].join("/"),
            id: segments[segments.len() - 1].to_owned(),
            tag,
            digest,
        })
    }

    /// `registry/namespace/id`, without tag or digest.
    pub fn resource(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The tag, else the digest.
    pub fn version(&self) -> String {
        self.tag
            .clone()
            .or_else(|| self.digest.clone())
            .unwrap_or_default()
    }

    fn client_reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(digest), Some(tag)) => Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                digest.clone(),
            ),
            (Some(digest), None) => Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (None, tag) => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".to_owned()),
            ),
        }
    }
}

impl std::fmt::Display for OciReference {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.resource())?;
        if let Some(tag) = &self.tag {
            write!(formatter, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(formatter, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `registry` (`host[:port]`) is this machine's loopback.
///
/// Such a registry is spoken to over plain HTTP, as Docker treats 127.0.0.0/8 as an insecure registry by default: it lets
/// the tests (and a developer) run a registry without a certificate. Every other registry needs HTTPS.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(host, _)| host)
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

fn client_for(registry: &str) -> Client {
    super::install_crypto_provider();
    let protocol = if is_loopback(registry) {
        ClientProtocol::HttpsExcept(vec![registry.to_owned()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        read_timeout: Some(std::time::Duration::from_secs(60)),
        user_agent: concat!("skiffd/", env!("CARGO_PKG_VERSION")),
        ..Default::default()
    })
}

/// The cache folder of a manifest digest.
fn cached(cache: &Path, digest: &str) -> PathBuf {
    cache.join("oci").join(digest.replace(':', "-"))
}

/// Fetches the Feature `reference` (written `id` by the user) into the cache unless it is there; returns its folder.
pub async fn fetch(
    id: &str,
    reference: &OciReference,
    sources: &Sources<'_>,
) -> Result<PathBuf, FeatureError> {
    if let Some(digest) = &reference.digest {
        let folder = cached(sources.cache, digest);
        if folder.is_dir() {
            return Ok(folder);
        }
    }
    let client = client_for(&reference.registry);
    let target = reference.client_reference();
    // The laptop's login to the registry, when it has one; identity tokens are Docker's own scheme, so those
    // registries are asked anonymously.
    let login = sources
        .logins
        .iter()
        .find(|login| login.registry == reference.registry.to_ascii_lowercase());
    let auth = match login {
        Some(login) if !login.identity_token => {
            RegistryAuth::Basic(login.username.clone(), login.secret.clone())
        }
        _ => RegistryAuth::Anonymous,
    };
    let logged_in = matches!(auth, RegistryAuth::Basic(..));
    let failed =
        |error: OciDistributionError| FeatureError(explain(id, reference, &error, logged_in));
    let digest = match &reference.digest {
        Some(digest) => digest.clone(),
        None => client
            .fetch_manifest_digest(&target, &auth)
            .await
            .map_err(failed)?,
    };
    let folder = cached(sources.cache, &digest);
    if folder.is_dir() {
        tracing::debug!(%reference, %digest, "Feature is cached");
        return Ok(folder);
    }
    sources
        .note(format!(
            "pulling Feature {reference} from {}",
            reference.registry
        ))
        .await;
    let pinned = Reference::with_digest(
        reference.registry.clone(),
        reference.repository.clone(),
        digest.clone(),
    );
    let (manifest, manifest_digest) = client
        .pull_image_manifest(&pinned, &auth)
        .await
        .map_err(failed)?;
    if manifest_digest != digest {
        return Err(FeatureError(format!(
            "Feature {id:?}: registry {} sent manifest {manifest_digest} for {digest}; try again, and report it to the \
             registry's owner if it persists",
            reference.registry
        )));
    }
    let layer = feature_layer(&manifest.layers).map_err(|message| {
        FeatureError(format!(
            "Feature {id:?}: {reference} on registry {} is not a Dev Container Feature: {message}; check the name \
             (an image is not a Feature)",
            reference.registry
        ))
    })?;
    let limits = sources.limits;
    let too_large = |size: u64| {
        FeatureError(format!(
            "Feature {id:?} ({reference}): {}",
            limits.too_large_download(size)
        ))
    };
    let declared = u64::try_from(layer.size).unwrap_or(0);
    if declared > limits.download {
        return Err(too_large(declared));
    }
    // The registry may send more than the manifest declared; the writer stops it at the cap either way.
    let mut archive = Capped {
        bytes: Vec::new(),
        limit: limits.download,
    };
    let pulled = client.pull_blob(&pinned, layer, &mut archive).await;
    if archive.bytes.len() as u64 > limits.download {
        return Err(too_large(archive.bytes.len() as u64));
    }
    pulled.map_err(failed)?;
    unpack::unpack(archive.bytes, folder.clone(), limits)
        .await
        .map_err(|message| FeatureError(format!("Feature {id:?} ({reference}): {message}")))?;
    Ok(folder)
}

/// A buffer that refuses bytes beyond `limit` (keeping one byte more, so the caller can tell).
struct Capped {
    bytes: Vec<u8>,
    limit: u64,
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buffer: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if (self.bytes.len() + buffer.len()) as u64 > self.limit {
            let room = usize::try_from(self.limit).unwrap_or(usize::MAX) + 1 - self.bytes.len();
            let keep = room.min(buffer.len());
            self.bytes.extend_from_slice(&buffer[..keep]);
            return std::task::Poll::Ready(Err(std::io::Error::other(
                "the Feature's layer is larger than a Feature may download",
            )));
        }
        self.bytes.extend_from_slice(buffer);
        std::task::Poll::Ready(Ok(buffer.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The Feature's layer of a manifest: the one layer of the devcontainers media type.
fn feature_layer(layers: &[OciDescriptor]) -> Result<&OciDescriptor, String> {
    match layers {
        [layer] if layer.media_type == LAYER_MEDIA_TYPE => Ok(layer),
        [] => Err("its manifest has no layer".to_owned()),
        [layer] => Err(format!(
            "its layer is of media type {}, not {LAYER_MEDIA_TYPE}",
            layer.media_type
        )),
        many => Err(format!(
            "its manifest has {} layers ({}), where a Feature has one of media type {LAYER_MEDIA_TYPE}",
            many.len(),
            many.iter()
                .map(|layer| layer.media_type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A registry failure as the user should read it: the Feature, the registry, what went wrong and what to do.
fn explain(
    id: &str,
    reference: &OciReference,
    error: &OciDistributionError,
    logged_in: bool,
) -> String {
    let registry = &reference.registry;
    let not_found = |what: &str| {
        format!(
            "Feature {id:?}: registry {registry} has no {what} {reference}; check the Feature's name and tag \
             (its documentation lists them)"
        )
    };
    match error {
        OciDistributionError::RequestError(request)
            if request.is_connect() || request.is_timeout() =>
        {
            let scheme = if is_loopback(registry) {
                "http"
            } else {
                "https"
            };
            format!(
                "Feature {id:?}: cannot reach registry {registry} ({scheme}): {}; check the network and the registry's \
                 name, or copy the Feature into .devcontainer/ and use it as a local Feature (\"./{}\")",
                super::chain(request),
                reference.id
            )
        }
        OciDistributionError::ImageManifestNotFoundError(_) => not_found("manifest"),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|error| {
                matches!(
                    error.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) =>
        {
            not_found("tag or repository")
        }
        OciDistributionError::ServerError { code: 404, .. } => not_found("tag or repository"),
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::RegistryError { .. }
            if is_denied(error) && logged_in =>
        {
            format!(
                "Feature {id:?}: registry {registry} refused this machine's Docker login for {reference}; log in again \
                 on this machine with `docker login {registry}`, then run `skiff up` again"
            )
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::RegistryError { .. }
            if is_denied(error) =>
        {
            format!(
                "Feature {id:?}: registry {registry} refuses anonymous access to {reference}; log in on this machine \
                 with `docker login {registry}` (skiff sends that login with `up`), then run `skiff up` again"
            )
        }
        other => {
            format!("Feature {id:?}: pulling {reference} from registry {registry} failed: {other}")
        }
    }
}

fn is_denied(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope.errors.iter().any(|error| {
                matches!(
                    error.code,
                    OciErrorCode::Unauthorized | OciErrorCode::Denied
                )
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
