//! One resumable connection's state and the loop that runs it over one transport at a time.
//!
//! A [`Link`] sits between the application's byte stream and a transport. Bytes from the application are kept
//! until the peer acknowledges them, so a transport that breaks loses nothing: the next one starts where the
//! peer says it stopped. Delivery to the application advances `received` one completed write at a time, so
//! a transport dropped in the middle of a frame never delivers a byte twice or skips one.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadHalf, WriteHalf,
};
use tokio::sync::Notify;

use super::Transport;
use super::wire::{Frame, MAX_PAYLOAD, WELCOME_LEN, Welcome};

/// Unacknowledged bytes a side may have in flight; the application's writes wait beyond it.
pub(crate) const WINDOW: u64 = 4 * 1024 * 1024;
/// Acknowledge at once after this many bytes.
const ACK_EVERY: u64 = 128 * 1024;
/// Otherwise acknowledge this long after the first unacknowledged byte.
const ACK_DELAY: Duration = Duration::from_millis(5);
/// How often the clock is looked at for the policy's limits and pings.
const TICK: Duration = Duration::from_millis(500);

/// When a side gives up on a transport.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Send a ping this often (the client, which can dial a new transport; the agent answers).
    pub ping: Option<Duration>,
    /// Nothing heard from the peer for this long, while we were reading, means the transport is stuck.
    pub stall: Option<Duration>,
    /// The application ended both ways and our end was not acknowledged for this long: the peer is gone.
    pub linger: Duration,
}

/// How one transport's turn ended.
pub(crate) enum Detach {
    /// Both directions ended and were acknowledged: the connection is over.
    Done,
    /// The transport failed; another may carry on.
    Broken(String),
    /// The transport delivered damaged or incomplete bytes, or stopped moving: another may carry on, but not
    /// over whatever carried this one (a session whose multiplexer lost bytes is stuck for every stream).
    Damaged(String),
    /// The connection cannot go on (the peer broke the protocol, or left for good).
    Failed(String),
    /// Another transport arrived for this connection.
    Replaced(Transport, u64),
}

/// What both directions share. Held only between awaits, never across one.
#[derive(Debug)]
struct State {
    /// Sent and not yet acknowledged, in order, each with its offset.
    unacked: VecDeque<(u64, Bytes)>,
    /// The peer has everything before this.
    acked: u64,
    /// The offset of the next byte sent (the fin counts as one).
    next: u64,
    /// The offset of our fin, once the application ended its writing.
    fin: Option<u64>,
    /// When our fin was first sent.
    fin_at: Option<Instant>,
    /// The next offset expected from the peer.
    received: u64,
    /// The last `received` we acknowledged.
    ack_sent: u64,
    /// The peer's fin arrived (it is counted in `received`).
    peer_fin: bool,
    /// The application stopped reading; what arrives is acknowledged and dropped.
    app_gone: bool,
    /// When the peer's last frame arrived (or the transport was attached).
    heard_at: Instant,
    /// The reader is waiting for the application to take bytes: not hearing the peer is then our doing.
    delivering: bool,
    /// A ping arrived; the writer owes a pong.
    pong_owed: bool,
}

impl State {
    fn done(&self) -> bool {
        self.fin.is_some()
            && self.acked == self.next
            && self.peer_fin
            && self.ack_sent == self.received
    }
}

/// A resumable connection carrying the application stream `A`.
pub(crate) struct Link<A> {
    app_read: ReadHalf<A>,
    app_write: WriteHalf<A>,
    state: Mutex<State>,
    /// The reader's news for the writer: an acknowledgement arrived, or one is owed.
    news: Notify,
    policy: Policy,
    /// The writer's buffer for the application's bytes, kept across transports.
    chunk: Vec<u8>,
}

impl<A: AsyncRead + AsyncWrite + Send + 'static> Link<A> {
    pub(crate) fn new(app: A, policy: Policy) -> Self {
        let (app_read, app_write) = tokio::io::split(app);
        Self {
            app_read,
            app_write,
            state: Mutex::new(State {
                unacked: VecDeque::new(),
                acked: 0,
                next: 0,
                fin: None,
                fin_at: None,
                received: 0,
                ack_sent: 0,
                peer_fin: false,
                app_gone: false,
                heard_at: Instant::now(),
                delivering: false,
                pong_owed: false,
            }),
            news: Notify::new(),
            policy,
            chunk: vec![0; MAX_PAYLOAD],
        }
    }

    /// The next offset expected from the peer: what a hello or welcome reports.
    pub(crate) fn received(&self) -> u64 {
        self.lock().received
    }

    /// Whether everything of ours reached the peer and everything of the peer's reached us, acknowledgements
    /// aside: a peer that forgot the connection after that lost nothing.
    pub(crate) fn complete(&self) -> bool {
        let state = self.lock();
        state.peer_fin && state.fin.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("the link's state is never left half-changed")
    }

    /// Carries the connection over `transport` until it ends, breaks, or `replacement` brings another.
    /// `peer_received` is what the peer has of our bytes; `welcome_pending` says the transport still starts
    /// with the agent's welcome (a new connection whose client did not wait for it).
    pub(crate) async fn attach(
        &mut self,
        transport: Transport,
        peer_received: u64,
        welcome_pending: bool,
        replacement: Option<&mut tokio::sync::mpsc::Receiver<(Transport, u64)>>,
    ) -> Detach {
        if let Err(reason) = self.accept_peer_received(peer_received) {
            return Detach::Failed(reason);
        }
        let (mut transport_read, mut transport_write) = tokio::io::split(transport);
        let Link {
            app_read,
            app_write,
            state,
            news,
            policy,
            chunk,
        } = self;
        let reading = read_side(&mut transport_read, app_write, state, news, welcome_pending);
        let writing = write_side(&mut transport_write, app_read, state, news, *policy, chunk);
        let watching = watch(state, *policy);
        let replaced = async {
            match replacement {
                Some(replacement) => match replacement.recv().await {
                    Some((transport, received)) => Detach::Replaced(transport, received),
                    None => std::future::pending().await,
                },
                None => std::future::pending().await,
            }
        };
        let detach = tokio::select! {
            detach = reading => detach,
            detach = writing => detach,
            detach = watching => detach,
            detach = replaced => detach,
        };
        if matches!(detach, Detach::Done) {
            // Our last acknowledgement is written; a clean close lets the peer read it before the end.
            let _ = tokio::time::timeout(Duration::from_secs(5), transport_write.shutdown()).await;
        }
        detach
    }

    /// Drops what the peer says it has; it can never have less than it acknowledged, nor more than we sent.
    fn accept_peer_received(&self, peer_received: u64) -> Result<(), String> {
        let mut state = self.lock();
        if peer_received < state.acked || peer_received > state.next {
            return Err(format!(
                "the peer resumed at byte {peer_received}, outside the {}..={} it could have",
                state.acked, state.next
            ));
        }
        acknowledge(&mut state, peer_received);
        state.heard_at = Instant::now();
        state.delivering = false;
        state.pong_owed = false;
        Ok(())
    }
}

/// Records that the peer has everything before `received`.
fn acknowledge(state: &mut State, received: u64) {
    if received <= state.acked {
        return;
    }
    state.acked = received;
    while let Some((offset, payload)) = state.unacked.front_mut() {
        let end = *offset + payload.len() as u64;
        if end <= received {
            state.unacked.pop_front();
        } else {
            if *offset < received {
                let skip = (received - *offset) as usize;
                *payload = payload.slice(skip..);
                *offset = received;
            }
            break;
        }
    }
}

/// Reads the transport: data goes to the application in order, acknowledgements free the window.
async fn read_side<A: AsyncWrite>(
    transport: &mut ReadHalf<Transport>,
    app: &mut WriteHalf<A>,
    state: &Mutex<State>,
    news: &Notify,
    welcome_pending: bool,
) -> Detach {
    let lock = || {
        state
            .lock()
            .expect("the link's state is never left half-changed")
    };
    if welcome_pending {
        let mut welcome = [0; WELCOME_LEN];
        if let Err(error) = transport.read_exact(&mut welcome).await {
            return Detach::Broken(format!("reading the agent's welcome: {error}"));
        }
        match Welcome::decode(&welcome) {
            Ok(Welcome::Accepted { received: 0 }) => {}
            Ok(other) => {
                return Detach::Failed(format!(
                    "the agent answered a new connection with {other:?}"
                ));
            }
            Err(error) => return Detach::Failed(error.to_string()),
        }
    }
    let mut buffer = BytesMut::with_capacity(2 * MAX_PAYLOAD);
    loop {
        loop {
            let frame = match Frame::decode(&mut buffer) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return Detach::Damaged(error.to_string()),
            };
            lock().heard_at = Instant::now();
            match frame {
                Frame::Data { offset, payload } => {
                    let (received, peer_fin, app_gone) = {
                        let state = lock();
                        (state.received, state.peer_fin, state.app_gone)
                    };
                    // A checksummed frame can still claim any offset: one that runs past the end of any
                    // stream is the peer breaking the protocol, not an overflow here.
                    let Some(end) = offset.checked_add(payload.len() as u64) else {
                        return Detach::Failed(format!(
                            "the peer sent data at offset {offset}, past the end of any stream"
                        ));
                    };
                    if peer_fin && end > received {
                        return Detach::Failed("the peer sent data after its end".into());
                    }
                    if end <= received {
                        continue;
                    }
                    if offset > received {
                        return Detach::Damaged(format!(
                            "{} bytes went missing on the transport",
                            offset - received
                        ));
                    }
                    let mut rest = payload.slice((received - offset) as usize..);
                    lock().delivering = true;
                    while !rest.is_empty() {
                        let written = if app_gone {
                            rest.len()
                        } else {
                            match app.write(&rest).await {
                                Ok(0) | Err(_) => {
                                    lock().app_gone = true;
                                    rest.len()
                                }
                                Ok(written) => written,
                            }
                        };
                        lock().received += written as u64;
                        rest = rest.slice(written..);
                    }
                    {
                        let mut state = lock();
                        state.delivering = false;
                        state.heard_at = Instant::now();
                    }
                    news.notify_one();
                }
                Frame::Ack { received } => {
                    let mut state = lock();
                    if received > state.next {
                        return Detach::Failed(format!(
                            "the peer acknowledged byte {received}, beyond the {} sent",
                            state.next
                        ));
                    }
                    acknowledge(&mut state, received);
                    drop(state);
                    news.notify_one();
                }
                Frame::Ping { sent } | Frame::Pong { sent } => {
                    let mut state = lock();
                    if sent != state.received {
                        return Detach::Damaged(format!(
                            "the peer sent {sent} bytes and {} arrived",
                            state.received
                        ));
                    }
                    if matches!(frame, Frame::Ping { .. }) {
                        state.pong_owed = true;
                        drop(state);
                        news.notify_one();
                    }
                }
                Frame::Fin { offset } => {
                    let received = lock().received;
                    if offset < received {
                        continue;
                    }
                    if offset > received {
                        return Detach::Damaged(format!(
                            "{} bytes went missing before the peer's end",
                            offset - received
                        ));
                    }
                    let _ = app.shutdown().await;
                    {
                        let mut state = lock();
                        state.received += 1;
                        state.peer_fin = true;
                    }
                    news.notify_one();
                }
            }
        }
        match transport.read_buf(&mut buffer).await {
            Ok(0) if lock().done() => return Detach::Done,
            // The agent closes a transport that brought it damaged bytes: what carried them is suspect.
            Ok(0) => return Detach::Damaged("the transport closed".into()),
            Ok(_) => {}
            Err(error) => return Detach::Broken(format!("reading the transport: {error}")),
        }
    }
}

/// Watches the clock for the policy's limits. Apart from the reader and the writer, because either can wait
/// on the transport for as long as it is stuck: a writer whose transport takes nothing more (a session that
/// lost its socket without noticing) must not stop the check that finds it.
async fn watch(state: &Mutex<State>, policy: Policy) -> Detach {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let state = state
            .lock()
            .expect("the link's state is never left half-changed");
        if let Some(stall) = policy.stall
            && !state.delivering
            && state.heard_at.elapsed() > stall
        {
            return Detach::Damaged(format!("nothing heard from the peer for {stall:?}"));
        }
        if state.fin.is_some()
            && !state.done()
            && state.fin_at.is_some_and(|at| at.elapsed() > policy.linger)
        {
            return Detach::Failed(format!(
                "the peer did not finish the connection within {:?} of its end",
                policy.linger
            ));
        }
    }
}

/// Writes the transport: first what the peer has not got, then the application's bytes, acknowledgements and
/// the end, until the connection is done.
async fn write_side<A: AsyncRead>(
    transport: &mut WriteHalf<Transport>,
    app: &mut ReadHalf<A>,
    state: &Mutex<State>,
    news: &Notify,
    policy: Policy,
    chunk: &mut [u8],
) -> Detach {
    let lock = || {
        state
            .lock()
            .expect("the link's state is never left half-changed")
    };
    let mut out = BytesMut::new();
    {
        let mut state = lock();
        for (offset, payload) in &state.unacked {
            Frame::Data {
                offset: *offset,
                payload: payload.clone(),
            }
            .encode(&mut out);
        }
        if let Some(offset) = state.fin
            && state.acked <= offset
        {
            Frame::Fin { offset }.encode(&mut out);
        }
        // The hello or welcome that started this transport told the peer what we have received (nothing can
        // arrive between it and here), which is all an acknowledgement would: no frame for it, one message less
        // per connection on a transport where every message costs a round of the service's own acknowledgements.
        state.ack_sent = state.received;
    }
    if !out.is_empty()
        && let Err(error) = transport.write_all(&out).await
    {
        return Detach::Broken(format!("writing the transport: {error}"));
    }
    let mut ack_due: Option<tokio::time::Instant> = None;
    let mut pinged_at = Instant::now();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        out.clear();
        let window_open = {
            let state = lock();
            state.fin.is_none() && state.next - state.acked < WINDOW
        };
        tokio::select! {
            biased;
            () = news.notified() => {}
            () = async { tokio::time::sleep_until(ack_due.expect("guarded")).await }, if ack_due.is_some() => {
                ack_due = None;
                let mut state = lock();
                Frame::Ack { received: state.received }.encode(&mut out);
                state.ack_sent = state.received;
            }
            _ = tick.tick() => {
                let mut state = lock();
                if let Some(interval) = policy.ping
                    && pinged_at.elapsed() >= interval
                {
                    pinged_at = Instant::now();
                    // Everything owed goes first, so the count the ping carries is all before it.
                    Frame::Ack { received: state.received }.encode(&mut out);
                    state.ack_sent = state.received;
                    Frame::Ping { sent: state.next }.encode(&mut out);
                }
            }
            read = app.read(chunk), if window_open => {
                let mut state = lock();
                match read {
                    Ok(length) if length > 0 => {
                        let payload = Bytes::copy_from_slice(&chunk[..length]);
                        let offset = state.next;
                        state.next += length as u64;
                        Frame::Data { offset, payload: payload.clone() }.encode(&mut out);
                        state.unacked.push_back((offset, payload));
                    }
                    // The application ended its writing (or failed, which ends it all the same).
                    _ => {
                        let offset = state.next;
                        state.fin = Some(offset);
                        state.fin_at = Some(Instant::now());
                        state.next += 1;
                        Frame::Fin { offset }.encode(&mut out);
                    }
                }
            }
        }
        {
            let mut state = lock();
            if state.pong_owed {
                state.pong_owed = false;
                Frame::Pong { sent: state.next }.encode(&mut out);
            }
            let owed = state.received - state.ack_sent;
            if owed > 0 {
                // A peer that ended waits for our acknowledgement to finish; others can wait a moment, unless
                // something is being written anyway: then it rides along in the same transport write, and an
                // exchange of requests and answers needs no message of its own for acknowledgements.
                if owed >= ACK_EVERY || state.peer_fin || state.fin.is_some() || !out.is_empty() {
                    Frame::Ack {
                        received: state.received,
                    }
                    .encode(&mut out);
                    state.ack_sent = state.received;
                    ack_due = None;
                } else if ack_due.is_none() {
                    ack_due = Some(tokio::time::Instant::now() + ACK_DELAY);
                }
            }
        }
        if !out.is_empty()
            && let Err(error) = transport.write_all(&out).await
        {
            return Detach::Broken(format!("writing the transport: {error}"));
        }
        if lock().done() {
            return Detach::Done;
        }
    }
}
