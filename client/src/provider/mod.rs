//! Providers: where a workspace's agent runs and how the client reaches it. `local` runs the agent on
//! this machine; `aws` makes and finds EC2 instances by their tags. Commands ask a provider for an `AgentClient` and never
//! learn how it was reached.

pub mod aws;
pub mod local;
