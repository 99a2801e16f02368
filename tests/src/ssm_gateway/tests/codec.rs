//! The ClientMessage and smux codecs: PROTOCOL.md's byte vectors both ways, the robust-parse rules of §2, the
//! reliability layer's arithmetic, and proptest fuzzing of both decoders (arbitrary bytes and mutated valid
//! frames: bit flips, truncation, changed lengths and HeaderLengths).

use std::time::{Duration, Instant};

use proptest::prelude::*;
use uuid::Uuid;

use super::super::channel::{Incoming, Outgoing, Position, Resend};
use super::super::frame::{self, ClientMessage, FrameError, message_type};
use super::super::port::compare_versions;
use super::super::smux::{self, Command, Frame, Reassembler, SmuxError};
use super::support::hex;

/// PROTOCOL.md §2, the worked example: the plugin's test fixture serialized (127 bytes).
const WORKED_EXAMPLE: &str = "
0000: 00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
0010: 5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
0020: 20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: 23 9f 59 ed 55 e7 37 c7 71 47 cf 55 ad 0c 1b 03
0060: 0b 6d 7e e7 48 a7 42 69 52 f9 b8 52 d5 a9 35 e5
0070: 00 00 00 00 00 00 00 07 70 61 79 6c 6f 61 64
";

/// The same fixture as the HeaderLength-112 `channel_closed` of §2's observed deviations: NUL padding, no
/// PayloadType field, PayloadLength at 112 and the payload at 116 (Seq 0, Flags 3).
const SHORT_CHANNEL_CLOSED: &str = "
0000: 00 00 00 70 63 68 61 6e 6e 65 6c 5f 63 6c 6f 73
0010: 65 64 00 00 00 00 00 00 00 00 00 00 00 00 00 00
0020: 00 00 00 00 00 00 00 01 00 00 01 5e 0b aa 78 84
0030: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03
0040: a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
0050: 23 9f 59 ed 55 e7 37 c7 71 47 cf 55 ad 0c 1b 03
0060: 0b 6d 7e e7 48 a7 42 69 52 f9 b8 52 d5 a9 35 e5
0070: 00 00 00 07 70 61 79 6c 6f 61 64
";

const FIXTURE_ID: &str = "dd01e56b-ff48-483e-a508-b5f073f31b16";
const FIXTURE_DATE: u64 = 1_503_434_274_948;

/// The plugin's fixture (`TestSerializeAndDeserializeClientMessage`) with the given fields.
fn fixture(
    message_type: &str,
    sequence_number: i64,
    flags: u64,
    payload_type: u32,
    payload: &[u8],
) -> ClientMessage {
    ClientMessage {
        header_length: frame::HEADER_LENGTH,
        message_type: message_type.to_owned(),
        schema_version: 1,
        created_date: FIXTURE_DATE,
        sequence_number,
        flags,
        message_id: Uuid::parse_str(FIXTURE_ID).unwrap(),
        payload_digest: frame::sha256(payload),
        payload_type,
        payload_length: payload.len() as u32,
        payload: payload.to_vec(),
    }
}

#[test]
fn the_worked_example_encodes_to_the_protocol_bytes() {
    let message = fixture(message_type::INPUT_STREAM_DATA, 1, 2, 0, b"payload");
    let bytes = message.encode();
    assert_eq!(bytes.len(), 127);
    assert_eq!(bytes, hex(WORKED_EXAMPLE));
}

#[test]
fn the_worked_example_decodes_to_the_fixture() {
    let decoded = frame::decode(&hex(WORKED_EXAMPLE)).unwrap();
    assert_eq!(
        decoded,
        fixture(message_type::INPUT_STREAM_DATA, 1, 2, 0, b"payload")
    );
    assert!(decoded.digest_matches());
}

#[test]
fn a_terminate_session_flag_has_the_protocol_digest_and_tail() {
    let message = fixture(
        message_type::INPUT_STREAM_DATA,
        5,
        0,
        10,
        &hex("00 00 00 02"),
    );
    let bytes = message.encode();
    // Digest `433ebf5b…cf1a`.
    assert_eq!(bytes[80..84], hex("43 3e bf 5b"));
    assert_eq!(bytes[110..112], hex("cf 1a"));
    assert_eq!(
        bytes[bytes.len() - 12..],
        hex("00 00 00 0a 00 00 00 04 00 00 00 02")
    );
    // Seq 5 and Flags 0 in the same header as the worked example.
    assert_eq!(
        bytes[48..64],
        hex("00 00 00 00 00 00 00 05 00 00 00 00 00 00 00 00")
    );
    assert_eq!(frame::decode(&bytes).unwrap(), message);
}

#[test]
fn message_ids_swap_halves_both_ways() {
    let canonical = Uuid::parse_str("a3de282f-478b-a6e6-812e-f34f87bd449e").unwrap();
    let wire = Uuid::parse_str("812ef34f-87bd-449e-a3de-282f478ba6e6").unwrap();
    assert_eq!(frame::swap_halves(*canonical.as_bytes()), *wire.as_bytes());
    assert_eq!(frame::swap_halves(*wire.as_bytes()), *canonical.as_bytes());
    // And on the wire: the id field holds the swapped bytes, decoding gives the canonical id back.
    let mut message = fixture(message_type::ACKNOWLEDGE, 0, 3, 0, b"");
    message.message_id = canonical;
    let bytes = message.encode();
    assert_eq!(bytes[64..80], *wire.as_bytes());
    assert_eq!(frame::decode(&bytes).unwrap().message_id, canonical);
}

#[test]
fn the_short_channel_closed_encodes_and_decodes() {
    let message = fixture(message_type::CHANNEL_CLOSED, 0, 3, 0, b"payload");
    assert_eq!(message.encode_short(), hex(SHORT_CHANNEL_CLOSED));
    let decoded = frame::decode(&hex(SHORT_CHANNEL_CLOSED)).unwrap();
    assert_eq!(decoded.header_length, frame::SHORT_HEADER_LENGTH);
    assert_eq!(decoded.message_type, message_type::CHANNEL_CLOSED);
    assert_eq!(decoded.payload_type, 0);
    assert_eq!(decoded.payload_length, 7);
    assert_eq!(decoded.payload, b"payload");
    assert!(decoded.digest_matches());
}

#[test]
fn the_smux_example_frames_encode_and_decode() {
    let examples = [
        (Frame::syn(3), "01 00 00 00 03 00 00 00"),
        (
            Frame::psh(3, b"hello"),
            "01 02 05 00 03 00 00 00 68 65 6c 6c 6f",
        ),
        (Frame::fin(3), "01 01 00 00 03 00 00 00"),
        (Frame::nop(), "01 03 00 00 00 00 00 00"),
    ];
    for (frame, bytes) in examples {
        assert_eq!(frame.encode(), hex(bytes), "{frame:?}");
        assert_eq!(
            smux::decode(&hex(bytes)).unwrap(),
            (frame, hex(bytes).len())
        );
    }
}

#[test]
fn smux_frames_are_cut_out_of_a_stream_split_anywhere() {
    let mut stream = Frame::syn(3).encode();
    stream.extend(Frame::psh(3, b"hello").encode());
    stream.extend(Frame::fin(3).encode());
    for split in 0..stream.len() {
        let mut reassembler = Reassembler::default();
        let mut frames = Vec::new();
        for part in [&stream[..split], &stream[split..]] {
            reassembler.push(part);
            while let Some(frame) = reassembler.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            [Frame::syn(3), Frame::psh(3, b"hello"), Frame::fin(3)],
            "split at {split}"
        );
    }
}

#[test]
fn smux_rejects_other_versions_commands_and_data_on_control_frames() {
    assert_eq!(
        smux::decode(&hex("02 00 00 00 03 00 00 00")),
        Err(SmuxError::Version(2))
    );
    assert_eq!(
        smux::decode(&hex("01 04 08 00 03 00 00 00")),
        Err(SmuxError::Command(4))
    );
    assert_eq!(
        smux::decode(&hex("01 00 01 00 03 00 00 00 ff")),
        Err(SmuxError::DataOnControl {
            command: Command::Syn,
            length: 1
        })
    );
    assert!(matches!(
        smux::decode(&hex("01 02 05 00 03 00 00 00 68")),
        Err(SmuxError::Incomplete {
            have: 9,
            needed: 13
        })
    ));
}

#[test]
fn the_robust_parser_follows_the_header_length() {
    // A longer header: the payload is still at HeaderLength + 4.
    let mut bytes = hex(WORKED_EXAMPLE);
    bytes[3] = 120;
    bytes.splice(116..116, hex("de ad be ef"));
    let decoded = frame::decode(&bytes).unwrap();
    assert_eq!(decoded.payload, b"payload");
    assert_eq!(decoded.payload_type, 0);
    // The declared PayloadLength is not used to slice.
    let mut bytes = hex(WORKED_EXAMPLE);
    bytes[119] = 99;
    let decoded = frame::decode(&bytes).unwrap();
    assert_eq!(decoded.payload, b"payload");
    assert_eq!(decoded.payload_length, 99);
}

#[test]
fn the_parser_rejects_what_the_agent_rejects() {
    let bytes = hex(WORKED_EXAMPLE);
    assert_eq!(
        frame::decode(&bytes[..50]),
        Err(FrameError::Truncated {
            length: 50,
            needed: 120
        })
    );
    let mut short = bytes.clone();
    short[3] = 100;
    assert_eq!(
        frame::decode(&short),
        Err(FrameError::HeaderLength { header_length: 100 })
    );
    let empty = fixture("", 1, 0, 1, b"x").encode();
    assert_eq!(frame::decode(&empty), Err(FrameError::EmptyMessageType));
    let mut undated = fixture(message_type::INPUT_STREAM_DATA, 1, 0, 1, b"x");
    undated.created_date = 0;
    assert!(matches!(
        frame::decode(&undated.encode()),
        Err(FrameError::ZeroCreatedDate { .. })
    ));
    let mut not_text = bytes.clone();
    not_text[4] = 0xff;
    assert_eq!(
        frame::decode(&not_text),
        Err(FrameError::MessageTypeNotText)
    );
}

#[test]
fn publication_messages_skip_validation_and_the_digest_is_checked_apart() {
    // start_publication with no date, a wrong length and a zero digest, as the service sends it.
    let mut publication = fixture(message_type::START_PUBLICATION, 0, 3, 0, b"");
    publication.created_date = 0;
    publication.payload_digest = [0; 32];
    publication.payload_length = 0x0400_0000;
    let decoded = frame::decode(&publication.encode()).unwrap();
    assert!(decoded.is_publication());
    let mut corrupted = hex(WORKED_EXAMPLE);
    corrupted[126] ^= 1;
    let decoded = frame::decode(&corrupted).unwrap();
    assert!(!decoded.digest_matches());
}

#[test]
fn the_rto_follows_the_agent_estimator() {
    let mut outgoing = Outgoing::default();
    assert_eq!(outgoing.timeout(), Duration::from_millis(200));
    let start = Instant::now();
    outgoing.push(1, b"a".to_vec(), start);
    assert!(outgoing.acknowledge(0, start + Duration::from_millis(20)));
    // RTTVAR = 0.25·|0.1 − 0.02| = 0.02; RTT = 0.875·0.1 + 0.125·0.02 = 0.09; RTO = 0.09 + max(0.01, 0.08).
    let timeout = outgoing.timeout().as_secs_f64();
    assert!((timeout - 0.17).abs() < 1e-6, "{timeout}");
    assert!(
        !outgoing.acknowledge(0, start),
        "a second ack retires nothing"
    );
}

#[test]
fn only_the_oldest_unacked_message_is_resent_after_its_rto() {
    let mut outgoing = Outgoing::default();
    let start = Instant::now();
    let first = outgoing.push(1, b"a".to_vec(), start);
    outgoing.push(1, b"b".to_vec(), start);
    assert_eq!(
        outgoing.resend(start + Duration::from_millis(150)),
        Resend::Nothing
    );
    assert_eq!(
        outgoing.resend(start + Duration::from_millis(250)),
        Resend::Send(first.clone())
    );
    // Resent just now: not again until another RTO has passed, and the second waits behind it.
    assert_eq!(
        outgoing.resend(start + Duration::from_millis(350)),
        Resend::Nothing
    );
    assert!(outgoing.acknowledge(0, start + Duration::from_millis(360)));
    assert!(matches!(
        outgoing.resend(start + Duration::from_millis(700)),
        Resend::Send(_)
    ));
    let sent = frame::decode(&first).unwrap();
    assert_eq!(sent.sequence_number, 0);
    assert_eq!(sent.flags, 1, "the first message carries SYN");
}

#[test]
fn incoming_messages_are_placed_by_sequence() {
    let mut incoming = Incoming::default();
    assert_eq!(incoming.position(0), Position::Expected);
    assert_eq!(incoming.position(2), Position::Ahead);
    assert!(incoming.keep(fixture(message_type::INPUT_STREAM_DATA, 1, 0, 1, b"b")));
    incoming.advance();
    assert_eq!(incoming.position(0), Position::Behind);
    assert_eq!(incoming.take_expected().unwrap().payload, b"b");
    incoming.advance();
    assert!(incoming.take_expected().is_none());
}

#[test]
fn versions_compare_like_the_agent() {
    use std::cmp::Ordering::*;
    assert_eq!(compare_versions("1.2.764.0", "1.1.70"), Greater);
    assert_eq!(compare_versions("1.1.70", "1.1.70"), Equal);
    assert_eq!(compare_versions("1.1.69.0", "1.1.70"), Less);
    assert_eq!(compare_versions("1.2.331.0", "1.2.331.0"), Equal);
    assert_eq!(compare_versions("1.2.0.0-gimlet", "1.1.70"), Greater);
    assert_eq!(compare_versions("1.2.0.0-gimlet", "1.2.331.0"), Less);
    assert_eq!(compare_versions("1.10.0", "1.9.0"), Greater);
}

/// A valid frame of any kind the fuzzer starts from.
fn valid_message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            message_type::INPUT_STREAM_DATA,
            message_type::OUTPUT_STREAM_DATA,
            message_type::ACKNOWLEDGE,
            message_type::CHANNEL_CLOSED,
            message_type::START_PUBLICATION,
        ]),
        any::<i64>(),
        0u32..13,
        prop::collection::vec(any::<u8>(), 0..300),
        any::<bool>(),
    )
        .prop_map(|(kind, sequence, payload_type, payload, short)| {
            let message = ClientMessage::new(kind, sequence, 0, payload_type, payload);
            if short {
                message.encode_short()
            } else {
                message.encode()
            }
        })
}

/// What a decode may return: a message consistent with its bytes, or an error that says something.
fn check_message(bytes: &[u8], decoded: Result<ClientMessage, FrameError>) {
    match decoded {
        Ok(message) => {
            let start = message.header_length as usize + 4;
            assert_eq!(message.payload, bytes[start..]);
            assert!(message.header_length >= frame::SHORT_HEADER_LENGTH);
            assert!(message.is_publication() || !message.message_type.is_empty());
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

fn check_smux(bytes: &[u8], decoded: Result<(Frame, usize), SmuxError>) {
    match decoded {
        Ok((frame, used)) => {
            assert_eq!(used, smux::HEADER_SIZE + frame.data.len());
            assert!(used <= bytes.len());
            assert_eq!(frame.encode(), bytes[..used]);
        }
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    #[test]
    fn client_message_decoding_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_message(&bytes, frame::decode(&bytes));
    }

    #[test]
    fn client_message_decoding_survives_mutations(
        original in valid_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        header_length in prop::option::of(0u32..400),
        payload_length in prop::option::of(any::<u32>()),
    ) {
        let mut bytes = original.clone();
        for (index, bit) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        if let Some(header_length) = header_length {
            bytes[..4].copy_from_slice(&header_length.to_be_bytes());
        }
        if let Some(payload_length) = payload_length.filter(|_| bytes.len() >= 120) {
            bytes[116..120].copy_from_slice(&payload_length.to_be_bytes());
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        check_message(&bytes, frame::decode(&bytes));
        // Unmutated, every valid frame decodes and its digest holds.
        let decoded = frame::decode(&original).unwrap();
        prop_assert!(decoded.digest_matches());
    }

    #[test]
    fn smux_decoding_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..100)) {
        check_smux(&bytes, smux::decode(&bytes));
        let mut reassembler = Reassembler::default();
        reassembler.push(&bytes);
        for _ in 0..bytes.len() {
            match reassembler.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(error) => {
                    prop_assert!(!error.to_string().is_empty());
                    break;
                }
            }
        }
    }

    #[test]
    fn smux_decoding_survives_mutations(
        stream_id in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..64),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        length in prop::option::of(any::<u16>()),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = Frame::psh(stream_id, &data).encode();
        for (index, bit) in flips {
            let at = index.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        if let Some(length) = length {
            bytes[2..4].copy_from_slice(&length.to_le_bytes());
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        check_smux(&bytes, smux::decode(&bytes));
    }
}
