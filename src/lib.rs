//! What the skiff client and the skiffd agent share: the wire contract (`proto`) and our own types for it
//! (`api`), the devcontainer.json model and parser (`devcontainer`), mutual TLS by pinning (`tls`), and the SSH
//! keys inside its certificates (`ssh`).

pub mod api;
pub mod devcontainer;
pub mod proto;
pub mod ssh;
pub mod tls;
