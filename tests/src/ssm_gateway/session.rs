//! One Session Manager session as the SSM agent runs it (`ssm/PROTOCOL.md` §3–§5): the handshake, acks for
//! every sequenced message (re-acks for duplicates), in-order delivery, the resend scheduler, the Port plugin,
//! the faults, and the session's end (`channel_closed`, then the socket closes and dialled connections close).
//!
//! [`SessionHandle`] is what the control plane keeps: the current token and a way to send the session task
//! commands. The session task owns everything else, so no state is shared between tasks but the counters.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::channel::{self, Incoming, Outgoing, Position, RESEND_INTERVAL, Resend};
use super::faults::{Dice, Direction, Faults, REORDER_HOLD};
use super::frame::{ClientMessage, flag, header_flags, message_type, payload_type};
use super::payloads::{self, AcknowledgeContent, HandshakeRequest, HandshakeResponse};
use super::port::{self, Outbound, Port};
use super::socket::{Inbound, Socket, SocketEvent, WebSocket};
use super::stats::Counters;
use super::{Shared, lock};

/// The agent waits this long for the HandshakeResponse.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// The agent's read size of its smux byte stream, and so the largest Output payload it sends.
const PAYLOAD_SIZE: usize = 1024;
/// The agent's sleep after each read when paced.
const PACE_INTERVAL: Duration = Duration::from_millis(1);
/// Plugin output items queued before the connection tasks wait.
const OUTBOUND_QUEUE: usize = 64;

/// What StartSession fixed about a session.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    pub id: String,
    pub target: String,
    /// The document's `portNumber`.
    pub port_number: String,
    /// The document's `localPortNumber`.
    pub local_port_number: String,
    /// Where the Port plugin dials.
    pub route: SocketAddr,
    /// The n-th session of this gateway, mixed into the fault seed.
    pub ordinal: u64,
}

/// What the control plane asks of a session task.
pub(crate) enum SessionCommand {
    /// A WebSocket that presented this session's current token.
    Attach {
        websocket: Box<WebSocket>,
        client_id: Option<String>,
    },
    /// Forget the WebSocket of this generation, which [`SessionHandle::drop_socket`] already dropped.
    SocketDropped { generation: u64 },
    /// Close the current WebSocket with a Close frame but no `channel_closed`; the session stays resumable.
    CloseSocket,
    /// End the session (TerminateSession).
    Terminate { output: String },
}

/// Why a token did not open a session's data channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TokenError {
    #[error("session {0} has ended")]
    Ended(String),
    #[error("the token is not session {0}'s current token")]
    Wrong(String),
    #[error("the token of session {0} was already used; call ResumeSession for a new one")]
    Used(String),
}

#[derive(Debug)]
struct Token {
    value: String,
    used: bool,
}

/// The current WebSocket's generation and the token that drops it, shared by the session task and its handle
/// so a socket can be dropped at once even while the session task waits on a slow socket.
type LiveSocket = Arc<Mutex<Option<(u64, CancellationToken)>>>;

/// The control plane's handle on a session.
#[derive(Debug)]
pub(crate) struct SessionHandle {
    pub info: Arc<SessionInfo>,
    token: Mutex<Token>,
    ended: Arc<AtomicBool>,
    live_socket: LiveSocket,
    commands: mpsc::UnboundedSender<SessionCommand>,
}

impl SessionHandle {
    /// Issues a new token (StartSession, ResumeSession); `None` once the session has ended.
    pub(crate) fn new_token(&self) -> Option<String> {
        if self.is_ended() {
            return None;
        }
        let value = random_token();
        let mut token = self
            .token
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        *token = Token {
            value: value.clone(),
            used: false,
        };
        Some(value)
    }

    /// Accepts `presented` once: it must be the current token and not used before.
    pub(crate) fn redeem(&self, presented: &str) -> Result<(), TokenError> {
        let id = || self.info.id.clone();
        if self.is_ended() {
            return Err(TokenError::Ended(id()));
        }
        let mut token = self
            .token
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if token.value != presented {
            return Err(TokenError::Wrong(id()));
        }
        if token.used {
            return Err(TokenError::Used(id()));
        }
        token.used = true;
        Ok(())
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Ends the session (TerminateSession): from now on it gives out no token, and its task says goodbye.
    pub(crate) fn terminate(&self, output: String) {
        self.ended.store(true, Ordering::SeqCst);
        self.command(SessionCommand::Terminate { output });
    }

    /// Drops the current WebSocket now, without a Close frame; the session stays resumable.
    pub(crate) fn drop_socket(&self, counters: &Counters) {
        let live = lock(&self.live_socket).take();
        if let Some((generation, cancel)) = live {
            cancel.cancel();
            counters.add_websocket_dropped();
            self.command(SessionCommand::SocketDropped { generation });
        }
    }

    /// Closes the current WebSocket with a Close frame and no `channel_closed`; the session stays resumable.
    pub(crate) fn close_socket(&self) {
        self.command(SessionCommand::CloseSocket);
    }

    pub(crate) fn command(&self, command: SessionCommand) {
        let _ = self.commands.send(command);
    }
}

/// Starts the session task; returns its handle and first token.
pub(crate) fn start(shared: &Arc<Shared>, info: SessionInfo) -> (Arc<SessionHandle>, String) {
    let info = Arc::new(info);
    let (commands, command_queue) = mpsc::unbounded_channel();
    let ended = Arc::new(AtomicBool::new(false));
    let live_socket = LiveSocket::default();
    let first_token = random_token();
    let handle = Arc::new(SessionHandle {
        info: info.clone(),
        token: Mutex::new(Token {
            value: first_token.clone(),
            used: false,
        }),
        ended: ended.clone(),
        live_socket: live_socket.clone(),
        commands,
    });
    let (inbound_sender, inbound) = mpsc::channel(256);
    let (outbound_sender, outbound) = mpsc::channel(OUTBOUND_QUEUE);
    let seed = shared.faults().seed;
    let session = Session {
        dice: Dice::new(seed, info.ordinal),
        info,
        shared: shared.clone(),
        ended,
        live_socket,
        commands: command_queue,
        inbound_sender,
        inbound,
        socket: None,
        generation: 0,
        client_id: None,
        outgoing: Outgoing::default(),
        incoming: Incoming::default(),
        handshake: Handshake::NotStarted,
        port: None,
        port_cancel: shared.tasks.cancel.child_token(),
        outbound_sender,
        outbound,
        queue: VecDeque::new(),
        queued_bytes: 0,
        next_emit: Instant::now(),
        held_out: None,
        held_in: None,
        delayed_acks: VecDeque::new(),
        repeating: false,
    };
    shared.tasks.spawn(session.run());
    (handle, first_token)
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 48] = rand::rng().random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    NotStarted,
    Requested { at: Instant },
    Complete,
}

/// What a first transmission is, for the fault that may lose it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `output_stream_data` (retransmitted when lost).
    Data,
    /// An acknowledgement (never retransmitted).
    Ack,
}

/// Why the session ends; becomes the `channel_closed` Output.
type End = String;

struct Session {
    info: Arc<SessionInfo>,
    shared: Arc<Shared>,
    ended: Arc<AtomicBool>,
    live_socket: LiveSocket,
    commands: mpsc::UnboundedReceiver<SessionCommand>,
    inbound_sender: mpsc::Sender<Inbound>,
    inbound: mpsc::Receiver<Inbound>,
    socket: Option<Socket>,
    generation: u64,
    client_id: Option<String>,
    outgoing: Outgoing,
    incoming: Incoming,
    handshake: Handshake,
    port: Option<Port>,
    /// Cancelled when the session ends: the plugin's connections close.
    port_cancel: CancellationToken,
    outbound_sender: mpsc::Sender<Outbound>,
    outbound: mpsc::Receiver<Outbound>,
    /// Plugin output taken from `outbound`, not yet cut into messages.
    queue: VecDeque<Outbound>,
    queued_bytes: usize,
    /// When the pump may read again (the agent's 1 ms sleep when paced).
    next_emit: Instant,
    dice: Dice,
    /// A gateway message held back to be swapped with the next one.
    held_out: Option<(Vec<u8>, Instant)>,
    /// A client message held back to be handled after the next one.
    held_in: Option<(ClientMessage, Instant)>,
    /// Acks waiting out [`Faults::ack_delay`], in order.
    delayed_acks: VecDeque<(Instant, Vec<u8>)>,
    /// A client message is being handled a second time on purpose ([`Faults::repeat`]).
    repeating: bool,
}

impl Session {
    async fn run(mut self) {
        let mut resend = tokio::time::interval(RESEND_INTERVAL);
        resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let far = || Instant::now() + Duration::from_secs(86_400);
        loop {
            let can_emit = self.socket.is_some()
                && self.handshake == Handshake::Complete
                && !self.queue.is_empty()
                && self.outgoing.unacked() < channel::BUFFER_CAPACITY;
            let can_fill = self.queued_bytes < PAYLOAD_SIZE;
            let ack_due = self.delayed_acks.front().map_or_else(far, |(due, _)| *due);
            let held_out_due = self.held_out.as_ref().map_or_else(far, |(_, due)| *due);
            let held_in_due = self.held_in.as_ref().map_or_else(far, |(_, due)| *due);
            let handshake_due = match self.handshake {
                Handshake::Requested { at } => at + HANDSHAKE_TIMEOUT,
                _ => far(),
            };
            let result: Result<(), End> = tokio::select! {
                command = self.commands.recv() => match command {
                    // The gateway forgot the session: it is stopping.
                    None => return,
                    Some(SessionCommand::Attach { websocket, client_id }) => {
                        self.attach(*websocket, client_id).await;
                        Ok(())
                    }
                    Some(SessionCommand::SocketDropped { generation }) => {
                        if generation == self.generation {
                            self.socket = None;
                        }
                        Ok(())
                    }
                    Some(SessionCommand::CloseSocket) => {
                        if let Some(socket) = self.forget_socket() {
                            tracing::debug!(session = %self.info.id, generation = socket.generation, "ssm gateway: closing the WebSocket without channel_closed");
                            self.shared.counters.add_websocket_closed();
                            socket.close("going away").await;
                        }
                        Ok(())
                    }
                    Some(SessionCommand::Terminate { output }) => Err(output),
                },
                Some(inbound) = self.inbound.recv() => self.on_socket_event(inbound).await,
                Some(item) = self.outbound.recv(), if can_fill => {
                    self.enqueue(item);
                    Ok(())
                }
                () = tokio::time::sleep_until(self.next_emit), if can_emit => {
                    self.emit().await;
                    Ok(())
                }
                _ = resend.tick() => self.on_tick().await,
                () = tokio::time::sleep_until(ack_due), if !self.delayed_acks.is_empty() => {
                    self.flush_acks().await;
                    Ok(())
                }
                () = tokio::time::sleep_until(held_out_due), if self.held_out.is_some() => {
                    if let Some((wire, _)) = self.held_out.take() {
                        self.write(wire).await;
                    }
                    Ok(())
                }
                () = tokio::time::sleep_until(held_in_due), if self.held_in.is_some() => {
                    match self.held_in.take() {
                        Some((message, _)) => self.process(message).await,
                        None => Ok(()),
                    }
                }
                () = tokio::time::sleep_until(handshake_due), if matches!(self.handshake, Handshake::Requested { .. }) => {
                    Err(format!(
                        "the agent received no HandshakeResponse within {}s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    ))
                }
            };
            if let Err(output) = result {
                self.end(&output).await;
                return;
            }
        }
    }

    fn faults(&mut self) -> Faults {
        let faults = self.shared.faults();
        self.dice.follow(faults.seed);
        faults
    }

    async fn attach(&mut self, websocket: WebSocket, client_id: Option<String>) {
        if let Some(old) = self.socket.take() {
            old.drop_now();
        }
        self.generation += 1;
        self.client_id = client_id.or(self.client_id.take());
        let socket = Socket::start(
            websocket,
            self.generation,
            self.inbound_sender.clone(),
            self.shared.faults.clone(),
            &self.shared.tasks,
        );
        *lock(&self.live_socket) = Some((self.generation, socket.cancel_token()));
        self.socket = Some(socket);
        self.shared.counters.add_websocket_opened();
        tracing::debug!(session = %self.info.id, generation = self.generation, "ssm gateway: data channel open");
        if self.shared.settings.start_publication {
            let message = ClientMessage::new(
                message_type::START_PUBLICATION,
                0,
                header_flags::CONTROL,
                0,
                Vec::new(),
            );
            self.write(message.encode()).await;
        }
        if self.handshake == Handshake::NotStarted {
            let mut properties = serde_json::Map::new();
            properties.insert(
                "localPortNumber".to_owned(),
                self.info.local_port_number.clone().into(),
            );
            properties.insert(
                "portNumber".to_owned(),
                self.info.port_number.clone().into(),
            );
            properties.insert("type".to_owned(), "LocalPortForwarding".into());
            let request = HandshakeRequest::port(&self.shared.settings.agent_version, properties);
            let payload = serde_json::to_vec(&request).unwrap_or_default();
            self.handshake = Handshake::Requested { at: Instant::now() };
            self.send_sequenced(payload_type::HANDSHAKE_REQUEST, payload)
                .await;
        }
    }

    /// Drops the current socket on purpose ([`Faults::drop_after_bytes`]).
    fn drop_socket(&mut self) {
        if let Some(socket) = self.forget_socket() {
            tracing::debug!(session = %self.info.id, generation = socket.generation, "ssm gateway: dropping the WebSocket");
            socket.drop_now();
            self.shared.counters.add_websocket_dropped();
        }
    }

    /// Takes the current socket out of the session and of the handle's reach.
    fn forget_socket(&mut self) -> Option<Socket> {
        lock(&self.live_socket).take();
        self.socket.take()
    }

    async fn on_socket_event(&mut self, inbound: Inbound) -> Result<(), End> {
        if inbound.generation != self.generation {
            return Ok(());
        }
        match inbound.event {
            SocketEvent::Closed(reason) => {
                tracing::debug!(session = %self.info.id, %reason, "ssm gateway: data channel closed");
                self.forget_socket();
                Ok(())
            }
            SocketEvent::Text(text) => {
                self.shared.counters.add_bad_frame();
                tracing::warn!(session = %self.info.id, text = %text.chars().take(200).collect::<String>(), "ssm gateway: ignoring a text frame after the OpenDataChannelInput");
                Ok(())
            }
            SocketEvent::Frame(Err(error)) => {
                self.shared.counters.add_bad_frame();
                tracing::warn!(session = %self.info.id, %error, "ssm gateway: ignoring a malformed ClientMessage");
                Ok(())
            }
            SocketEvent::Frame(Ok(message)) => self.receive(message).await,
        }
    }

    /// A client message, through the receiving faults: lost, held back for reordering, or handled twice.
    async fn receive(&mut self, message: ClientMessage) -> Result<(), End> {
        let faults = self.faults();
        let loss = match message.message_type.as_str() {
            message_type::INPUT_STREAM_DATA => faults.loss,
            message_type::ACKNOWLEDGE => faults.ack_loss,
            _ => 0.0,
        };
        let lost = self.dice.roll(Direction::FromClient, loss);
        let nth = message.message_type == message_type::INPUT_STREAM_DATA
            && self.dice.nth(Direction::FromClient, faults.drop_every);
        if lost || nth {
            self.shared.counters.add_message_lost();
            return Ok(());
        }
        if self.held_in.is_none() && self.dice.roll(Direction::FromClient, faults.reorder) {
            self.shared.counters.add_message_reordered();
            self.held_in = Some((message, Instant::now() + REORDER_HOLD));
            return Ok(());
        }
        if self.dice.roll(Direction::FromClient, faults.repeat) {
            self.shared.counters.add_message_repeated();
            self.process(message.clone()).await?;
            // The second copy is the repetition: an ack in it is no re-ack of the client's.
            self.repeating = true;
            let repeated = self.process(message).await;
            self.repeating = false;
            repeated?;
        } else {
            self.process(message).await?;
        }
        if let Some((held, _)) = self.held_in.take() {
            self.process(held).await?;
        }
        Ok(())
    }

    async fn process(&mut self, message: ClientMessage) -> Result<(), End> {
        match message.message_type.as_str() {
            message_type::INPUT_STREAM_DATA => self.on_input(message).await,
            message_type::ACKNOWLEDGE => {
                match serde_json::from_slice::<AcknowledgeContent>(&message.payload) {
                    Ok(content) => {
                        let fresh = self
                            .outgoing
                            .acknowledge(content.sequence_number, std::time::Instant::now());
                        if !fresh && !self.repeating {
                            self.shared.counters.add_re_ack();
                        }
                    }
                    Err(error) => {
                        self.shared.counters.add_bad_frame();
                        tracing::warn!(session = %self.info.id, %error, "ssm gateway: ignoring an acknowledge whose payload is not AcknowledgeContent");
                    }
                }
                Ok(())
            }
            other => {
                tracing::debug!(session = %self.info.id, message_type = other, "ssm gateway: ignoring a client message of this type");
                Ok(())
            }
        }
    }

    async fn on_input(&mut self, message: ClientMessage) -> Result<(), End> {
        if !message.digest_matches() {
            // Dropped unacked, so the client sends it again.
            self.shared.counters.add_digest_mismatch();
            tracing::warn!(session = %self.info.id, sequence = message.sequence_number, "ssm gateway: input_stream_data with a wrong digest dropped");
            return Ok(());
        }
        if message.payload_type == payload_type::OUTPUT {
            self.count_data_bytes(message.payload.len());
        }
        let result = match self.incoming.position(message.sequence_number) {
            Position::Behind => {
                self.shared.counters.add_duplicate();
                self.send_ack(&message).await;
                Ok(())
            }
            Position::Ahead => {
                if self.incoming.has_early(message.sequence_number) {
                    self.shared.counters.add_duplicate();
                }
                let ack = channel::acknowledgement(&message).encode();
                if self.incoming.keep(message) {
                    self.queue_ack(ack).await;
                }
                Ok(())
            }
            Position::Expected => {
                self.send_ack(&message).await;
                self.incoming.advance();
                self.deliver(message).await?;
                while let Some(early) = self.incoming.take_expected() {
                    self.incoming.advance();
                    self.deliver(early).await?;
                }
                Ok(())
            }
        };
        self.drop_if_over_budget();
        result
    }

    /// One in-order `input_stream_data`.
    async fn deliver(&mut self, message: ClientMessage) -> Result<(), End> {
        match message.payload_type {
            payload_type::HANDSHAKE_RESPONSE => self.on_handshake_response(&message.payload).await,
            payload_type::ENC_CHALLENGE_RESPONSE => Ok(()),
            _ if self.handshake != Handshake::Complete => {
                // The agent acks and discards stream data until it has sent HandshakeComplete.
                tracing::debug!(session = %self.info.id, sequence = message.sequence_number, "ssm gateway: handshake still in progress, ignoring stream data");
                Ok(())
            }
            payload_type::OUTPUT => {
                self.shared
                    .counters
                    .add_bytes_to_agent(message.payload.len());
                let Some(port) = self.port.as_mut() else {
                    return Ok(());
                };
                port.on_client_bytes(&message.payload).map_err(|error| {
                    self.shared.counters.add_bad_frame();
                    format!("the smux session failed: {error}")
                })
            }
            payload_type::FLAG => {
                let Some(value) = message.payload.get(..4) else {
                    self.shared.counters.add_bad_frame();
                    return Ok(());
                };
                match u32::from_be_bytes([value[0], value[1], value[2], value[3]]) {
                    flag::TERMINATE_SESSION => {
                        Err(format!("Exiting session with sessionId: {}.", self.info.id))
                    }
                    flag::DISCONNECT_TO_PORT => {
                        if let Some(port) = self.port.as_mut() {
                            port.on_disconnect_to_port();
                        }
                        Ok(())
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    async fn on_handshake_response(&mut self, payload: &[u8]) -> Result<(), End> {
        let Handshake::Requested { at } = self.handshake else {
            return Ok(());
        };
        let response: HandshakeResponse = serde_json::from_slice(payload).map_err(|error| {
            format!("handshake failed: the HandshakeResponse is not valid: {error}")
        })?;
        if response.client_version.trim().is_empty() {
            return Err("handshake failed: the HandshakeResponse has no ClientVersion".to_owned());
        }
        let actions = response.processed_client_actions.unwrap_or_default();
        if let Some(failed) = actions
            .iter()
            .find(|action| action.action_status != payloads::ACTION_SUCCESS)
        {
            return Err(format!(
                "handshake failed: the client reports action {} with status {}: {} {:?}",
                failed.action_type,
                failed.action_status,
                failed.error.as_deref().unwrap_or(""),
                response.errors.unwrap_or_default()
            ));
        }
        if !actions
            .iter()
            .any(|action| action.action_type == "SessionType")
        {
            return Err(
                "handshake failed: the HandshakeResponse does not report the SessionType action"
                    .to_owned(),
            );
        }
        let port = Port::for_client(
            &response.client_version,
            port::Context {
                route: self.info.route,
                outbound: self.outbound_sender.clone(),
                cancel: self.port_cancel.clone(),
                tasks: self.shared.tasks.clone(),
                counters: self.shared.counters.clone(),
            },
        );
        tracing::debug!(session = %self.info.id, client_version = %response.client_version, mux = port.is_mux(), "ssm gateway: handshake complete");
        self.port = Some(port);
        let complete = payloads::HandshakeComplete {
            handshake_time_to_complete: at.elapsed().as_nanos() as u64,
            customer_message: String::new(),
        };
        let payload = serde_json::to_vec(&complete).unwrap_or_default();
        self.send_sequenced(payload_type::HANDSHAKE_COMPLETE, payload)
            .await;
        self.handshake = Handshake::Complete;
        Ok(())
    }

    fn enqueue(&mut self, item: Outbound) {
        if let Outbound::Bytes(bytes) = &item {
            self.queued_bytes += bytes.len();
        }
        self.queue.push_back(item);
    }

    /// The agent's pump: one read of at most 1 KiB of the plugin's output becomes one Output message (a flag
    /// becomes a Flag message of its own).
    async fn emit(&mut self) {
        while self.queued_bytes < PAYLOAD_SIZE {
            match self.outbound.try_recv() {
                Ok(item) => self.enqueue(item),
                Err(_) => break,
            }
        }
        let (kind, payload) = match self.queue.pop_front() {
            None => return,
            Some(Outbound::Flag(value)) => (payload_type::FLAG, value.to_be_bytes().to_vec()),
            Some(Outbound::Bytes(first)) => {
                let mut payload = first;
                if payload.len() > PAYLOAD_SIZE {
                    let rest = payload.split_off(PAYLOAD_SIZE);
                    self.queue.push_front(Outbound::Bytes(rest));
                }
                while payload.len() < PAYLOAD_SIZE {
                    let Some(Outbound::Bytes(next)) = self.queue.front_mut() else {
                        break;
                    };
                    let wanted = PAYLOAD_SIZE - payload.len();
                    if next.len() <= wanted {
                        payload.append(next);
                        self.queue.pop_front();
                    } else {
                        payload.extend(next.drain(..wanted));
                    }
                }
                self.queued_bytes -= payload.len();
                (payload_type::OUTPUT, payload)
            }
        };
        if kind == payload_type::OUTPUT {
            self.shared.counters.add_bytes_to_client(payload.len());
            self.count_data_bytes(payload.len());
        }
        self.send_sequenced(kind, payload).await;
        if self.faults().pace {
            self.next_emit = Instant::now() + PACE_INTERVAL;
        }
        self.drop_if_over_budget();
    }

    async fn on_tick(&mut self) -> Result<(), End> {
        if self.socket.is_some() {
            match self.outgoing.resend(std::time::Instant::now()) {
                Resend::Nothing => {}
                Resend::Send(wire) => {
                    self.shared.counters.add_retransmission();
                    self.shared.counters.note_resends_after_delivery(u64::from(
                        self.outgoing.most_resends_after_delivery,
                    ));
                    self.write(wire).await;
                }
                Resend::GiveUp(sequence) => {
                    return Err(format!(
                        "the client never acknowledged output_stream_data {sequence} after {} resends",
                        channel::RESEND_MAX_ATTEMPTS
                    ));
                }
            }
        }
        match self.port.as_mut() {
            Some(port) => port.tick(std::time::Instant::now()),
            None => Ok(()),
        }
    }

    async fn send_sequenced(&mut self, kind: u32, payload: Vec<u8>) {
        let wire = self.outgoing.push(kind, payload, std::time::Instant::now());
        self.transmit(wire, Kind::Data).await;
    }

    async fn send_ack(&mut self, message: &ClientMessage) {
        let ack = channel::acknowledgement(message).encode();
        self.queue_ack(ack).await;
    }

    async fn queue_ack(&mut self, ack: Vec<u8>) {
        let delay = self.faults().ack_delay;
        if delay.is_zero() && self.delayed_acks.is_empty() {
            self.transmit(ack, Kind::Ack).await;
        } else {
            self.delayed_acks.push_back((Instant::now() + delay, ack));
        }
    }

    async fn flush_acks(&mut self) {
        let now = Instant::now();
        while self
            .delayed_acks
            .front()
            .is_some_and(|(due, _)| *due <= now)
        {
            if let Some((_, ack)) = self.delayed_acks.pop_front() {
                self.transmit(ack, Kind::Ack).await;
            }
        }
    }

    /// A first transmission, through the sending faults: lost, held back for reordering, or sent twice.
    async fn transmit(&mut self, wire: Vec<u8>, kind: Kind) {
        let faults = self.faults();
        let loss = match kind {
            Kind::Data => faults.loss,
            Kind::Ack => faults.ack_loss,
        };
        let lost = self.dice.roll(Direction::ToClient, loss);
        let nth =
            matches!(kind, Kind::Data) && self.dice.nth(Direction::ToClient, faults.drop_every);
        if lost || nth {
            self.shared.counters.add_message_lost();
            if matches!(kind, Kind::Data) {
                self.outgoing.lost_first();
            }
            return;
        }
        if self.held_out.is_none() && self.dice.roll(Direction::ToClient, faults.reorder) {
            self.shared.counters.add_message_reordered();
            self.held_out = Some((wire, Instant::now() + REORDER_HOLD));
            return;
        }
        if self.dice.roll(Direction::ToClient, faults.repeat) {
            self.shared.counters.add_message_repeated();
            if matches!(kind, Kind::Data) {
                self.shared.counters.add_output_repeated();
            }
            self.write(wire.clone()).await;
        }
        self.write(wire).await;
        if let Some((held, _)) = self.held_out.take() {
            self.write(held).await;
        }
    }

    async fn write(&mut self, wire: Vec<u8>) {
        if let Some(socket) = &self.socket
            && !socket.send(wire).await
        {
            self.forget_socket();
        }
    }

    fn count_data_bytes(&mut self, bytes: usize) {
        if let Some(socket) = self.socket.as_mut() {
            socket.data_bytes += bytes as u64;
        }
    }

    fn drop_if_over_budget(&mut self) {
        let Some(limit) = self.faults().drop_after_bytes else {
            return;
        };
        if self
            .socket
            .as_ref()
            .is_some_and(|socket| socket.data_bytes >= limit)
        {
            self.drop_socket();
        }
    }

    /// The session's end: `channel_closed`, a Close frame, and every dialled connection closed.
    async fn end(&mut self, output: &str) {
        self.ended.store(true, Ordering::SeqCst);
        self.shared.counters.add_session_terminated();
        self.port_cancel.cancel();
        tracing::debug!(session = %self.info.id, target = %self.info.target, %output, "ssm gateway: session ended");
        let Some(socket) = self.forget_socket() else {
            return;
        };
        let content = payloads::ChannelClosed {
            message_id: uuid::Uuid::new_v4().to_string(),
            created_date: payloads::rfc3339(std::time::SystemTime::now()),
            destination_id: self.client_id.clone().unwrap_or_default(),
            session_id: self.info.id.clone(),
            message_type: message_type::CHANNEL_CLOSED.to_owned(),
            schema_version: 1,
            output: output.to_owned(),
        };
        let message = ClientMessage::new(
            message_type::CHANNEL_CLOSED,
            0,
            header_flags::CONTROL,
            0,
            serde_json::to_vec(&content).unwrap_or_default(),
        );
        let wire = if self.shared.settings.short_channel_closed {
            message.encode_short()
        } else {
            message.encode()
        };
        socket.send(wire).await;
        socket.close(output).await;
    }
}
