//! Unit tests of the SSM test gateway: the codecs against `ssm/PROTOCOL.md`'s byte vectors (written out here
//! as literal hex) and fuzzed with proptest; the reliability layer's rules; the control plane through
//! aws-sdk-ssm; the agent's behaviour through a raw data-channel client built on the gateway's own codec; and
//! the whole gateway against skiff's own data channel client, moving 4 MiB through an echo server.

mod client;
mod codec;
mod gateway;
mod port;
mod support;
