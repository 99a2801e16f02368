//! The agent's reliability layer for one session (`ssm/PROTOCOL.md` §3), without I/O: [`Outgoing`] numbers
//! `output_stream_data` from 0, keeps every message until its ack and picks what the resend scheduler sends
//! (only the oldest unacked message, once its RTO expired, checked every 100 ms; RTO from the agent's RTT
//! estimator); [`Incoming`] tells in-order, early and duplicate `input_stream_data` apart and holds early ones
//! until the gap fills. Both outlive any one WebSocket: a resumed socket continues the same numbers.
//!
//! The session task in `session` drives them and does the sending.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::frame::{ClientMessage, header_flags, message_type};
use super::payloads::AcknowledgeContent;

/// How often the resend scheduler looks at the oldest unacked message (ResendSleepInterval).
pub(crate) const RESEND_INTERVAL: Duration = Duration::from_millis(100);
/// The agent's buffer capacities (100000 messages each way).
pub(crate) const BUFFER_CAPACITY: usize = 100_000;
/// Resends of one message before the session is given up (ResendMaxAttempt, about 5 minutes).
pub(crate) const RESEND_MAX_ATTEMPTS: u32 = 3000;

const INITIAL_ROUND_TRIP: f64 = 0.100;
const INITIAL_TIMEOUT: Duration = Duration::from_millis(200);
const ALPHA: f64 = 1.0 / 8.0;
const BETA: f64 = 1.0 / 4.0;
const CLOCK_GRANULARITY: f64 = 0.010;
const MAX_TIMEOUT: f64 = 1.0;

/// The agent's sent, unacked messages and its retransmission timer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    next_sequence: i64,
    unacked: VecDeque<Unacked>,
    round_trip: f64,
    round_trip_variation: f64,
    timeout: Duration,
    /// The most resends of one message after the client could have had it (see `Stats`).
    pub(crate) most_resends_after_delivery: u32,
}

#[derive(Debug)]
struct Unacked {
    sequence: i64,
    wire: Vec<u8>,
    last_sent: Instant,
    attempts: u32,
    /// The first transmission was lost on purpose, so the first resend is the first copy the client can have.
    first_lost: bool,
}

/// What the resend scheduler decided on one tick.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resend {
    /// Nothing is due.
    Nothing,
    /// Send these bytes again.
    Send(Vec<u8>),
    /// The oldest message was resent [`RESEND_MAX_ATTEMPTS`] times without an ack.
    GiveUp(i64),
}

impl Default for Outgoing {
    fn default() -> Self {
        Self {
            next_sequence: 0,
            unacked: VecDeque::new(),
            round_trip: INITIAL_ROUND_TRIP,
            round_trip_variation: 0.0,
            timeout: INITIAL_TIMEOUT,
            most_resends_after_delivery: 0,
        }
    }
}

impl Outgoing {
    /// Numbers and records the next `output_stream_data` and returns its bytes for the first transmission.
    /// The first message carries the SYN flag, later ones none (§3).
    pub(crate) fn push(&mut self, payload_type: u32, payload: Vec<u8>, now: Instant) -> Vec<u8> {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let flags = if sequence == 0 { header_flags::SYN } else { 0 };
        let wire = ClientMessage::new(
            message_type::OUTPUT_STREAM_DATA,
            sequence,
            flags,
            payload_type,
            payload,
        )
        .encode();
        self.unacked.push_back(Unacked {
            sequence,
            wire: wire.clone(),
            last_sent: now,
            attempts: 0,
            first_lost: false,
        });
        wire
    }

    /// Records that the first transmission of the newest message was lost on purpose.
    pub(crate) fn lost_first(&mut self) {
        if let Some(newest) = self.unacked.back_mut() {
            newest.first_lost = true;
        }
    }

    /// Retires `sequence` and folds its round trip into the RTO; false for an unknown or already acked one.
    pub(crate) fn acknowledge(&mut self, sequence: i64, now: Instant) -> bool {
        let Ok(index) = self
            .unacked
            .binary_search_by_key(&sequence, |message| message.sequence)
        else {
            return false;
        };
        let Some(acked) = self.unacked.remove(index) else {
            return false;
        };
        let sample = now.duration_since(acked.last_sent).as_secs_f64();
        self.round_trip_variation =
            (1.0 - BETA) * self.round_trip_variation + BETA * (self.round_trip - sample).abs();
        self.round_trip = (1.0 - ALPHA) * self.round_trip + ALPHA * sample;
        let timeout = (self.round_trip + CLOCK_GRANULARITY.max(4.0 * self.round_trip_variation))
            .min(MAX_TIMEOUT);
        self.timeout = Duration::from_secs_f64(timeout);
        true
    }

    /// One tick of the resend scheduler: the oldest unacked message again if its RTO has passed.
    pub(crate) fn resend(&mut self, now: Instant) -> Resend {
        let timeout = self.timeout;
        let Some(oldest) = self.unacked.front_mut() else {
            return Resend::Nothing;
        };
        if now.duration_since(oldest.last_sent) <= timeout {
            return Resend::Nothing;
        }
        if oldest.attempts >= RESEND_MAX_ATTEMPTS {
            return Resend::GiveUp(oldest.sequence);
        }
        oldest.attempts += 1;
        oldest.last_sent = now;
        self.most_resends_after_delivery = self
            .most_resends_after_delivery
            .max(oldest.attempts - u32::from(oldest.first_lost));
        Resend::Send(oldest.wire.clone())
    }

    /// Messages waiting for their ack.
    pub(crate) fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// The current retransmission timeout.
    #[cfg(test)]
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// Where an arriving sequenced message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// The next one expected: deliver it.
    Expected,
    /// Later than expected: keep it until the gap fills.
    Ahead,
    /// Already delivered: acknowledge it again.
    Behind,
}

/// The agent's view of the client's `input_stream_data`.
#[derive(Debug, Default)]
pub(crate) struct Incoming {
    expected: i64,
    early: BTreeMap<i64, ClientMessage>,
}

impl Incoming {
    pub(crate) fn position(&self, sequence: i64) -> Position {
        match sequence.cmp(&self.expected) {
            std::cmp::Ordering::Equal => Position::Expected,
            std::cmp::Ordering::Greater => Position::Ahead,
            std::cmp::Ordering::Less => Position::Behind,
        }
    }

    /// Whether an early message with this sequence number is already kept.
    pub(crate) fn has_early(&self, sequence: i64) -> bool {
        self.early.contains_key(&sequence)
    }

    /// Keeps an early message; false when the buffer is full (the message is then neither kept nor acked).
    pub(crate) fn keep(&mut self, message: ClientMessage) -> bool {
        if self.early.len() >= BUFFER_CAPACITY && !self.early.contains_key(&message.sequence_number)
        {
            return false;
        }
        self.early.insert(message.sequence_number, message);
        true
    }

    /// Moves past the expected message.
    pub(crate) fn advance(&mut self) {
        self.expected += 1;
    }

    /// The kept message that is now expected, if it arrived early.
    pub(crate) fn take_expected(&mut self) -> Option<ClientMessage> {
        self.early.remove(&self.expected)
    }
}

/// The acknowledgement of `message`: Seq 0, Flags 3, PayloadType 0 and the AcknowledgeContent JSON (§3).
pub(crate) fn acknowledgement(message: &ClientMessage) -> ClientMessage {
    let content = AcknowledgeContent {
        message_type: message.message_type.clone(),
        message_id: message.message_id.hyphenated().to_string(),
        sequence_number: message.sequence_number,
        is_sequential: true,
    };
    let payload = serde_json::to_vec(&content).unwrap_or_default();
    ClientMessage::new(
        message_type::ACKNOWLEDGE,
        0,
        header_flags::CONTROL,
        0,
        payload,
    )
}
