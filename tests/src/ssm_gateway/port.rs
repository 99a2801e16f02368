//! The SSM agent's Port plugin (`ssm/PROTOCOL.md` §5): in mux mode an smux v1 server that dials the route for
//! each SYN, copies bytes both ways, closes both ends when either ends (sending FIN), and answers a failed dial
//! with the ConnectToPortError flag and FIN; in basic mode one raw connection that is re-dialled on the next
//! data after it closed or after the client's DisconnectToPort flag.
//!
//! What the plugin sends goes, in order, into one queue of [`Outbound`] items that the session's pump (in
//! `channel`) cuts into Output messages of at most 1 KiB, as the agent reads its smux byte stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::frame::flag;
use super::smux::{self, Command, Frame, Reassembler, SmuxError};
use super::stats::Counters;
use super::tasks::Tasks;

/// How long a dial may take before it counts as failed.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// The agent's read size in basic mode (StreamDataPayloadSize).
const BASIC_READ_SIZE: usize = 1024;
/// smux keep-alive interval and timeout (xtaci/smux `DefaultConfig()`).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(30);

/// What the plugin hands the session to send, in order.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Bytes of the stream the Output payloads carry (smux frames in mux mode, raw bytes in basic mode).
    Bytes(Vec<u8>),
    /// A Flag message of its own (PayloadType 10).
    Flag(u32),
}

/// What the plugin's connection tasks need.
#[derive(Clone)]
pub(crate) struct Context {
    /// Where to dial.
    pub route: SocketAddr,
    /// The session's send queue.
    pub outbound: mpsc::Sender<Outbound>,
    /// Cancelled when the session ends: every dialled connection closes.
    pub cancel: CancellationToken,
    pub tasks: Tasks,
    pub counters: Arc<Counters>,
}

/// The Port plugin of one session, once the handshake chose its mode.
pub(crate) enum Port {
    Mux(MuxServer),
    Basic(BasicPort),
}

impl Port {
    /// The mode the agent picks from the client's version: mux iff ≥ 1.1.70, and the agent's smux keep-alive
    /// only while the client is at most 1.2.331.0 (§5).
    pub(crate) fn for_client(client_version: &str, context: Context) -> Self {
        if compare_versions(client_version, "1.1.70").is_ge() {
            Port::Mux(MuxServer {
                context,
                reassembler: Reassembler::default(),
                streams: HashMap::new(),
                keepalive: compare_versions(client_version, "1.2.331.0").is_le(),
                last_frame: Instant::now(),
                last_nop: Instant::now(),
            })
        } else {
            let mut basic = BasicPort {
                context,
                connection: None,
            };
            basic.dial();
            Port::Basic(basic)
        }
    }

    pub(crate) fn is_mux(&self) -> bool {
        matches!(self, Port::Mux(_))
    }

    /// Client stream bytes, in order.
    pub(crate) fn on_client_bytes(&mut self, bytes: &[u8]) -> Result<(), SmuxError> {
        match self {
            Port::Mux(server) => server.on_bytes(bytes),
            Port::Basic(basic) => {
                basic.send(bytes);
                Ok(())
            }
        }
    }

    /// The client's DisconnectToPort flag: basic mode closes its connection (mux mode has no use for it).
    pub(crate) fn on_disconnect_to_port(&mut self) {
        if let Port::Basic(basic) = self {
            basic.close();
        }
    }

    /// Called every resend tick: the agent's smux keep-alive. An error ends the session.
    pub(crate) fn tick(&mut self, now: Instant) -> Result<(), String> {
        let Port::Mux(server) = self else {
            return Ok(());
        };
        if !server.keepalive {
            return Ok(());
        }
        if now.duration_since(server.last_frame) > KEEPALIVE_TIMEOUT {
            return Err(format!(
                "the smux session received no frame for {}s (keep-alive is on for this client version)",
                KEEPALIVE_TIMEOUT.as_secs()
            ));
        }
        if now.duration_since(server.last_nop) >= KEEPALIVE_INTERVAL {
            server.last_nop = now;
            let _ = server
                .context
                .outbound
                .try_send(Outbound::Bytes(Frame::nop().encode()));
        }
        Ok(())
    }
}

/// What a stream task is given by the session.
#[derive(Debug)]
enum StreamInput {
    Data(Vec<u8>),
    Fin,
}

/// The agent's smux server.
pub(crate) struct MuxServer {
    context: Context,
    reassembler: Reassembler,
    /// Open streams; a stream whose task ended is removed on the next frame that names it.
    streams: HashMap<u32, mpsc::UnboundedSender<StreamInput>>,
    keepalive: bool,
    last_frame: Instant,
    last_nop: Instant,
}

impl MuxServer {
    fn on_bytes(&mut self, bytes: &[u8]) -> Result<(), SmuxError> {
        self.reassembler.push(bytes);
        while let Some(frame) = self.reassembler.next_frame()? {
            self.last_frame = Instant::now();
            self.on_frame(frame);
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: Frame) {
        match frame.command {
            Command::Syn => {
                // xtaci/smux accepts a SYN for a new id and ignores one for an open stream.
                let open = self
                    .streams
                    .get(&frame.stream_id)
                    .is_some_and(|stream| !stream.is_closed());
                if open {
                    return;
                }
                let (sender, receiver) = mpsc::unbounded_channel();
                self.streams.insert(frame.stream_id, sender);
                self.context.counters.add_stream();
                let context = self.context.clone();
                let cancel = context.cancel.clone();
                context.tasks.spawn_until(
                    cancel,
                    run_mux_stream(frame.stream_id, receiver, context.clone()),
                );
            }
            Command::Psh => {
                let open = self
                    .streams
                    .get(&frame.stream_id)
                    .is_some_and(|stream| stream.send(StreamInput::Data(frame.data)).is_ok());
                if !open {
                    // Data for a closed or unknown stream is dropped, as xtaci/smux drops it.
                    self.streams.remove(&frame.stream_id);
                }
            }
            Command::Fin => {
                if let Some(stream) = self.streams.remove(&frame.stream_id) {
                    let _ = stream.send(StreamInput::Fin);
                }
            }
            Command::Nop => {}
        }
    }
}

/// One smux stream: dial, then copy both ways until either side ends; FIN in every case.
async fn run_mux_stream(
    stream_id: u32,
    mut input: mpsc::UnboundedReceiver<StreamInput>,
    context: Context,
) {
    let connection = match dial(context.route).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(stream_id, route = %context.route, %error, "ssm gateway: dial failed");
            context.counters.add_dial_failure();
            let _ = context
                .outbound
                .send(Outbound::Flag(flag::CONNECT_TO_PORT_ERROR))
                .await;
            let _ = context
                .outbound
                .send(Outbound::Bytes(Frame::fin(stream_id).encode()))
                .await;
            return;
        }
    };
    let (mut reader, mut writer) = connection.into_split();
    let to_target = async {
        while let Some(StreamInput::Data(data)) = input.recv().await {
            if writer.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    let outbound = context.outbound.clone();
    let from_target = async {
        let mut buffer = vec![0u8; smux::MAX_FRAME_SIZE];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    let frame = Frame::psh(stream_id, &buffer[..read]).encode();
                    if outbound.send(Outbound::Bytes(frame)).await.is_err() {
                        break;
                    }
                }
            }
        }
    };
    // Whichever direction ends first closes both, as the agent's copy loops do.
    tokio::select! {
        () = to_target => {}
        () = from_target => {}
    }
    let _ = context
        .outbound
        .send(Outbound::Bytes(Frame::fin(stream_id).encode()))
        .await;
}

/// Basic mode's single connection.
pub(crate) struct BasicPort {
    context: Context,
    connection: Option<(mpsc::UnboundedSender<Vec<u8>>, CancellationToken)>,
}

impl BasicPort {
    fn send(&mut self, bytes: &[u8]) {
        let open = self
            .connection
            .as_ref()
            .is_some_and(|(sender, _)| !sender.is_closed());
        if !open {
            self.dial();
        }
        if let Some((sender, _)) = &self.connection {
            let _ = sender.send(bytes.to_vec());
        }
    }

    fn dial(&mut self) {
        self.close();
        let (sender, receiver) = mpsc::unbounded_channel();
        let cancel = self.context.cancel.child_token();
        self.context
            .tasks
            .spawn_until(cancel.clone(), run_basic(receiver, self.context.clone()));
        self.connection = Some((sender, cancel));
    }

    fn close(&mut self) {
        if let Some((_, cancel)) = self.connection.take() {
            cancel.cancel();
        }
    }
}

/// Basic mode's connection task: 1 KiB reads straight into Output; a close is not signalled to the client.
async fn run_basic(mut input: mpsc::UnboundedReceiver<Vec<u8>>, context: Context) {
    let connection = match dial(context.route).await {
        Ok(connection) => connection,
        Err(error) => {
            tracing::debug!(route = %context.route, %error, "ssm gateway: basic dial failed");
            context.counters.add_dial_failure();
            let _ = context
                .outbound
                .send(Outbound::Flag(flag::CONNECT_TO_PORT_ERROR))
                .await;
            return;
        }
    };
    let (mut reader, mut writer) = connection.into_split();
    let to_target = async {
        while let Some(data) = input.recv().await {
            if writer.write_all(&data).await.is_err() {
                break;
            }
        }
    };
    let outbound = context.outbound.clone();
    let from_target = async {
        let mut buffer = vec![0u8; BASIC_READ_SIZE];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if outbound
                        .send(Outbound::Bytes(buffer[..read].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    tokio::select! {
        () = to_target => {}
        () = from_target => {}
    }
}

async fn dial(route: SocketAddr) -> std::io::Result<TcpStream> {
    let connection = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(route))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "dial timed out"))??;
    connection.set_nodelay(true)?;
    Ok(connection)
}

/// The agent's `versionutil.Compare`: dotted components compared numerically where both parse, else as
/// strings; when all shared components are equal, the one with more components is greater.
pub(crate) fn compare_versions(left: &str, right: &str) -> std::cmp::Ordering {
    let mut left_parts = left.split('.');
    let mut right_parts = right.split('.');
    loop {
        match (left_parts.next(), right_parts.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(left_part), Some(right_part)) => {
                let order = match (left_part.parse::<u64>(), right_part.parse::<u64>()) {
                    (Ok(left_number), Ok(right_number)) => left_number.cmp(&right_number),
                    _ => left_part.cmp(right_part),
                };
                if order.is_ne() {
                    return order;
                }
            }
        }
    }
}
