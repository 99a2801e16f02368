//! Providers: where a workspace's agent runs and how the client reaches it. `local` runs the agent on
//! this machine; the AWS provider joins here. Commands ask a provider for an `AgentClient` and never
//! learn how it was reached.

pub mod local;
