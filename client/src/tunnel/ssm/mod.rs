//! The native Session Manager tunnel: `ssm:StartSession` with `AWS-StartPortForwardingSession` to the agent's
//! port on the instance, its data channel through the `aws-ssm-bridge` crate, and our multiplexer (`mux`) on
//! top, so each gRPC connection is one smux stream of the session and no local TCP port is opened.
//!
//! The library's `ReconnectingSession` carries the session: when the WebSocket drops it calls
//! `ssm:ResumeSession`, re-dials, and keeps the sequence numbers and unacknowledged messages, so the byte
//! stream goes on where it stopped and in-flight RPCs survive. If the session cannot be resumed, the library
//! starts a new one; `mux` then fails the streams of the old one with an error (their bytes are gone) and new
//! streams work. `TerminateSession` is called when the tunnel is closed.
//!
//! Endpoints: the SDK's `AWS_ENDPOINT_URL_SSM` (or `AWS_ENDPOINT_URL`) for the API, and the stream URL the
//! service returns for the WebSocket, which must be an AWS `wss://ssmmessages…` address unless
//! `SKIFF_SSM_ALLOW_ANY_ENDPOINT=1` allows any `ws://`/`wss://` one (for tests against a local gateway).

pub mod mux;
mod nodelay;

use std::sync::Arc;
use std::time::Duration;

use aws_ssm_bridge::documents::PortForwardingSession;
use aws_ssm_bridge::{
    DocumentSpec, EndpointPolicy, ReconnectConfig, ReconnectEvent, ReconnectingSession,
    SessionConfig, SessionManager,
};
use bytes::Bytes;
use futures::{Stream, StreamExt as _};

pub use mux::MuxStream;
use mux::{Inbound, Mux, Sender};

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

/// Session settings for a port-forwarding tunnel to `target`.
fn session_config(target: &Target, allow_any: bool) -> SessionConfig {
    SessionConfig {
        target: target.instance_id.clone(),
        document: Some(DocumentSpec::new(&PortForwardingSession::new(target.port))),
        reason: Some("skiff: the workspace agent's gRPC tunnel".into()),
        // A dead WebSocket is seen at once when it closes; a silent one within a minute.
        heartbeat_interval: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
        endpoint_policy: if allow_any {
            EndpointPolicy::AllowAny
        } else {
            EndpointPolicy::AwsOnly
        },
        ..SessionConfig::default()
    }
}

/// One Session Manager session to the agent's port, multiplexed.
#[derive(Debug, Clone)]
pub struct Tunnel {
    session: ReconnectingSession,
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
        let manager = SessionManager::from_conf(sdk);
        let config = ReconnectConfig {
            // The reference plugin's policy (PROTOCOL.md §1): 5 attempts, from ~100 ms doubling to 5 s.
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            session: session_config(target, allow_any_endpoint),
        };
        let session =
            ReconnectingSession::connect_with(target.instance_id.clone(), config, manager)
                .await
                .map_err(|error| classify(target, &error))?;
        let current = session.current().await.ok_or_else(|| TunnelError::Other {
            instance_id: target.instance_id.clone(),
            port: target.port,
            detail: "the session closed as soon as it opened".into(),
        })?;
        current
            .wait_ready()
            .await
            .map_err(|error| classify(target, &error))?;
        nodelay::apply();
        let session_id = current.id().to_owned();
        let sender_session = session.clone();
        let send: Sender = Arc::new(move |bytes: Bytes| {
            let session = sender_session.clone();
            Box::pin(async move { session.send(bytes).await.map_err(|error| error.to_string()) })
        });
        let mux = Mux::start(inbound(session.clone()), send);
        tracing::info!(%session_id, instance = %target.instance_id, port = target.port, "Session Manager tunnel open");
        Ok(Self {
            session,
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
        if let Err(error) = self.session.terminate().await {
            tracing::warn!(%error, "terminating the Session Manager session");
        }
    }
}

fn classify(target: &Target, error: &aws_ssm_bridge::Error) -> TunnelError {
    let detail = error.to_string();
    if detail.contains("TargetNotConnected") {
        TunnelError::NotConnected {
            instance_id: target.instance_id.clone(),
            detail,
        }
    } else if detail.contains("AccessDenied") {
        TunnelError::AccessDenied {
            instance_id: target.instance_id.clone(),
            detail,
        }
    } else {
        TunnelError::Other {
            instance_id: target.instance_id.clone(),
            port: target.port,
            detail,
        }
    }
}

/// The reconnecting session's output and events as the multiplexer's ordered input, read by the
/// multiplexer's own task (no task or queue between them: each message from the agent is one wake-up fewer
/// on its way to the stream that waits for it).
fn inbound(session: ReconnectingSession) -> impl Stream<Item = Inbound> + Send + 'static {
    let output = session.output();
    let events = session.events();
    futures::stream::unfold(Some((session, output, events)), |state| async move {
        let (session, mut output, mut events) = state?;
        loop {
            let next = tokio::select! {
                biased;
                event = events.recv() => match event {
                    Ok(ReconnectEvent::Disconnected { reason }) => {
                        tracing::info!(%reason, "the Session Manager WebSocket dropped; resuming");
                        continue;
                    }
                    Ok(ReconnectEvent::Resumed { session_id, attempts }) => {
                        tracing::info!(%session_id, attempts, "the Session Manager session resumed");
                        nodelay::apply();
                        continue;
                    }
                    Ok(ReconnectEvent::Reconnected { session_id, .. }) => {
                        nodelay::apply();
                        Inbound::Replaced(format!("new session {session_id}"))
                    }
                    Ok(ReconnectEvent::GaveUp { reason, .. }) => Inbound::Ended(reason),
                    Ok(_) => continue,
                    // Missed events cannot hide a replacement: the output stream still ends when it gives up.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        Inbound::Ended("the session's supervisor stopped".into())
                    }
                },
                chunk = output.next() => match chunk {
                    Some(bytes) => Inbound::Data(bytes),
                    None if output.lagged() => Inbound::Ended("the tunnel fell behind its session's output".into()),
                    None => Inbound::Ended("the session closed".into()),
                },
            };
            let state = if matches!(next, Inbound::Ended(_)) {
                None
            } else {
                Some((session, output, events))
            };
            return Some((next, state));
        }
    })
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
