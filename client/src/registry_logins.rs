//! The laptop's logins to the registries a configuration pulls from: its `image`, its Dockerfile's `FROM` images and
//! its Features. Each registry's login comes from this machine's Docker configuration (`$DOCKER_CONFIG/config.json`
//! or `~/.docker/config.json`, with its `credsStore` and `credHelpers`), read by the `docker_credential` crate, and
//! goes to the agent with this `up` only; the agent uses it for its pulls and stores it nowhere. A registry this
//! machine has no login for is pulled from anonymously, as Docker would.

use std::collections::BTreeSet;
use std::path::Path;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use skiff::api::RegistryLogin;
use skiff::devcontainer::DevContainer;

/// Docker Hub's name in image references.
const DOCKER_HUB: &str = "docker.io";

/// The images a Dockerfile's `FROM` lines name, other than `scratch`, earlier stages and references built from
/// build arguments.
pub fn dockerfile_bases(dockerfile: &str) -> Vec<String> {
    let mut stages = BTreeSet::new();
    let mut bases = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let mut words = words.skip_while(|word| word.starts_with("--"));
        let Some(image) = words.next() else { continue };
        if words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("AS"))
            && let Some(stage) = words.next()
        {
            stages.insert(stage.to_ascii_lowercase());
        }
        let known_stage = stages.contains(&image.to_ascii_lowercase()) && !image.contains('/');
        if image == "scratch" || image.contains('$') || known_stage {
            continue;
        }
        bases.push(image.to_owned());
    }
    bases
}

/// The registries `config` pulls from; `config_file` is where it was read, for its Dockerfile.
pub fn registries(config: &DevContainer, config_file: &Path) -> BTreeSet<String> {
    let mut registries = BTreeSet::new();
    if let Some(image) = &config.image {
        registries.insert(RegistryLogin::registry_of(image));
    }
    if let Some(dockerfile) = config
        .dockerfile_path(config_file)
        .and_then(|path| std::fs::read_to_string(path).ok())
    {
        registries.extend(
            dockerfile_bases(&dockerfile)
                .iter()
                .map(|image| RegistryLogin::registry_of(image)),
        );
    }
    for feature in config.features.iter().flatten().map(|(id, _)| id) {
        // Local (`./…`) and tarball (`https://…`) Features are not in a registry; an OCI Feature's id begins with one.
        if !feature.starts_with('.') && !feature.contains("://") && feature.contains('/') {
            let registry = RegistryLogin::registry_of(feature);
            if registry != DOCKER_HUB {
                registries.insert(registry);
            }
        }
    }
    registries
}

/// Where the Docker CLI keeps its configuration, as `docker_credential` finds it: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
fn docker_config_file() -> Option<std::path::PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker")))
        .map(|folder| folder.join("config.json"))
}

/// This machine's logins to `config`'s registries, and warnings for logins that could not be read (a credential
/// helper that failed). Registries without a login are left out.
pub fn for_config(config: &DevContainer, config_file: &Path) -> (Vec<RegistryLogin>, Vec<String>) {
    let mut logins = Vec::new();
    let mut warnings = Vec::new();
    // The crate reports a missing config.json as unreadable; a machine that never ran `docker login` has no logins,
    // which is not worth a warning.
    if !docker_config_file().is_some_and(|file| file.is_file()) {
        return (logins, warnings);
    }
    for registry in registries(config, config_file) {
        match docker_credential::get_credential(RegistryLogin::server_address(&registry)) {
            Ok(DockerCredential::UsernamePassword(username, password)) => logins.push(RegistryLogin {
                registry,
                username,
                secret: password,
                identity_token: false,
            }),
            Ok(DockerCredential::IdentityToken(token)) => logins.push(RegistryLogin {
                registry,
                username: String::new(),
                secret: token,
                identity_token: true,
            }),
            Err(
                CredentialRetrievalError::NoCredentialConfigured
                | CredentialRetrievalError::ConfigNotFound,
            ) => {}
            Err(error) => warnings.push(format!(
                "reading this machine's Docker login for {registry}: {error}; pulling from it without one"
            )),
        }
    }
    (logins, warnings)
}

#[cfg(test)]
mod tests;
