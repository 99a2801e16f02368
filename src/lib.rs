//! What the skiff client and the skiffd agent share: the wire contract (`proto`) and our own types for it
//! (`api`), the devcontainer.json model and parser (`devcontainer`), mutual TLS by pinning (`tls`), the SSH keys
//! inside its certificates (`ssh`), connections that outlive a broken transport (`resume`), files replaced in
//! one step (`atomic`), locks one process holds at a time (`lock`), and which names git takes as branches
//! (`git_ref`).

pub mod api;
pub mod atomic;
pub mod calendar;
pub mod devcontainer;
pub mod git_ref;
pub mod lock;
pub mod proto;
pub mod resume;
pub mod ssh;
pub mod tls;
