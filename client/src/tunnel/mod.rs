//! How the client reaches an agent. Today: TLS over a TCP connection (`tcp`), which the local provider
//! uses over loopback. The Session Manager tunnel joins here, and nothing outside this module knows
//! which transport carries the gRPC connection.

pub mod tcp;
