//! One `direct-tcpip` channel (`ssh -L`, and how VS Code and JetBrains reach their remote servers): a
//! connection to a host and port as the dev container sees them, with each direction's end passed on as EOF.
//!
//! `localhost` means the dev container's own loopback, where IDE servers and most development servers listen
//! and where nothing outside the container can connect. Those connections are made inside the container by
//! `skiff-procd --connect PORT` through the process server (see [`crate::procd::connect`]); where the process
//! server cannot run, the agent connects to the container's address instead, which reaches servers that
//! listen on all addresses. Other hosts (a compose service, an address) go through [`crate::forward`].
//! Either way the channel is confirmed only once the connection is open, and refused (`connect failed`) when it
//! cannot be; bytes the client sends in count as activity, as a forwarded connection's do.

use std::sync::Arc;

use russh::server::{ChannelOpenHandle, Msg};
use russh::{Channel, ChannelMsg, ChannelOpenFailure};
use skiff::api::{ForwardTarget, OutputStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Context;
use crate::forward::{ForwardEvent, ForwardInput};
use crate::idle;
use crate::procd::client::{CONTAINER_PATH, Event, Input, Process};
use crate::procd::connect::CONNECTED;

/// Where a `direct-tcpip` request goes: loopback names mean the dev container itself (the agent's own
/// loopback is never a target); other names resolve as the dev container resolves them. `None` for port 0
/// or a port beyond 65535.
pub(super) fn target(host: &str, port: u32) -> Option<ForwardTarget> {
    let port = u16::try_from(port).ok().filter(|port| *port != 0)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let itself = host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback() || address.is_unspecified());
    Some(ForwardTarget {
        host: (!itself).then(|| host.to_owned()),
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
    if target.host.is_none() {
        match inside(&context, target.port).await {
            Ok(Some(process)) => {
                reply.accept().await;
                carry_process(channel, process, &context).await;
                return;
            }
            Ok(None) => {}
            Err(reason) => {
                tracing::info!(
                    "ssh: direct-tcpip to port {} of the dev container refused: {reason}",
                    target.port
                );
                reply.reject(ChannelOpenFailure::ConnectFailed).await;
                return;
            }
        }
    }
    forward(channel, reply, context, target).await;
}

/// Connects to `port` on the container's loopback from inside it; `None` when the process server cannot run
/// there (the caller then connects to the container's address), an error when the port refuses.
async fn inside(context: &Context, port: u16) -> Result<Option<Process>, String> {
    let running = context
        .engine
        .running()
        .await
        .map_err(|error| error.to_string())?;
    let Some(server) = context
        .engine
        .servers()
        .get(context.engine.docker(), &running.container)
        .await
    else {
        return Ok(None);
    };
    let spec = crate::procd::Spec {
        argv: vec![
            CONTAINER_PATH.to_owned(),
            "--connect".to_owned(),
            port.to_string(),
        ],
        env: Vec::new(),
        cwd: Some("/".to_owned()),
        user: None,
        tty: None,
    };
    let mut process = match server.spawn(&spec).await {
        Ok(process) => process,
        Err(error) => {
            tracing::info!(
                "ssh: the process server did not answer, connecting from outside: {error}"
            );
            context.engine.servers().forget().await;
            return Ok(None);
        }
    };
    let mut complaint = Vec::new();
    loop {
        match process.events.recv().await {
            Some(Ok(Event::Output(OutputStream::Stdout, data))) => {
                if data.first() != Some(&CONNECTED) {
                    return Err("the connection helper said something unexpected".to_owned());
                }
                if data.len() > 1 {
                    // Bytes that came with the marker are the connection's first; keep them for the client.
                    return Ok(Some(Process {
                        events: prepend(data.slice(1..), process.events),
                        input: process.input,
                    }));
                }
                return Ok(Some(process));
            }
            Some(Ok(Event::Output(OutputStream::Stderr, data))) => {
                complaint.extend_from_slice(&data)
            }
            Some(Ok(Event::Exit(_))) | None => {
                return Err(String::from_utf8_lossy(&complaint).trim().to_owned());
            }
            Some(Err(error)) => return Err(error.to_string()),
        }
    }
}

/// An event stream with `first` as output before the rest of `events`.
fn prepend(
    first: bytes::Bytes,
    mut events: mpsc::Receiver<Result<Event, crate::procd::client::ProcdError>>,
) -> mpsc::Receiver<Result<Event, crate::procd::client::ProcdError>> {
    let (sender, receiver) = mpsc::channel(16);
    tokio::spawn(async move {
        if sender
            .send(Ok(Event::Output(OutputStream::Stdout, first)))
            .await
            .is_err()
        {
            return;
        }
        while let Some(event) = events.recv().await {
            if sender.send(event).await.is_err() {
                return;
            }
        }
    });
    receiver
}

/// Carries a channel over the in-container connection helper until the connection ends.
async fn carry_process(channel: Channel<Msg>, process: Process, context: &Context) {
    let Process { mut events, input } = process;
    let activity = Arc::clone(&context.activity);
    let (mut reader, writer) = channel.split();
    let upstream = async move {
        while let Some(message) = reader.wait().await {
            let sent = match message {
                ChannelMsg::Data { data } => {
                    activity.touch(idle::source::FORWARD);
                    input.send(Input::Stdin(data.to_vec())).await
                }
                ChannelMsg::Eof => input.send(Input::StdinEof).await,
                ChannelMsg::Close => break,
                _ => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
        // Dropping the input hangs the helper up, which closes the connection.
    };
    let downstream = async move {
        while let Some(event) = events.recv().await {
            match event {
                Ok(Event::Output(OutputStream::Stdout, data)) => {
                    if writer.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                Ok(Event::Output(OutputStream::Stderr, data)) => {
                    tracing::debug!(
                        "ssh: connection helper: {}",
                        String::from_utf8_lossy(&data).trim()
                    );
                }
                Ok(Event::Exit(_)) | Err(_) => break,
            }
        }
        // The connection's end: the remote side closed (or the helper is gone).
        let _ = writer.eof().await;
        let _ = writer.close().await;
    };
    tokio::join!(upstream, downstream);
}

/// Carries a channel over [`crate::forward`] to a host as the container resolves it, or the container's address.
async fn forward(
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
    let forwarding = tokio::spawn(async move {
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
            Ok(Err(error)) => error.to_string(),
            Ok(Ok(())) => "the connection ended before it opened".to_owned(),
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
