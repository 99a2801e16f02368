//! An smux v1 client over a byte channel that survives a resumed Session Manager WebSocket.
//!
//! The data channel below (`channel`) gives an ordered byte stream that goes on across resumed WebSockets,
//! and says when the session was replaced or ended. This module is the multiplexer on that byte stream, with
//! two promises:
//!
//! - A stream ends cleanly only when the agent sent FIN for it. If the session below ends, or is replaced by
//!   a new session (which starts a new smux byte stream, so every open stream's bytes are gone), every open
//!   stream fails with an error that says so: a short read is never reported as the end of the data.
//! - No stream is evicted for reading slowly. smux v1 has no flow control, so what arrives is queued per
//!   stream; gRPC's HTTP/2 windows above bound how much that can be.
//!
//! The wire format is xtaci/smux protocol version 1, as PROTOCOL.md §5 gives it: an 8-byte header
//! `ver | cmd | length u16 LE | stream id u32 LE`, commands SYN, FIN, PSH and NOP, client streams with odd ids
//! starting at 3 as xtaci's client does.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;

/// smux protocol version 1, the only one the SSM agent speaks.
pub const VERSION: u8 = 1;
/// Opens a stream.
pub const CMD_SYN: u8 = 0;
/// Ends a stream.
pub const CMD_FIN: u8 = 1;
/// Carries a stream's bytes.
pub const CMD_PSH: u8 = 2;
/// Keep-alive; carries nothing.
pub const CMD_NOP: u8 = 3;
/// The header's size.
pub const HEADER_SIZE: usize = 8;
/// The largest payload this client puts in one frame (xtaci's default MaxFrameSize).
pub const MAX_FRAME: usize = 32 * 1024;
/// Frames waiting for the session below, across all streams: the backpressure on writers.
const FRAME_QUEUE: usize = 64;
/// The most bytes handed to the session below in one send, when several frames are waiting.
const BATCH_BYTES: usize = 64 * 1024;

/// One smux frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: u8,
    pub stream_id: u32,
    pub payload: Bytes,
}

/// A byte stream that is not smux v1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("smux frame with version {0}, expected 1")]
    Version(u8),
    #[error("smux frame with unknown command {0}")]
    Command(u8),
    #[error("smux {command} frame for stream {stream_id} carries {length} bytes, expected none")]
    UnexpectedPayload {
        command: &'static str,
        stream_id: u32,
        length: usize,
    },
}

/// Encodes one frame.
pub fn encode(command: u8, stream_id: u32, payload: &[u8]) -> Bytes {
    debug_assert!(payload.len() <= usize::from(u16::MAX));
    let mut buffer = BytesMut::with_capacity(HEADER_SIZE + payload.len());
    buffer.put_u8(VERSION);
    buffer.put_u8(command);
    buffer.put_u16_le(payload.len() as u16);
    buffer.put_u32_le(stream_id);
    buffer.put_slice(payload);
    buffer.freeze()
}

/// Takes one whole frame off the front of `buffer`: `Ok(None)` when more bytes are needed. Frames may span
/// Session Manager messages and one message may hold several, so the caller keeps appending and decoding.
pub fn decode(buffer: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buffer.len() < HEADER_SIZE {
        return Ok(None);
    }
    let version = buffer[0];
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let command = buffer[1];
    let length = usize::from(u16::from_le_bytes([buffer[2], buffer[3]]));
    let stream_id = u32::from_le_bytes([buffer[4], buffer[5], buffer[6], buffer[7]]);
    let name = match command {
        CMD_SYN => "SYN",
        CMD_FIN => "FIN",
        CMD_NOP => "NOP",
        CMD_PSH => "PSH",
        other => return Err(FrameError::Command(other)),
    };
    if command != CMD_PSH && length != 0 {
        return Err(FrameError::UnexpectedPayload {
            command: name,
            stream_id,
            length,
        });
    }
    if buffer.len() < HEADER_SIZE + length {
        return Ok(None);
    }
    buffer.advance(HEADER_SIZE);
    let payload = buffer.split_to(length).freeze();
    Ok(Some(Frame {
        command,
        stream_id,
        payload,
    }))
}

/// What the session below delivers to the multiplexer, in order.
#[derive(Debug)]
pub enum Inbound {
    /// The next bytes of the smux byte stream.
    Data(Bytes),
    /// The session was replaced by a new one: the smux byte stream starts again, every open stream is lost.
    Replaced(String),
    /// The session ended for good.
    Ended(String),
}

/// Sends bytes on the session below, in order; an error means the session is gone.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// The sending half of the session below.
pub type Sender = Arc<dyn Fn(Bytes) -> SendFuture + Send + Sync>;

/// The state of one stream's receiving side.
#[derive(Debug, Default)]
struct Incoming {
    chunks: VecDeque<Bytes>,
    /// The agent sent FIN: after the queued bytes, a clean end of file.
    finished: bool,
    /// The stream was lost with its session: after the queued bytes, this error.
    failed: Option<String>,
    waker: Option<Waker>,
}

impl Incoming {
    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    streams: HashMap<u32, Arc<Mutex<Incoming>>>,
    next_id: u32,
    /// Why the multiplexer can open no more streams.
    ended: Option<String>,
}

/// An smux v1 client: opens streams over one Session Manager session.
#[derive(Debug, Clone)]
pub struct Mux {
    shared: Arc<Mutex<Shared>>,
    frames: mpsc::Sender<Bytes>,
}

impl Mux {
    /// Starts the multiplexer: `inbound` is what the session delivers, `send` writes to it. The two tasks it
    /// spawns end when the session ends.
    pub fn start(inbound: impl Stream<Item = Inbound> + Send + 'static, send: Sender) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            next_id: 1,
            ..Shared::default()
        }));
        let (frames, frames_rx) = mpsc::channel(FRAME_QUEUE);
        tokio::spawn(receive(inbound, Arc::clone(&shared)));
        tokio::spawn(transmit(frames_rx, send, Arc::clone(&shared)));
        Self { shared, frames }
    }

    /// Opens a stream to the session's port (the agent dials it when the SYN arrives).
    pub fn open(&self) -> io::Result<MuxStream> {
        let (stream_id, incoming) = {
            let mut shared = lock(&self.shared);
            if let Some(reason) = &shared.ended {
                return Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    format!("the Session Manager session is closed: {reason}"),
                ));
            }
            // xtaci's client adds 2 before use, so its first stream is 3.
            shared.next_id = shared.next_id.wrapping_add(2);
            let stream_id = shared.next_id;
            let incoming = Arc::new(Mutex::new(Incoming::default()));
            shared.streams.insert(stream_id, Arc::clone(&incoming));
            (stream_id, incoming)
        };
        let frame = encode(CMD_SYN, stream_id, &[]);
        if let Err(error) = self.frames.try_send(frame) {
            let frame = match error {
                mpsc::error::TrySendError::Full(frame) => frame,
                mpsc::error::TrySendError::Closed(_) => {
                    lock(&self.shared).streams.remove(&stream_id);
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "the Session Manager session is closed",
                    ));
                }
            };
            // The queue is full of other streams' data: the SYN waits its turn, in order.
            let frames = self.frames.clone();
            tokio::spawn(async move { frames.send(frame).await });
        }
        Ok(MuxStream {
            stream_id,
            incoming,
            shared: Arc::clone(&self.shared),
            frames: PollSender::new(self.frames.clone()),
            fin_sent: false,
        })
    }

    /// Why the multiplexer has ended, if it has.
    pub fn ended(&self) -> Option<String> {
        lock(&self.shared).ended.clone()
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        lock(&self.shared).streams.len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Fails every open stream with `reason`; with `for_good`, no stream can be opened any more.
fn fail_all(shared: &Mutex<Shared>, reason: &str, for_good: bool) {
    let mut shared = lock(shared);
    for (_, incoming) in shared.streams.drain() {
        let mut incoming = lock(&incoming);
        if !incoming.finished {
            incoming.failed = Some(reason.to_owned());
        }
        incoming.wake();
    }
    if for_good && shared.ended.is_none() {
        shared.ended = Some(reason.to_owned());
    }
}

/// Reads the session's byte stream, splits it into frames and hands each stream its bytes.
async fn receive(inbound: impl Stream<Item = Inbound>, shared: Arc<Mutex<Shared>>) {
    let mut inbound = std::pin::pin!(inbound);
    let mut buffer = BytesMut::new();
    let reason = loop {
        match inbound.next().await {
            None => break "the Session Manager session ended".to_owned(),
            Some(Inbound::Ended(reason)) => {
                break format!("the Session Manager session ended: {reason}");
            }
            Some(Inbound::Replaced(reason)) => {
                buffer.clear();
                fail_all(
                    &shared,
                    &format!(
                        "the Session Manager session could not be resumed and was replaced ({reason}); this connection's data is lost"
                    ),
                    false,
                );
            }
            Some(Inbound::Data(bytes)) => {
                buffer.extend_from_slice(&bytes);
                loop {
                    match decode(&mut buffer) {
                        Ok(Some(frame)) => deliver(&shared, frame),
                        Ok(None) => break,
                        Err(error) => {
                            // A corrupt byte stream cannot be resynchronised: every stream's bytes are suspect.
                            tracing::warn!(%error, "the Session Manager session carried a bad smux frame");
                            buffer.clear();
                            fail_all(
                                &shared,
                                &format!("the tunnel's byte stream is corrupt: {error}"),
                                true,
                            );
                            return;
                        }
                    }
                }
            }
        }
    };
    fail_all(&shared, &reason, true);
}

fn deliver(shared: &Mutex<Shared>, frame: Frame) {
    let mut shared = lock(shared);
    match frame.command {
        CMD_PSH => {
            if let Some(incoming) = shared.streams.get(&frame.stream_id) {
                let mut incoming = lock(incoming);
                if !frame.payload.is_empty() {
                    incoming.chunks.push_back(frame.payload);
                }
                incoming.wake();
            }
        }
        CMD_FIN => {
            if let Some(incoming) = shared.streams.remove(&frame.stream_id) {
                let mut incoming = lock(&incoming);
                incoming.finished = true;
                incoming.wake();
            }
        }
        // The agent opens no streams (a SYN from it is ignored, as xtaci's client would not accept it either);
        // NOP is a keep-alive.
        _ => {}
    }
}

/// Writes queued frames to the session, a batch at a time.
async fn transmit(mut frames: mpsc::Receiver<Bytes>, send: Sender, shared: Arc<Mutex<Shared>>) {
    while let Some(first) = frames.recv().await {
        let mut batch = BytesMut::from(&first[..]);
        while batch.len() < BATCH_BYTES {
            match frames.try_recv() {
                Ok(frame) => batch.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        if let Err(error) = send(batch.freeze()).await {
            tracing::warn!(%error, "sending on the Session Manager session failed; its streams fail");
            fail_all(
                &shared,
                &format!("the Session Manager session ended: {error}"),
                true,
            );
            frames.close();
            return;
        }
    }
}

/// One connection to the agent's port through the session: read, write, and FIN on drop.
#[derive(Debug)]
pub struct MuxStream {
    stream_id: u32,
    incoming: Arc<Mutex<Incoming>>,
    shared: Arc<Mutex<Shared>>,
    frames: PollSender<Bytes>,
    fin_sent: bool,
}

impl MuxStream {
    /// The stream's smux id.
    pub fn id(&self) -> u32 {
        self.stream_id
    }
}

impl AsyncRead for MuxStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut incoming = lock(&self.incoming);
        if let Some(chunk) = incoming.chunks.front_mut() {
            let count = chunk.len().min(buffer.remaining());
            buffer.put_slice(&chunk[..count]);
            chunk.advance(count);
            if chunk.is_empty() {
                incoming.chunks.pop_front();
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(reason) = &incoming.failed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                reason.clone(),
            )));
        }
        if incoming.finished {
            return Poll::Ready(Ok(()));
        }
        incoming.waker = Some(context.waker().clone());
        Poll::Pending
    }
}

impl MuxStream {
    fn failure(&self) -> Option<io::Error> {
        lock(&self.incoming)
            .failed
            .as_ref()
            .map(|reason| io::Error::new(io::ErrorKind::ConnectionAborted, reason.clone()))
    }
}

impl AsyncWrite for MuxStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(error) = self.failure() {
            return Poll::Ready(Err(error));
        }
        if self.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "this tunnel stream was shut down for writing",
            )));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.frames.poll_reserve(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the Session Manager session is closed",
                )));
            }
            Poll::Ready(Ok(())) => {}
        }
        let count = data.len().min(MAX_FRAME);
        let frame = encode(CMD_PSH, self.stream_id, &data[..count]);
        match self.frames.send_item(frame) {
            Ok(()) => Poll::Ready(Ok(count)),
            Err(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the Session Manager session is closed",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        // smux v1 has no half-close: FIN ends the stream both ways (PROTOCOL.md §5).
        if self.fin_sent {
            return Poll::Ready(Ok(()));
        }
        match self.frames.poll_reserve(context) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => {
                self.fin_sent = true;
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Ok(())) => {}
        }
        let frame = encode(CMD_FIN, self.stream_id, &[]);
        let _ = self.frames.send_item(frame);
        self.fin_sent = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        lock(&self.shared).streams.remove(&self.stream_id);
        if self.fin_sent {
            return;
        }
        // FIN goes behind this stream's queued data, in the same queue; waiting for room needs a task.
        let Some(sender) = self.frames.get_ref().cloned() else {
            return;
        };
        let frame = encode(CMD_FIN, self.stream_id, &[]);
        if let Err(mpsc::error::TrySendError::Full(frame)) = sender.try_send(frame)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move { sender.send(frame).await });
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
