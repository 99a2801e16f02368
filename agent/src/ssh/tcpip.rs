//! One `direct-tcpip` channel (`ssh -L`, and how VS Code and JetBrains reach their remote servers): a
//! connection to a host and port as the dev container sees them, with each direction's end passed on as EOF.
//!
//! Every connection is made by [`crate::forward`], inside the dev container's network: `localhost` (in any
//! spelling) means the container's own loopback, where IDE servers and most development servers listen, and
//! other names resolve as the container resolves them; the agent's own network is never a source.
//! The channel is confirmed only once the connection is open, and refused (`connect failed`) when it cannot
//! be; bytes the client sends in count as activity, as a forwarded connection's do.

use std::sync::Arc;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use skiff::api::{ForwardEvent, ForwardInput, ForwardTarget};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Context;

/// Where a `direct-tcpip` request goes: loopback names mean the dev container itself (the agent's own
/// loopback is never a target); other names resolve as the dev container resolves them. `None` for port 0
/// or a port beyond 65535.
pub(super) fn target(host: &str, port: u32) -> Option<ForwardTarget> {
    let port = u16::try_from(port).ok().filter(|port| *port != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(ForwardTarget {
        host: (!crate::forward::is_loopback(host)).then(|| host.to_owned()),
        port,
    })
}

/// Opens the connection, answers the channel-open request, and carries bytes until both sides are done.
pub(super) async fn run(
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    context: Arc<Context>,
    target: ForwardTarget,
) {
    let what = match &target.host {
        Some(host) => format!("{host}:{}", target.port),
        None => format!("port {} of the dev container", target.port),
    };
    let (inputs, input_receiver) = mpsc::channel::<ForwardInput>(16);
    let (events, mut event_receiver) = mpsc::channel::<ForwardEvent>(16);
    let tasks = context.tasks.clone();
    let forwarding = tasks.spawn(async move {
        crate::forward::run(
            &context.engine,
            &context.activity,
            target,
            ReceiverStream::new(input_receiver),
            events,
        )
        .await
    });
    if !matches!(event_receiver.recv().await, Some(ForwardEvent::Opened(_))) {
        let reason = match forwarding.await {
            Ok(Some(Err(error))) => error.to_string(),
            Ok(Some(Ok(()))) => "the connection ended before it opened".to_owned(),
            Ok(None) => "the agent is stopping".to_owned(),
            Err(error) => error.to_string(),
        };
        tracing::info!("ssh: direct-tcpip to {what} refused: {reason}");
        reply.reject(ChannelOpenFailure::ConnectFailed).await;
        return;
    }
    reply.accept().await;
    let stop = forwarding.abort_handle();
    let (mut reader, writer) = channel.split();
    let upstream = async move {
        while let Some(message) = reader.wait().await {
            match message {
                ChannelMsg::Data { data }
                    if inputs
                        .send(ForwardInput::Data(data.to_vec()))
                        .await
                        .is_err() =>
                {
                    break;
                }
                ChannelMsg::Eof => {
                    let _ = inputs.send(ForwardInput::Eof).await;
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        // The client closed the channel (or the connection ended): nothing will read what the remote side
        // still sends, so the connection ends here rather than wait for the remote side to close.
        stop.abort();
    };
    let downstream = async move {
        while let Some(event) = event_receiver.recv().await {
            let written = match event {
                ForwardEvent::Data(data) => writer.data_bytes(data).await,
                ForwardEvent::Eof => writer.eof().await,
                ForwardEvent::Opened(_) => Ok(()),
            };
            if written.is_err() {
                break;
            }
        }
        let _ = writer.close().await;
    };
    tokio::join!(upstream, downstream);
}
