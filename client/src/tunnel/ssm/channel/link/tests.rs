//! The reliability layer's rules: the window, every expired message resent, everything at once after a
//! resume, in-order delivery, re-acknowledged duplicates.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::super::message::{self, Message, decode, message_type, payload_type};
use super::{Arrival, Incoming, Outgoing, WINDOW_BYTES, acknowledgement};

fn output(sequence: i64, payload: &[u8]) -> Message {
    decode(&message::encode(
        message_type::OUTPUT_STREAM_DATA,
        sequence,
        0,
        payload_type::OUTPUT,
        payload,
    ))
    .unwrap()
}

fn sequences(wires: &[Bytes]) -> Vec<i64> {
    wires
        .iter()
        .map(|wire| decode(wire).unwrap().sequence_number)
        .collect()
}

#[test]
fn messages_are_numbered_from_zero_and_retired_by_their_ack() {
    let mut outgoing = Outgoing::default();
    let now = Instant::now();
    let first = decode(&outgoing.push(payload_type::HANDSHAKE_RESPONSE, b"{}", now)).unwrap();
    let second = decode(&outgoing.push(payload_type::OUTPUT, b"abc", now)).unwrap();
    assert_eq!(first.sequence_number, 0);
    assert_eq!(second.sequence_number, 1);
    assert_eq!(first.message_type, message_type::INPUT_STREAM_DATA);
    assert_eq!(outgoing.unacked(), 2);
    assert!(outgoing.acknowledge(1, now));
    assert!(!outgoing.acknowledge(1, now), "an ack counts once");
    assert_eq!(outgoing.unacked(), 1);
}

#[test]
fn every_expired_message_is_resent_not_only_the_oldest() {
    let mut outgoing = Outgoing::default();
    let start = Instant::now();
    for _ in 0..5 {
        outgoing.push(payload_type::OUTPUT, b"x", start);
    }
    outgoing.acknowledge(2, start + Duration::from_millis(1));
    assert!(
        outgoing
            .expired(start + Duration::from_millis(5))
            .unwrap()
            .is_empty()
    );
    let later = start + outgoing.timeout() + Duration::from_millis(1);
    assert_eq!(
        sequences(&outgoing.expired(later).unwrap()),
        vec![0, 1, 3, 4]
    );
    // Sent again just now: not due again until another timeout passes.
    assert!(outgoing.expired(later).unwrap().is_empty());
}

#[test]
fn a_resume_sends_everything_unacknowledged_at_once() {
    let mut outgoing = Outgoing::default();
    let now = Instant::now();
    for _ in 0..4 {
        outgoing.push(payload_type::OUTPUT, b"x", now);
    }
    outgoing.acknowledge(0, now);
    assert_eq!(sequences(&outgoing.all(now)), vec![1, 2, 3]);
}

#[test]
fn the_window_closes_at_its_byte_limit_and_opens_with_acks() {
    let mut outgoing = Outgoing::default();
    let now = Instant::now();
    let block = vec![0u8; 64 * 1024];
    let mut pushed = 0;
    while outgoing.has_room() {
        outgoing.push(payload_type::OUTPUT, &block, now);
        pushed += 1;
    }
    assert_eq!(pushed * block.len(), WINDOW_BYTES);
    outgoing.acknowledge(0, now);
    assert!(outgoing.has_room());
}

#[test]
fn the_timeout_follows_the_round_trip_and_ignores_resent_messages() {
    let mut outgoing = Outgoing::default();
    let start = Instant::now();
    for index in 0..50 {
        let sent = start + Duration::from_millis(index * 2);
        outgoing.push(payload_type::OUTPUT, b"x", sent);
        outgoing.acknowledge(index as i64, sent + Duration::from_millis(1));
    }
    let settled = outgoing.timeout();
    assert!(settled < Duration::from_millis(60), "{settled:?}");
    // A resent message's ack says nothing about the round trip (Karn).
    let sent = start + Duration::from_millis(200);
    outgoing.push(payload_type::OUTPUT, b"x", sent);
    let _ = outgoing.expired(sent + Duration::from_secs(1)).unwrap();
    outgoing.acknowledge(50, sent + Duration::from_secs(5));
    assert_eq!(outgoing.timeout(), settled);
}

#[test]
fn in_order_delivery_with_early_messages_kept_and_duplicates_re_acked() {
    let mut incoming = Incoming::default();
    assert_eq!(incoming.arrive(output(1, b"b")), Arrival::Kept);
    assert_eq!(incoming.arrive(output(1, b"b")), Arrival::Duplicate);
    let Arrival::Deliver(due) = incoming.arrive(output(0, b"a")) else {
        panic!("0 is expected");
    };
    assert_eq!(
        due.iter()
            .map(|message| &message.payload[..])
            .collect::<Vec<_>>(),
        vec![&b"a"[..], &b"b"[..]]
    );
    assert_eq!(incoming.arrive(output(0, b"a")), Arrival::Duplicate);
    assert!(matches!(
        incoming.arrive(output(2, b"c")),
        Arrival::Deliver(_)
    ));
}

#[test]
fn an_ack_names_the_message_by_sequence_and_canonical_id() {
    let message = output(7, b"x");
    let ack = decode(&acknowledgement(&message)).unwrap();
    assert_eq!(ack.message_type, message_type::ACKNOWLEDGE);
    assert_eq!(ack.sequence_number, 0);
    let content: serde_json::Value = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(content["AcknowledgedMessageSequenceNumber"], 7);
    assert_eq!(content["AcknowledgedMessageType"], "output_stream_data");
    assert_eq!(
        content["AcknowledgedMessageId"],
        message.message_id.hyphenated().to_string()
    );
    assert_eq!(content["IsSequentialMessage"], true);
}
