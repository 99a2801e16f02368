//! The devcontainer.json model and parser, shared by the client (which loads and substitutes the config) and the agent (which
//! receives it as JSON and runs it).
//!
//! `load` finds and parses a workspace's config; `substitute_local`, `substitute_devcontainer_id` and `substitute_container_env` are
//! the three variable passes; `id_labels` and `devcontainer_id` identify a workspace's container.
//! `parse_feature` reads a Feature's `devcontainer-feature.json`, and `FeatureReference` classifies a `features` key.
//! Nothing here talks to Docker or merges image metadata; this module only reads and describes the files.
//! The behaviour follows the notes in the shared `devcontainer/NOTES.md` (the spec and the reference CLI, `devcontainers/cli`).

mod error;
mod feature;
mod id;
mod load;
mod model;
mod parse;
mod schema;
mod substitute;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, KindError};
pub use feature::{
    FeatureManifest, FeatureOption, FeatureReference, parse_feature, parse_jsonc_value,
};
pub use id::{LABEL_CONFIG_FILE, LABEL_LOCAL_FOLDER, LABEL_METADATA, devcontainer_id, id_labels};
pub use load::{LoadedConfig, find_config, load};
pub use model::{
    AppPort, Build, ConfigKind, DevContainer, FeatureValue, ForwardPort, GpuDetails,
    GpuRequirement, HostRequirements, LifecycleCommand, Mount, MountObject, MountType,
    OnAutoForward, PortAttributes, PortProtocol, PortSpec, SecretDescription, ShutdownAction,
    SimpleCommand, StringOrList, UserEnvProbe, WaitFor,
};
pub use parse::parse;
pub use substitute::{
    LocalContext, local_env_names, substitute_container_env, substitute_devcontainer_id,
    substitute_local,
};
