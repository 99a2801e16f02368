//! One authenticated data-channel WebSocket: a reader task that decodes each binary frame and hands it to the
//! session (pacing `input_stream_data` to ~1000 a second when [`Faults::pace`] is on), and a writer task that
//! sends what the session queues. The socket is only a carrier: a session outlives its sockets, and a new
//! one (after ResumeSession) takes over where the last one stopped.
//!
//! Dropping a socket on purpose cancels both tasks, which closes the TCP connection without a Close frame,
//! as a network failure would; ending a session sends a Close frame first.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

use super::faults::Faults;
use super::frame::{self, ClientMessage, FrameError, message_type};
use super::tasks::Tasks;

/// A data-channel WebSocket, server side.
pub(crate) type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// Messages queued for one socket's writer before the session waits.
const WRITE_QUEUE: usize = 64;
/// The client side's pace: one `input_stream_data` per millisecond.
const INPUT_INTERVAL: Duration = Duration::from_millis(1);
/// How far the input pacer may catch up after a slow stretch (it paces an average, not each gap).
const INPUT_CATCH_UP: Duration = Duration::from_millis(10);

/// What a socket tells its session.
#[derive(Debug)]
pub(crate) enum SocketEvent {
    /// A binary frame, decoded or not.
    Frame(Result<ClientMessage, FrameError>),
    /// A text frame after the OpenDataChannelInput, which the protocol has no use for.
    Text(String),
    /// The socket ended (the client closed it, or it failed).
    Closed(String),
}

/// A socket event, tagged with the socket it came from so a replaced socket's late events are ignored.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub generation: u64,
    pub event: SocketEvent,
}

/// The session's handle on its current socket.
#[derive(Debug)]
pub(crate) struct Socket {
    pub generation: u64,
    /// Stream-data payload bytes that crossed this socket, for [`Faults::drop_after_bytes`].
    pub data_bytes: u64,
    writer: mpsc::Sender<Message>,
    cancel: CancellationToken,
}

impl Socket {
    /// Starts the reader and writer tasks of `websocket`.
    pub(crate) fn start(
        websocket: WebSocket,
        generation: u64,
        inbound: mpsc::Sender<Inbound>,
        faults: Arc<RwLock<Faults>>,
        tasks: &Tasks,
    ) -> Self {
        let cancel = tasks.cancel.child_token();
        let (sink, stream) = websocket.split();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        tasks.spawn_until(cancel.clone(), write(sink, queue, cancel.clone()));
        tasks.spawn_until(
            cancel.clone(),
            read(stream, generation, inbound, faults, cancel.clone()),
        );
        Self {
            generation,
            data_bytes: 0,
            writer,
            cancel,
        }
    }

    /// Queues one binary message; false once the socket is gone.
    pub(crate) async fn send(&self, bytes: Vec<u8>) -> bool {
        self.writer.send(Message::binary(bytes)).await.is_ok()
    }

    /// Sends a Close frame with `reason` after what is queued, then ends the socket.
    pub(crate) async fn close(self, reason: &str) {
        // A close reason must fit a control frame (123 bytes); cut on a character boundary.
        let mut end = reason.len().min(120);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: reason[..end].to_owned().into(),
        };
        let _ = self.writer.send(Message::Close(Some(frame))).await;
    }

    /// The token that drops this socket.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Drops the connection now, without a Close frame.
    pub(crate) fn drop_now(self) {
        self.cancel.cancel();
    }
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;
type Stream = futures::stream::SplitStream<WebSocket>;

async fn write(mut sink: Sink, mut queue: mpsc::Receiver<Message>, cancel: CancellationToken) {
    while let Some(message) = queue.recv().await {
        let closing = matches!(message, Message::Close(_));
        if sink.send(message).await.is_err() || closing {
            break;
        }
    }
    // The reader goes too, so both halves drop and the connection closes.
    cancel.cancel();
}

async fn read(
    mut stream: Stream,
    generation: u64,
    inbound: mpsc::Sender<Inbound>,
    faults: Arc<RwLock<Faults>>,
    cancel: CancellationToken,
) {
    let mut next_input = Instant::now();
    let reason = loop {
        let event = match stream.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                let decoded = frame::decode(&bytes);
                let pace = faults.read().map(|faults| faults.pace).unwrap_or(false);
                let is_input = decoded
                    .as_ref()
                    .is_ok_and(|message| message.message_type == message_type::INPUT_STREAM_DATA);
                if pace && is_input {
                    tokio::time::sleep_until(next_input).await;
                    let now = Instant::now();
                    let floor = now.checked_sub(INPUT_CATCH_UP).unwrap_or(now);
                    next_input = next_input.max(floor) + INPUT_INTERVAL;
                }
                SocketEvent::Frame(decoded)
            }
            Some(Ok(Message::Text(text))) => SocketEvent::Text(text.as_str().to_owned()),
            // tungstenite answers pings itself while reading.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Close(frame))) => {
                break frame.map_or_else(
                    || "the client closed the WebSocket".to_owned(),
                    |frame| format!("the client closed the WebSocket: {}", frame.reason),
                );
            }
            Some(Err(error)) => break format!("the WebSocket failed: {error}"),
            None => break "the WebSocket ended".to_owned(),
        };
        if inbound.send(Inbound { generation, event }).await.is_err() {
            return;
        }
    };
    let _ = inbound
        .send(Inbound {
            generation,
            event: SocketEvent::Closed(reason),
        })
        .await;
    cancel.cancel();
}
