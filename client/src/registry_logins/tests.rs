//! Which registries a configuration pulls from.

use super::*;

#[test]
fn a_reference_names_its_registry_or_docker_hub() {
    assert_eq!(RegistryLogin::registry_of("debian:12"), "docker.io");
    assert_eq!(RegistryLogin::registry_of("library/debian"), "docker.io");
    assert_eq!(RegistryLogin::registry_of("someone/tool:1"), "docker.io");
    assert_eq!(
        RegistryLogin::registry_of("ghcr.io/org/image:tag"),
        "ghcr.io"
    );
    assert_eq!(
        RegistryLogin::registry_of("127.0.0.1:5000/private/image:1"),
        "127.0.0.1:5000"
    );
    assert_eq!(RegistryLogin::registry_of("localhost/image"), "localhost");
    assert_eq!(
        RegistryLogin::registry_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com/app@sha256:00"),
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
    );
}

#[test]
fn a_dockerfiles_bases_leave_out_stages_scratch_and_arguments() {
    let dockerfile = "ARG BASE=debian\n\
        FROM --platform=linux/amd64 registry.example.com/team/base:1 AS build\n\
        RUN make\n\
        from scratch as empty\n\
        FROM build\n\
        FROM ${BASE}:12\n\
        FROM mcr.microsoft.com/devcontainers/base:bookworm\n";
    assert_eq!(
        dockerfile_bases(dockerfile),
        vec![
            "registry.example.com/team/base:1".to_owned(),
            "mcr.microsoft.com/devcontainers/base:bookworm".to_owned()
        ]
    );
}

#[test]
fn a_configuration_pulls_from_its_image_dockerfile_and_features_registries() {
    let folder = tempfile::tempdir().unwrap();
    let config_file = folder.path().join("devcontainer.json");
    std::fs::write(
        folder.path().join("Dockerfile"),
        "FROM quay.io/org/base:1\n",
    )
    .unwrap();
    let (config, _warnings) = skiff::devcontainer::parse(
        &config_file,
        r#"{
            "build": { "dockerfile": "Dockerfile" },
            "features": {
                "ghcr.io/devcontainers/features/node:1": {},
                "./local-feature": {},
                "https://example.com/feature.tgz": {}
            }
        }"#,
    )
    .unwrap();
    assert_eq!(
        registries(&config, &config_file),
        BTreeSet::from(["ghcr.io".to_owned(), "quay.io".to_owned()])
    );
}
