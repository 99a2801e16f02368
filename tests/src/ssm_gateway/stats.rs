//! What the gateway counts: [`Stats`], the snapshot tests read, and the atomic counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the gateway's counters since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// StartSession calls answered with a session.
    pub sessions_started: u64,
    /// ResumeSession calls answered with a new token.
    pub sessions_resumed: u64,
    /// Sessions that ended (TerminateSession call or flag, failed handshake, protocol error).
    pub sessions_terminated: u64,
    /// WebSockets that presented a valid token and carried a session.
    pub websockets_opened: u64,
    /// WebSockets the gateway dropped on purpose (`drop_websockets`, `drop_after_bytes`).
    pub websockets_dropped: u64,
    /// WebSockets the gateway closed with a Close frame but no `channel_closed` (`close_websockets`).
    pub websockets_closed: u64,
    /// WebSockets closed because their first frame or its token was wrong (bad, superseded or reused).
    pub tokens_rejected: u64,
    /// Messages lost on purpose, both directions.
    pub messages_lost: u64,
    /// Messages repeated on purpose, both directions.
    pub messages_repeated: u64,
    /// Of those, `output_stream_data` the gateway sent twice.
    pub outputs_repeated: u64,
    /// Acks of output messages already acknowledged (a client acknowledging a duplicate), not counting the
    /// gateway's own repetition of a client's ack.
    pub re_acks_received: u64,
    /// Messages reordered on purpose, both directions.
    pub messages_reordered: u64,
    /// Output messages the gateway sent again because no ack came in time.
    pub retransmissions_sent: u64,
    /// The most times one output message was sent again after a transmission of it had gone out on a socket
    /// (so after the client could have it): a client that acknowledges duplicates keeps this small.
    pub most_resends_after_delivery: u64,
    /// `input_stream_data` messages that arrived again, after being delivered or kept early (each acked again).
    pub duplicates_received: u64,
    /// Stream payload bytes delivered to the agent side, in order (client to target).
    pub bytes_to_agent: u64,
    /// Stream payload bytes the agent side sent (target to client), counted once per message.
    pub bytes_to_client: u64,
    /// Frames that were not valid ClientMessages or smux frames, and unexpected text frames.
    pub bad_frames: u64,
    /// `input_stream_data` messages dropped unacknowledged for a wrong digest.
    pub digest_mismatches: u64,
    /// smux streams opened (SYN).
    pub streams_opened: u64,
    /// Dials of a route that failed (each answered with ConnectToPortError).
    pub dial_failures: u64,
}

macro_rules! counters {
    (
        events { $($event:ident => $add_event:ident),* $(,)? }
        sums { $($sum:ident => $add_sum:ident),* $(,)? }
        maxima { $($maximum:ident => $note_maximum:ident),* $(,)? }
    ) => {
        /// The live counters, one atomic per [`Stats`] field.
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $($event: AtomicU64,)*
            $($sum: AtomicU64,)*
            $($maximum: AtomicU64,)*
        }

        impl Counters {
            $(
                pub(crate) fn $add_event(&self) {
                    self.$event.fetch_add(1, Ordering::Relaxed);
                }
            )*

            $(
                pub(crate) fn $add_sum(&self, amount: usize) {
                    self.$sum.fetch_add(amount as u64, Ordering::Relaxed);
                }
            )*

            $(
                pub(crate) fn $note_maximum(&self, value: u64) {
                    self.$maximum.fetch_max(value, Ordering::Relaxed);
                }
            )*

            pub(crate) fn snapshot(&self) -> Stats {
                Stats {
                    $($event: self.$event.load(Ordering::Relaxed),)*
                    $($sum: self.$sum.load(Ordering::Relaxed),)*
                    $($maximum: self.$maximum.load(Ordering::Relaxed),)*
                }
            }
        }
    };
}

counters! {
    events {
        sessions_started => add_session_started,
        sessions_resumed => add_session_resumed,
        sessions_terminated => add_session_terminated,
        websockets_opened => add_websocket_opened,
        websockets_dropped => add_websocket_dropped,
        websockets_closed => add_websocket_closed,
        tokens_rejected => add_token_rejected,
        messages_lost => add_message_lost,
        messages_repeated => add_message_repeated,
        outputs_repeated => add_output_repeated,
        re_acks_received => add_re_ack,
        messages_reordered => add_message_reordered,
        retransmissions_sent => add_retransmission,
        duplicates_received => add_duplicate,
        bad_frames => add_bad_frame,
        digest_mismatches => add_digest_mismatch,
        streams_opened => add_stream,
        dial_failures => add_dial_failure,
    }
    sums {
        bytes_to_agent => add_bytes_to_agent,
        bytes_to_client => add_bytes_to_client,
    }
    maxima {
        most_resends_after_delivery => note_resends_after_delivery,
    }
}
