//! The client's reliability layer for one session (`ssm/PROTOCOL.md` §3), without I/O. It outlives every
//! WebSocket of the session: a resumed socket carries on with the same numbers.
//!
//! [`Outgoing`] numbers `input_stream_data` from 0 and keeps each message until its acknowledgement, in a
//! bounded window (the producer waits for room; nothing is ever evicted). Its retransmission timeout follows
//! the plugin's estimator (§3), with Karn's rule (a resent message's ack is no sample), and unlike the plugin
//! and the agent, which resend only their oldest message per 100 ms tick, *every* expired message is resent:
//! after a loss burst or a dead socket the far side otherwise waits one tick per lost message.
//! [`Outgoing::all`] gives everything unacknowledged at once, for the first moments of a resumed socket.
//!
//! [`Incoming`] delivers `output_stream_data` in order, keeps early messages (up to a cap) and says which to
//! acknowledge: every message it has, including duplicates, since a lost ack would otherwise make the agent
//! resend that message for the rest of the session.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::message::{self, Message, header_flags, message_type};

/// The most messages in flight (sent, not yet acknowledged).
pub const WINDOW_MESSAGES: usize = 4096;
/// The most payload bytes in flight: as much as the agent's smux receive buffer (§5).
pub const WINDOW_BYTES: usize = 4 << 20;
/// Early messages kept while a gap fills (the plugin's incoming capacity).
pub const EARLY_CAPACITY: usize = 10_000;
/// How long a message may go unacknowledged, resent all along, before the session is given up (the plugin's
/// 3000 resends at 100 ms).
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(300);

const INITIAL_ROUND_TRIP: f64 = 0.100;
const INITIAL_TIMEOUT: Duration = Duration::from_millis(200);
const ALPHA: f64 = 1.0 / 8.0;
const BETA: f64 = 1.0 / 4.0;
const CLOCK_GRANULARITY: f64 = 0.010;
const MAX_TIMEOUT: f64 = 1.0;

/// The client's sent, unacknowledged messages.
#[derive(Debug)]
pub struct Outgoing {
    next_sequence: i64,
    /// In sequence order.
    unacked: VecDeque<Unacked>,
    unacked_bytes: usize,
    round_trip: f64,
    round_trip_variation: f64,
    timeout: Duration,
}

#[derive(Debug)]
struct Unacked {
    sequence: i64,
    wire: Bytes,
    payload_length: usize,
    first_sent: Instant,
    last_sent: Instant,
    resends: u32,
}

/// A message went unacknowledged for [`GIVE_UP_AFTER`] though it was resent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaveUp(pub i64);

impl Default for Outgoing {
    fn default() -> Self {
        Self {
            next_sequence: 0,
            unacked: VecDeque::new(),
            unacked_bytes: 0,
            round_trip: INITIAL_ROUND_TRIP,
            round_trip_variation: 0.0,
            timeout: INITIAL_TIMEOUT,
        }
    }
}

impl Outgoing {
    /// Whether the window has room for another message.
    pub fn has_room(&self) -> bool {
        self.unacked.len() < WINDOW_MESSAGES && self.unacked_bytes < WINDOW_BYTES
    }

    /// Numbers and keeps the next `input_stream_data`; its bytes for the first transmission.
    pub fn push(&mut self, payload_type: u32, payload: &[u8], now: Instant) -> Bytes {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let wire = message::encode(
            message_type::INPUT_STREAM_DATA,
            sequence,
            header_flags::DATA,
            payload_type,
            payload,
        );
        self.unacked.push_back(Unacked {
            sequence,
            wire: wire.clone(),
            payload_length: payload.len(),
            first_sent: now,
            last_sent: now,
            resends: 0,
        });
        self.unacked_bytes += payload.len();
        wire
    }

    /// Retires `sequence`; false for an unknown or already acknowledged one.
    pub fn acknowledge(&mut self, sequence: i64, now: Instant) -> bool {
        let Ok(index) = self
            .unacked
            .binary_search_by_key(&sequence, |message| message.sequence)
        else {
            return false;
        };
        let Some(acked) = self.unacked.remove(index) else {
            return false;
        };
        self.unacked_bytes -= acked.payload_length;
        if acked.resends == 0 {
            let sample = now.duration_since(acked.last_sent).as_secs_f64();
            self.round_trip_variation =
                (1.0 - BETA) * self.round_trip_variation + BETA * (self.round_trip - sample).abs();
            self.round_trip = (1.0 - ALPHA) * self.round_trip + ALPHA * sample;
            let timeout = (self.round_trip
                + CLOCK_GRANULARITY.max(4.0 * self.round_trip_variation))
            .min(MAX_TIMEOUT);
            self.timeout = Duration::from_secs_f64(timeout);
        }
        true
    }

    /// Every message whose timeout has passed since it was last sent, in order, marked sent again now.
    pub fn expired(&mut self, now: Instant) -> Result<Vec<Bytes>, GaveUp> {
        let timeout = self.timeout;
        let mut due = Vec::new();
        for message in &mut self.unacked {
            if now.duration_since(message.last_sent) <= timeout {
                continue;
            }
            if message.resends > 0 && now.duration_since(message.first_sent) > GIVE_UP_AFTER {
                return Err(GaveUp(message.sequence));
            }
            message.resends += 1;
            message.last_sent = now;
            due.push(message.wire.clone());
        }
        Ok(due)
    }

    /// Every unacknowledged message, in order, marked sent now: what a resumed socket sends first.
    pub fn all(&mut self, now: Instant) -> Vec<Bytes> {
        self.unacked
            .iter_mut()
            .map(|message| {
                message.resends += 1;
                message.last_sent = now;
                message.wire.clone()
            })
            .collect()
    }

    /// Messages waiting for their ack.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The current retransmission timeout.
    #[cfg(test)]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// What to do with an arriving `output_stream_data`.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Acknowledge it; these messages are now due, in order (it and any early ones it unblocked).
    Deliver(Vec<Message>),
    /// Acknowledge it; it is kept until the gap before it fills.
    Kept,
    /// Acknowledge it again: it was delivered already (or is kept already).
    Duplicate,
    /// Do not acknowledge it: the early buffer is full, so the agent must send it again later.
    Refused,
}

/// The client's view of the agent's `output_stream_data`.
#[derive(Debug, Default)]
pub struct Incoming {
    expected: i64,
    early: BTreeMap<i64, Message>,
}

impl Incoming {
    /// Sorts an arriving message.
    pub fn arrive(&mut self, message: Message) -> Arrival {
        let sequence = message.sequence_number;
        match sequence.cmp(&self.expected) {
            std::cmp::Ordering::Less => Arrival::Duplicate,
            std::cmp::Ordering::Greater => {
                if self.early.contains_key(&sequence) {
                    Arrival::Duplicate
                } else if self.early.len() >= EARLY_CAPACITY {
                    Arrival::Refused
                } else {
                    self.early.insert(sequence, message);
                    Arrival::Kept
                }
            }
            std::cmp::Ordering::Equal => {
                self.expected += 1;
                let mut due = vec![message];
                while let Some(next) = self.early.remove(&self.expected) {
                    self.expected += 1;
                    due.push(next);
                }
                Arrival::Deliver(due)
            }
        }
    }
}

/// The acknowledgement of `message` (Seq 0, Flags 3, PayloadType 0, AcknowledgeContent JSON).
pub fn acknowledgement(message: &Message) -> Bytes {
    let content = super::handshake::AcknowledgeContent {
        message_type: message.message_type.clone(),
        message_id: message.message_id.hyphenated().to_string(),
        sequence_number: message.sequence_number,
        is_sequential: true,
    };
    let payload = serde_json::to_vec(&content).unwrap_or_default();
    message::encode(
        message_type::ACKNOWLEDGE,
        0,
        header_flags::CONTROL,
        0,
        &payload,
    )
}

#[cfg(test)]
mod tests;
