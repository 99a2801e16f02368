//! What can go wrong on purpose: the [`Faults`] a test sets (at start or at run time) and the seeded dice each
//! session rolls them with, so a failing run repeats with the same seed.
//!
//! Where each fault acts is in `channel` (messages, acks, pacing of the agent side) and `socket` (pacing of the
//! client side); this file only holds the settings and the dice.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Fault settings. The default is a faithful, fault-free gateway with no pacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that one stream-data message (`input_stream_data`, `output_stream_data`: data, handshake,
    /// flags) is lost: a client message is ignored as if it never arrived, and a gateway message is not sent on
    /// its first transmission (retransmissions always go out).
    pub loss: f64,
    /// Probability that one acknowledgement is lost, either way. Kept apart from [`Faults::loss`] because a
    /// client that does not re-ack duplicates (aws-ssm-bridge 0.6.0, like the plugin) never recovers from a
    /// lost ack: the agent resends only its oldest unacked message, forever.
    pub ack_loss: f64,
    /// Probability that one message is handled twice (client to gateway) or sent twice (gateway to client).
    pub repeat: f64,
    /// Probability that one message is held back and swapped with the next one in its direction (held at most
    /// [`REORDER_HOLD`] when no next message comes).
    pub reorder: f64,
    /// How long each acknowledgement the gateway sends is held back.
    pub ack_delay: Duration,
    /// Drop each WebSocket once this many stream-data payload bytes (both directions) crossed it.
    pub drop_after_bytes: Option<u64>,
    /// Lose every Nth stream-data message of each direction, deterministically: the Nth, 2Nth, … message the
    /// gateway receives from the client, and the Nth, 2Nth, … first transmission it makes to the client
    /// (retransmissions always go out), as [`Faults::loss`] does at random.
    pub drop_every: Option<u64>,
    /// Pace like the real service: the agent sends at most one Output message per read of at most 1 KiB and
    /// sleeps at least 1 ms after each; the gateway takes in at most ~1000 `input_stream_data` messages a
    /// second per session.
    pub pace: bool,
    /// Seeds every random choice; each session mixes in its own ordinal.
    pub seed: u64,
}

/// The longest a reordered message waits for a next one to swap with.
pub const REORDER_HOLD: Duration = Duration::from_millis(5);

impl Default for Faults {
    fn default() -> Self {
        Self {
            loss: 0.0,
            ack_loss: 0.0,
            repeat: 0.0,
            reorder: 0.0,
            ack_delay: Duration::ZERO,
            drop_after_bytes: None,
            drop_every: None,
            pace: false,
            seed: 1,
        }
    }
}

impl Faults {
    /// No faults and no pacing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Only the real service's pacing.
    pub fn paced() -> Self {
        Self {
            pace: true,
            ..Self::default()
        }
    }
}

/// One session's dice: one generator per direction, so the choices of one direction do not depend on how
/// the other direction's messages interleave with it.
#[derive(Debug)]
pub(crate) struct Dice {
    seed: u64,
    ordinal: u64,
    to_client: StdRng,
    from_client: StdRng,
    /// Stream-data messages counted for [`Faults::drop_every`], per direction.
    counted_to_client: u64,
    counted_from_client: u64,
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    ToClient,
    FromClient,
}

impl Dice {
    pub(crate) fn new(seed: u64, ordinal: u64) -> Self {
        let mixed = seed ^ ordinal.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Self {
            seed,
            ordinal,
            to_client: StdRng::seed_from_u64(mixed),
            from_client: StdRng::seed_from_u64(mixed.rotate_left(32) ^ 0x5555_5555_5555_5555),
            counted_to_client: 0,
            counted_from_client: 0,
        }
    }

    /// Re-seeds when a test changed the seed at run time.
    pub(crate) fn follow(&mut self, seed: u64) {
        if seed != self.seed {
            *self = Self::new(seed, self.ordinal);
        }
    }

    /// Counts one stream-data message of `direction`; true when it is an Nth one and `every` is `Some(N)`.
    pub(crate) fn nth(&mut self, direction: Direction, every: Option<u64>) -> bool {
        let Some(every) = every.filter(|every| *every > 0) else {
            return false;
        };
        let count = match direction {
            Direction::ToClient => &mut self.counted_to_client,
            Direction::FromClient => &mut self.counted_from_client,
        };
        *count += 1;
        *count % every == 0
    }

    /// True with probability `probability` (0 never rolls, so fault-free runs use no randomness).
    pub(crate) fn roll(&mut self, direction: Direction, probability: f64) -> bool {
        if probability <= 0.0 {
            return false;
        }
        let generator = match direction {
            Direction::ToClient => &mut self.to_client,
            Direction::FromClient => &mut self.from_client,
        };
        generator.random::<f64>() < probability
    }
}
