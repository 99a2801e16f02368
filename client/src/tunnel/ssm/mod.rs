//! The native Session Manager tunnel: `ssm:StartSession` with `AWS-StartPortForwardingSession` to the agent's
//! port on the instance, our own data channel client (`channel`) for the session, and our multiplexer (`mux`)
//! on top, so each gRPC connection is one smux stream of the session and no local TCP port is opened.
//!
//! `channel` carries the session: when the WebSocket breaks (an error, a cut TCP connection, silence, or a
//! close frame without `channel_closed`) it calls `ssm:ResumeSession`, dials again, keeps the sequence numbers
//! and sends every unacknowledged message again at once, so the byte stream goes on where it stopped and
//! in-flight RPCs survive. If the session cannot be resumed, it starts a new one; `mux` then fails the streams
//! of the old one with an error (their bytes are gone) and new streams work. `TerminateSession` is called when
//! the tunnel is closed.
//!
//! Endpoints: the SDK's `AWS_ENDPOINT_URL_SSM` (or `AWS_ENDPOINT_URL`) for the API, and the stream URL the
//! service returns for the WebSocket, which must be an AWS `wss://ssmmessages…` address unless
//! `SKIFF_SSM_ALLOW_ANY_ENDPOINT=1` allows any `ws://`/`wss://` one (for tests against a local gateway).

mod channel;
pub mod mux;

use std::sync::Arc;

use aws_sdk_ssm::error::ProvideErrorMetadata as _;
use bytes::Bytes;

use channel::{Channel, OpenError};
pub use mux::MuxStream;
use mux::{Mux, Sender};

/// The variable that lets the data channel go to a non-AWS endpoint (tests against a local gateway).
pub const ALLOW_ANY_ENDPOINT: &str = "SKIFF_SSM_ALLOW_ANY_ENDPOINT";

/// Where a tunnel goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The instance id.
    pub instance_id: String,
    /// The port on the instance's loopback.
    pub port: u16,
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "instance {instance_id} is not connected to Session Manager ({detail}); it may still be booting: wait a minute and retry, or see `skiff logs NAME --boot`"
    )]
    NotConnected { instance_id: String, detail: String },
    #[error(
        "Session Manager refused a session to {instance_id}: {detail}; your IAM identity needs ssm:StartSession on the instance and on the document AWS-StartPortForwardingSession (`skiff aws-policy` prints a policy)"
    )]
    AccessDenied { instance_id: String, detail: String },
    #[error("opening a Session Manager session to port {port} of {instance_id}: {detail}")]
    Other {
        instance_id: String,
        port: u16,
        detail: String,
    },
}

/// Whether `SKIFF_SSM_ALLOW_ANY_ENDPOINT=1` lets the data channel go to a non-AWS endpoint.
pub fn any_endpoint_allowed() -> bool {
    std::env::var(ALLOW_ANY_ENDPOINT).is_ok_and(|value| value == "1")
}

/// One Session Manager session to the agent's port, multiplexed.
#[derive(Debug, Clone)]
pub struct Tunnel {
    channel: Channel,
    mux: Mux,
    session_id: String,
}

impl Tunnel {
    /// Starts a session to `target` and waits until its handshake is done. `allow_any_endpoint` accepts a
    /// data channel that is not AWS's (`ws://` included): only for tests against a local gateway.
    pub async fn open(
        sdk: &aws_config::SdkConfig,
        target: &Target,
        allow_any_endpoint: bool,
    ) -> Result<Self, TunnelError> {
        let ssm = aws_sdk_ssm::Client::new(sdk);
        let (channel, inbound, session_id) = Channel::open(ssm, target.clone(), allow_any_endpoint)
            .await
            .map_err(|error| classify(target, &error))?;
        let sender_channel = channel.clone();
        let send: Sender = Arc::new(move |bytes: Bytes| {
            let channel = sender_channel.clone();
            Box::pin(async move { channel.send(bytes).await })
        });
        let mux = Mux::start(tokio_stream::wrappers::ReceiverStream::new(inbound), send);
        tracing::info!(%session_id, instance = %target.instance_id, port = target.port, "Session Manager tunnel open");
        Ok(Self {
            channel,
            mux,
            session_id,
        })
    }

    /// A new connection to the agent's port.
    pub fn open_stream(&self) -> std::io::Result<MuxStream> {
        self.mux.open()
    }

    /// Why the tunnel can carry no more streams, if it cannot.
    pub fn ended(&self) -> Option<String> {
        self.mux.ended()
    }

    /// How many connections are open through it.
    pub fn open_streams(&self) -> usize {
        self.mux.open_streams()
    }

    /// The first Session Manager session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Ends the session: a TerminateSession flag on the channel and `ssm:TerminateSession`.
    pub async fn close(&self) {
        self.channel.terminate().await;
    }
}

/// Sorts a failed open by the SDK error's code, never by its text.
fn classify(target: &Target, error: &OpenError) -> TunnelError {
    let detail = channel::describe(error);
    let code = match error {
        OpenError::Start(error) => error.code().unwrap_or_default(),
        OpenError::Channel(_) => "",
    };
    match code {
        "TargetNotConnected" => TunnelError::NotConnected {
            instance_id: target.instance_id.clone(),
            detail,
        },
        "AccessDeniedException" | "AccessDenied" => TunnelError::AccessDenied {
            instance_id: target.instance_id.clone(),
            detail,
        },
        _ => TunnelError::Other {
            instance_id: target.instance_id.clone(),
            port: target.port,
            detail,
        },
    }
}

impl super::warm::Carrier for Tunnel {
    fn open_stream(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<super::BoxIo>> + Send + '_>,
    > {
        Box::pin(async move { Ok(Box::new(self.mux.open()?) as super::BoxIo) })
    }

    fn ended(&self) -> Option<String> {
        self.mux.ended()
    }

    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(Tunnel::close(self))
    }
}
