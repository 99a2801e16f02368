//! What the skiff client and the skiffd agent share: the wire contract (`proto`) and our own types for it
//! (`api`), the devcontainer.json model and parser (`devcontainer`), mutual TLS by pinning (`tls`), the SSH keys
//! inside its certificates (`ssh`), and connections that outlive a broken transport (`resume`).

pub mod api;
pub mod devcontainer;
pub mod proto;
pub mod resume;
pub mod ssh;
pub mod tls;
