//! Our Session Manager data channel client: one task per tunnel that owns the session, its WebSocket and its
//! reliability state, and gives the multiplexer an ordered byte stream (`mux::Inbound`) and a way to send.
//!
//! - `message`: the `ClientMessage` codec (§2), `handshake`: the JSON and the client's half of the handshake
//!   (§4), `link`: acknowledgements, ordering and retransmission (§3), `socket`: dialling the WebSocket.
//! - The session is started with `ssm:StartSession` (`AWS-StartPortForwardingSession`, `portNumber`). No data is
//!   sent before the agent's HandshakeComplete (the agent acks and discards it otherwise).
//! - The socket breaks when the WebSocket fails, the TCP connection ends, nothing arrives for
//!   [`SILENCE_TIMEOUT`] (pings go every [`PING_INTERVAL`]), or a Close frame arrives without `channel_closed`.
//!   Then the session is resumed: `ssm:ResumeSession` for a new token, a new socket, OpenDataChannel with it,
//!   the same sequence numbers, and every unacknowledged message sent again at once.
//! - If it cannot be resumed (no token: the session ended or timed out; or errors through the retry policy),
//!   a new session replaces it and the multiplexer hears `Inbound::Replaced`: the old streams' bytes are gone.
//! - Only `channel_closed` or our own close ends the tunnel (`Inbound::Ended`).
//!
//! Sending never blocks on the socket: one writer task per socket drains a bounded queue, and the driver
//! offers it data only while the queue has room and the send window (`link`) is open, so the driver always
//! goes on reading (acks included) while a slow socket drains. `pause_publication` holds new data and resends
//! until `start_publication` (§3); a pause longer than [`PAUSE_TIMEOUT`] counts as a broken socket.

mod handshake;
mod link;
mod message;
mod socket;

use std::time::{Duration, Instant};

use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::start_session::StartSessionError;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::Target;
use super::mux::Inbound;
use link::{Arrival, Incoming, Outgoing};
use message::{Message, message_type, payload_type};

/// How often a ping goes out on an otherwise quiet socket.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A socket that brings nothing (not even a pong) for this long is broken.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);
/// A pause longer than this is treated as a broken socket.
pub const PAUSE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the agent has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often expired messages are looked for.
const RESEND_TICK: Duration = Duration::from_millis(10);
/// The most stream bytes in one `input_stream_data` message (the agent does not check the size; §6).
const MAX_PAYLOAD: usize = 64 * 1024;
/// Frames queued for one socket's writer.
const WRITE_QUEUE: usize = 1024;
/// Room kept in the write queue for acknowledgements and pings when data is offered.
const WRITE_HEADROOM: usize = 128;
/// Batches from the multiplexer waiting for the window.
const DATA_QUEUE: usize = 16;
/// Ordered stream bytes waiting for the multiplexer.
const INBOUND_QUEUE: usize = 1024;
/// Resume attempts before a new session is started (the plugin's policy, §1).
const RESUME_ATTEMPTS: u32 = 5;
/// The longest wait between two resume attempts.
const RESUME_MAX_DELAY: Duration = Duration::from_secs(5);
/// The longest an SSM API call may take here.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a session could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// `ssm:StartSession` failed.
    Start(Box<SdkError<StartSessionError>>),
    /// The session started but its data channel did not open.
    Channel(String),
}

/// The sending side of a running data channel, and its control.
#[derive(Debug, Clone)]
pub struct Channel {
    data: mpsc::Sender<Bytes>,
    commands: mpsc::UnboundedSender<Command>,
}

#[derive(Debug)]
enum Command {
    Terminate(oneshot::Sender<()>),
}

impl Channel {
    /// Starts a session to `target`, waits for its handshake, and runs it on a task of its own; the ordered
    /// stream (and what happens to the session) arrives on the receiver. Returns the session id too.
    pub async fn open(
        ssm: aws_sdk_ssm::Client,
        target: Target,
        allow_any: bool,
    ) -> Result<(Self, mpsc::Receiver<Inbound>, String), OpenError> {
        let (data, data_queue) = mpsc::channel(DATA_QUEUE);
        let (commands, command_queue) = mpsc::unbounded_channel();
        let (inbound, inbound_queue) = mpsc::channel(INBOUND_QUEUE);
        let mut driver = Driver {
            ssm,
            target,
            allow_any,
            client_id: uuid::Uuid::new_v4().to_string(),
            session: Session::default(),
            socket: None,
            outgoing: Outgoing::default(),
            incoming: Incoming::default(),
            ready: false,
            paused_since: None,
            pending: None,
            data: data_queue,
            commands: command_queue,
            inbound,
            last_heard: Instant::now(),
            last_ping: Instant::now(),
            next_resend: Instant::now(),
        };
        driver.establish().await?;
        let session_id = driver.session.id.clone();
        tokio::spawn(driver.run());
        Ok((Self { data, commands }, inbound_queue, session_id))
    }

    /// Sends stream bytes, in order; waits while the window is full. An error means the channel ended.
    pub async fn send(&self, bytes: Bytes) -> Result<(), String> {
        self.data
            .send(bytes)
            .await
            .map_err(|_| "the Session Manager data channel has ended".to_owned())
    }

    /// Ends the session: a TerminateSession flag, `ssm:TerminateSession`, and the socket closed.
    pub async fn terminate(&self) {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Terminate(done)).is_ok() {
            let _ = finished.await;
        }
    }
}

/// What StartSession or ResumeSession gave.
#[derive(Debug, Default)]
struct Session {
    id: String,
    stream_url: String,
}

/// The current socket: its reading half, and the queue of its writer task.
struct Connected {
    stream: SplitStream<socket::WebSocket>,
    writer: mpsc::Sender<Frame>,
    writer_task: JoinHandle<()>,
}

impl Drop for Connected {
    fn drop(&mut self) {
        // Both halves go, so the TCP connection closes.
        self.writer_task.abort();
    }
}

/// What one step of the driver came to.
enum Step {
    Continue,
    /// The socket is broken; the session may be resumed.
    Broken(String),
    /// The session is over.
    End(String),
}

struct Driver {
    ssm: aws_sdk_ssm::Client,
    target: Target,
    allow_any: bool,
    client_id: String,
    session: Session,
    socket: Option<Connected>,
    outgoing: Outgoing,
    incoming: Incoming,
    /// The agent sent HandshakeComplete: data may flow.
    ready: bool,
    paused_since: Option<Instant>,
    /// The rest of a batch larger than one message.
    pending: Option<Bytes>,
    data: mpsc::Receiver<Bytes>,
    commands: mpsc::UnboundedReceiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    /// When the socket last brought anything.
    last_heard: Instant,
    /// When the last ping went out.
    last_ping: Instant,
    /// When expired messages are looked for next.
    next_resend: Instant,
}

impl Driver {
    async fn run(mut self) {
        let reason = loop {
            match self.step().await {
                Step::Continue => {}
                Step::End(reason) => break reason,
                Step::Broken(reason) => {
                    if let Err(reason) = self.recover(&reason).await {
                        break reason;
                    }
                }
            }
        };
        tracing::info!(session = %self.session.id, %reason, "the Session Manager data channel ended");
        self.socket = None;
        let _ = self.inbound.send(Inbound::Ended(reason)).await;
    }

    /// Starts a new session and waits for its handshake.
    async fn establish(&mut self) -> Result<(), OpenError> {
        let output = tokio::time::timeout(
            CALL_TIMEOUT,
            self.ssm
                .start_session()
                .target(&self.target.instance_id)
                .document_name("AWS-StartPortForwardingSession")
                .parameters("portNumber", vec![self.target.port.to_string()])
                .reason("skiff: the workspace agent's gRPC tunnel")
                .send(),
        )
        .await
        .map_err(|_| {
            OpenError::Channel(format!(
                "ssm:StartSession took over {}s",
                CALL_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|error| OpenError::Start(Box::new(error)))?;
        let (Some(id), Some(stream_url), Some(token)) = (
            output.session_id(),
            output.stream_url(),
            output.token_value(),
        ) else {
            return Err(OpenError::Channel(
                "ssm:StartSession answered without a session id, stream URL or token".into(),
            ));
        };
        self.session = Session {
            id: id.to_owned(),
            stream_url: stream_url.to_owned(),
        };
        self.outgoing = Outgoing::default();
        self.incoming = Incoming::default();
        self.ready = false;
        self.paused_since = None;
        self.pending = None;
        let socket = socket::open(stream_url, token, &self.client_id, self.allow_any)
            .await
            .map_err(OpenError::Channel)?;
        self.attach(socket);
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        while !self.ready {
            let step = tokio::time::timeout_at(deadline, self.step())
                .await
                .map_err(|_| {
                    OpenError::Channel(format!(
                        "session {}: the agent did not complete the handshake within {}s",
                        self.session.id,
                        HANDSHAKE_TIMEOUT.as_secs()
                    ))
                })?;
            match step {
                Step::Continue => {}
                Step::Broken(reason) | Step::End(reason) => {
                    return Err(OpenError::Channel(format!(
                        "session {} ended during its handshake: {reason}",
                        self.session.id
                    )));
                }
            }
        }
        Ok(())
    }

    fn attach(&mut self, websocket: socket::WebSocket) {
        let (sink, stream) = websocket.split();
        let (writer, queue) = mpsc::channel(WRITE_QUEUE);
        let writer_task = tokio::spawn(write(sink, queue));
        self.socket = Some(Connected {
            stream,
            writer,
            writer_task,
        });
        self.last_heard = Instant::now();
        self.last_ping = Instant::now();
    }

    /// Whether new data may go into the window now.
    fn can_take(&self) -> bool {
        self.ready
            && self.paused_since.is_none()
            && self.outgoing.has_room()
            && self
                .socket
                .as_ref()
                .is_some_and(|socket| socket.writer.capacity() > WRITE_HEADROOM)
    }

    /// Queues a frame on the socket; a full queue drops it (an ack is sent again for the resend it causes, and
    /// a data message is resent when its timeout passes). False when the socket's writer is gone.
    fn queue(&self, frame: Bytes) -> bool {
        let Some(socket) = &self.socket else {
            return true;
        };
        !matches!(
            socket.writer.try_send(Frame::binary(frame)),
            Err(mpsc::error::TrySendError::Closed(_))
        )
    }

    /// Puts one chunk of stream bytes in the window and sends it.
    fn take(&mut self, mut bytes: Bytes) -> bool {
        if bytes.len() > MAX_PAYLOAD {
            self.pending = Some(bytes.split_off(MAX_PAYLOAD));
        }
        let wire = self
            .outgoing
            .push(payload_type::OUTPUT, &bytes, Instant::now());
        self.queue(wire)
    }

    /// One event: a frame, data to send, a timer, or a command.
    async fn step(&mut self) -> Step {
        // Data already here goes into the window without waiting.
        while self.can_take() {
            let next = match self.pending.take() {
                Some(rest) => rest,
                None => match self.data.try_recv() {
                    Ok(bytes) => bytes,
                    Err(_) => break,
                },
            };
            if !self.take(next) {
                return Step::Broken("the WebSocket's writer stopped".into());
            }
        }
        // The resend check keeps its own clock, so a busy socket (a frame every step) cannot put it off.
        let now = Instant::now();
        if now >= self.next_resend {
            self.next_resend = now + RESEND_TICK;
            if self.paused_since.is_none() {
                let step = self.resend();
                if !matches!(step, Step::Continue) {
                    return step;
                }
            }
        }
        let can_take = self.can_take() && self.pending.is_none();
        let Some(socket) = self.socket.as_mut() else {
            return Step::Broken("no WebSocket".into());
        };
        let resend_due = tokio::time::sleep_until(tokio::time::Instant::from_std(self.next_resend));
        let ping_due = tokio::time::sleep_until(tokio::time::Instant::from_std(
            (self.last_ping + PING_INTERVAL).min(self.last_heard + SILENCE_TIMEOUT),
        ));
        tokio::select! {
            biased;
            command = self.commands.recv() => {
                let done = command.map(|Command::Terminate(done)| done);
                let reason = self.terminate().await;
                if let Some(done) = done {
                    let _ = done.send(());
                }
                Step::End(reason)
            }
            frame = socket.stream.next() => {
                self.last_heard = Instant::now();
                match frame {
                    Some(Ok(frame)) => self.on_frame(frame).await,
                    Some(Err(error)) => Step::Broken(format!("the WebSocket failed: {error}")),
                    None => Step::Broken("the WebSocket's connection ended without a close frame".into()),
                }
            }
            bytes = self.data.recv(), if can_take => match bytes {
                Some(bytes) => {
                    if self.take(bytes) {
                        Step::Continue
                    } else {
                        Step::Broken("the WebSocket's writer stopped".into())
                    }
                }
                // Every sender is gone: the tunnel was dropped.
                None => Step::End(self.terminate().await),
            },
            // The check itself runs at the top of the next step.
            () = resend_due, if self.outgoing.unacked() > 0 && self.paused_since.is_none() => Step::Continue,
            () = ping_due => self.keep_alive(),
        }
    }

    /// Sends every message whose timeout passed.
    fn resend(&mut self) -> Step {
        match self.outgoing.expired(Instant::now()) {
            Ok(due) => {
                for wire in due {
                    if !self.queue(wire) {
                        return Step::Broken("the WebSocket's writer stopped".into());
                    }
                }
                Step::Continue
            }
            Err(link::GaveUp(sequence)) => Step::End(format!(
                "the agent never acknowledged message {sequence} in {}s",
                link::GIVE_UP_AFTER.as_secs()
            )),
        }
    }

    /// A ping every [`PING_INTERVAL`]; broken when the socket has been silent for [`SILENCE_TIMEOUT`], or paused
    /// for [`PAUSE_TIMEOUT`].
    fn keep_alive(&mut self) -> Step {
        let now = Instant::now();
        if now.duration_since(self.last_heard) >= SILENCE_TIMEOUT {
            return Step::Broken(format!(
                "the WebSocket brought nothing, not even a pong, for {}s",
                SILENCE_TIMEOUT.as_secs()
            ));
        }
        if let Some(since) = self.paused_since
            && now.duration_since(since) >= PAUSE_TIMEOUT
        {
            return Step::Broken(format!(
                "the service paused publication for over {}s",
                PAUSE_TIMEOUT.as_secs()
            ));
        }
        if now.duration_since(self.last_ping) >= PING_INTERVAL {
            self.last_ping = now;
            if let Some(socket) = &self.socket {
                let _ = socket
                    .writer
                    .try_send(Frame::Ping(Bytes::from_static(b"keepalive")));
            }
        }
        Step::Continue
    }

    async fn on_frame(&mut self, frame: Frame) -> Step {
        match frame {
            Frame::Binary(bytes) => self.on_message(&bytes).await,
            Frame::Close(close) => Step::Broken(match close {
                Some(close) => format!(
                    "the service closed the WebSocket ({} {}) without channel_closed",
                    u16::from(close.code),
                    close.reason
                ),
                None => "the service closed the WebSocket without channel_closed".into(),
            }),
            // Pongs only prove the socket alive; tungstenite answers pings itself; text has no use here.
            _ => Step::Continue,
        }
    }

    async fn on_message(&mut self, bytes: &Bytes) -> Step {
        let message = match message::decode(bytes) {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(session = %self.session.id, %error, "ignoring a data channel frame");
                return Step::Continue;
            }
        };
        match message.message_type.as_str() {
            message_type::OUTPUT_STREAM_DATA => self.on_output(message).await,
            message_type::ACKNOWLEDGE => {
                match serde_json::from_slice::<handshake::AcknowledgeContent>(&message.payload) {
                    Ok(content) => {
                        self.outgoing
                            .acknowledge(content.sequence_number, Instant::now());
                    }
                    Err(error) => {
                        tracing::debug!(session = %self.session.id, %error, "ignoring an acknowledge that is not AcknowledgeContent");
                    }
                }
                Step::Continue
            }
            message_type::CHANNEL_CLOSED => {
                let output = handshake::channel_closed_output(&message.payload);
                Step::End(if output.is_empty() {
                    format!("the service closed session {}", self.session.id)
                } else {
                    format!("the service closed session {}: {output}", self.session.id)
                })
            }
            message_type::PAUSE_PUBLICATION => {
                tracing::debug!(session = %self.session.id, "the service paused publication");
                self.paused_since.get_or_insert_with(Instant::now);
                Step::Continue
            }
            message_type::START_PUBLICATION => {
                self.paused_since = None;
                Step::Continue
            }
            other => {
                tracing::debug!(session = %self.session.id, message_type = other, "ignoring a data channel message of this type");
                Step::Continue
            }
        }
    }

    async fn on_output(&mut self, message: Message) -> Step {
        if !message.digest_matches() {
            // Not acknowledged, so the agent sends it again.
            tracing::debug!(session = %self.session.id, sequence = message.sequence_number, "dropping output_stream_data with a wrong digest");
            return Step::Continue;
        }
        let ack = link::acknowledgement(&message);
        let due = match self.incoming.arrive(message) {
            Arrival::Refused => return Step::Continue,
            Arrival::Kept | Arrival::Duplicate => Vec::new(),
            Arrival::Deliver(due) => due,
        };
        // Duplicates are acknowledged again: the ack of the first copy may be what was lost.
        if !self.queue(ack) {
            return Step::Broken("the WebSocket's writer stopped".into());
        }
        for message in due {
            let step = self.process(message).await;
            if !matches!(step, Step::Continue) {
                return step;
            }
        }
        Step::Continue
    }

    /// One in-order `output_stream_data`.
    async fn process(&mut self, message: Message) -> Step {
        match message.payload_type {
            payload_type::OUTPUT => {
                if self
                    .inbound
                    .send(Inbound::Data(message.payload))
                    .await
                    .is_err()
                {
                    return Step::End("the tunnel's multiplexer stopped".into());
                }
                Step::Continue
            }
            payload_type::HANDSHAKE_REQUEST => match handshake::respond(&message.payload) {
                Ok((response, agent_version)) => {
                    tracing::debug!(session = %self.session.id, %agent_version, "answering the agent's handshake");
                    let wire = self.outgoing.push(
                        payload_type::HANDSHAKE_RESPONSE,
                        &response,
                        Instant::now(),
                    );
                    if self.queue(wire) {
                        Step::Continue
                    } else {
                        Step::Broken("the WebSocket's writer stopped".into())
                    }
                }
                Err(error) => Step::End(error.to_string()),
            },
            payload_type::HANDSHAKE_COMPLETE => {
                self.ready = true;
                Step::Continue
            }
            payload_type::FLAG => {
                if message.flag() == Some(message::flag::CONNECT_TO_PORT_ERROR) {
                    tracing::warn!(session = %self.session.id, port = self.target.port, "the agent could not connect to the port on the instance");
                }
                Step::Continue
            }
            _ => Step::Continue,
        }
    }

    /// Our end of the session: the TerminateSession flag on the channel, then `ssm:TerminateSession`.
    async fn terminate(&mut self) -> String {
        let flag = message::flag::TERMINATE_SESSION.to_be_bytes();
        let wire = self
            .outgoing
            .push(payload_type::FLAG, &flag, Instant::now());
        self.queue(wire);
        let call = self
            .ssm
            .terminate_session()
            .session_id(&self.session.id)
            .send();
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(session = %self.session.id, error = %aws_sdk_ssm::error::DisplayErrorContext(&error), "ssm:TerminateSession failed");
            }
            Err(_) => {
                tracing::warn!(session = %self.session.id, "ssm:TerminateSession did not answer");
            }
        }
        // Let the writer send the flag before the socket goes.
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(socket) = &self.socket
            && socket.writer.capacity() < WRITE_QUEUE
            && !socket.writer.is_closed()
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.socket = None;
        format!("the tunnel closed session {}", self.session.id)
    }

    /// After a broken socket: resume the session, or else replace it. An error ends the tunnel.
    async fn recover(&mut self, why: &str) -> Result<(), String> {
        let started = Instant::now();
        self.socket = None;
        let old = self.session.id.clone();
        tracing::info!(session = %old, reason = %why, "the Session Manager WebSocket broke; resuming the session");
        let resume_error = match self.resume().await {
            Ok(attempts) => {
                let unacked = self.outgoing.unacked();
                let resent = self.outgoing.all(Instant::now());
                for wire in resent {
                    self.queue(wire);
                }
                tracing::info!(
                    session = %old,
                    reason = %why,
                    attempts,
                    elapsed = ?started.elapsed(),
                    resent = unacked,
                    "resumed the Session Manager session; every unacknowledged message sent again"
                );
                return Ok(());
            }
            Err(error) => error,
        };
        tracing::warn!(session = %old, reason = %why, error = %resume_error, "the Session Manager session could not be resumed; starting a new one");
        match self.establish().await {
            Ok(()) => {
                let new = self.session.id.clone();
                let reason = format!(
                    "session {old} was replaced by {new} after {:.1}s because {why}, and resuming it failed: {resume_error}",
                    started.elapsed().as_secs_f64()
                );
                tracing::warn!("{reason}");
                if self.inbound.send(Inbound::Replaced(reason)).await.is_err() {
                    return Err("the tunnel's multiplexer stopped".into());
                }
                Ok(())
            }
            Err(error) => Err(format!(
                "session {old} broke ({why}) and could be neither resumed ({resume_error}) nor replaced ({})",
                describe(&error)
            )),
        }
    }

    /// `ssm:ResumeSession` and a new socket, retried by the plugin's policy; the attempts it took.
    async fn resume(&mut self) -> Result<u32, String> {
        let mut delay = Duration::from_millis(100 + u64::from(rand::random::<u8>() % 100));
        let mut last_error = String::new();
        for attempt in 1..=RESUME_ATTEMPTS {
            if attempt > 1 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RESUME_MAX_DELAY);
            }
            let call = self
                .ssm
                .resume_session()
                .session_id(&self.session.id)
                .send();
            let output = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(Ok(output)) => output,
                Ok(Err(error)) => {
                    last_error = format!(
                        "ssm:ResumeSession: {}",
                        aws_sdk_ssm::error::DisplayErrorContext(&error)
                    );
                    continue;
                }
                Err(_) => {
                    last_error = format!("ssm:ResumeSession took over {}s", CALL_TIMEOUT.as_secs());
                    continue;
                }
            };
            let Some(token) = output.token_value().filter(|token| !token.is_empty()) else {
                // The plugin's rule: no token means the session ended or timed out; retrying cannot help.
                return Err(
                    "ssm:ResumeSession gave no token (the session ended or timed out)".into(),
                );
            };
            if let Some(url) = output.stream_url().filter(|url| !url.is_empty()) {
                self.session.stream_url = url.to_owned();
            }
            match socket::open(
                &self.session.stream_url,
                token,
                &self.client_id,
                self.allow_any,
            )
            .await
            {
                Ok(websocket) => {
                    self.attach(websocket);
                    return Ok(attempt);
                }
                Err(error) => last_error = error,
            }
        }
        Err(format!(
            "{RESUME_ATTEMPTS} attempts failed, the last with: {last_error}"
        ))
    }
}

/// Writes queued frames to the socket until the queue or the socket ends.
async fn write(mut sink: SplitSink<socket::WebSocket, Frame>, mut queue: mpsc::Receiver<Frame>) {
    while let Some(frame) = queue.recv().await {
        if sink.feed(frame).await.is_err() {
            return;
        }
        // Write what else is queued in the same flush.
        while let Ok(frame) = queue.try_recv() {
            if sink.feed(frame).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}

/// An open error on one line.
pub fn describe(error: &OpenError) -> String {
    match error {
        OpenError::Start(error) => format!(
            "ssm:StartSession: {}",
            aws_sdk_ssm::error::DisplayErrorContext(error.as_ref())
        ),
        OpenError::Channel(detail) => detail.clone(),
    }
}
