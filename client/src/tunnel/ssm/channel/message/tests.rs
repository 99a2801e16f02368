//! The codec against PROTOCOL.md §2's byte vectors, its tolerant rules, and proptest: arbitrary and mutated
//! bytes never panic and never make the decoder hold more than the frame it was given.

use bytes::Bytes;
use proptest::prelude::*;
use uuid::Uuid;

use super::{MessageError, decode, encode, encode_with, message_type, sha256, swap_halves};

/// PROTOCOL.md §2, the worked example: the plugin's test fixture serialized (127 bytes).
const WORKED_EXAMPLE: &str = "
00 00 00 74 69 6e 70 75 74 5f 73 74 72 65 61 6d
5f 64 61 74 61 20 20 20 20 20 20 20 20 20 20 20
20 20 20 20 00 00 00 01 00 00 01 5e 0b aa 78 84
00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02
a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
23 9f 59 ed 55 e7 37 c7 71 47 cf 55 ad 0c 1b 03
0b 6d 7e e7 48 a7 42 69 52 f9 b8 52 d5 a9 35 e5
00 00 00 00 00 00 00 07 70 61 79 6c 6f 61 64
";

/// The same fixture as the HeaderLength-112 `channel_closed` seen from the service (NUL padding, no
/// PayloadType, the payload at 116).
const SHORT_CHANNEL_CLOSED: &str = "
00 00 00 70 63 68 61 6e 6e 65 6c 5f 63 6c 6f 73
65 64 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 01 00 00 01 5e 0b aa 78 84
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 03
a5 08 b5 f0 73 f3 1b 16 dd 01 e5 6b ff 48 48 3e
23 9f 59 ed 55 e7 37 c7 71 47 cf 55 ad 0c 1b 03
0b 6d 7e e7 48 a7 42 69 52 f9 b8 52 d5 a9 35 e5
00 00 00 07 70 61 79 6c 6f 61 64
";

const FIXTURE_ID: &str = "dd01e56b-ff48-483e-a508-b5f073f31b16";
const FIXTURE_DATE: u64 = 1_503_434_274_948;

fn hex(dump: &str) -> Bytes {
    dump.split_whitespace()
        .map(|pair| u8::from_str_radix(pair, 16).unwrap())
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn the_worked_example_encodes_to_the_protocol_bytes() {
    let bytes = encode_with(
        message_type::INPUT_STREAM_DATA,
        1,
        2,
        0,
        b"payload",
        Uuid::parse_str(FIXTURE_ID).unwrap(),
        FIXTURE_DATE,
    );
    assert_eq!(bytes, hex(WORKED_EXAMPLE));
}

#[test]
fn the_worked_example_decodes_to_its_fields() {
    let message = decode(&hex(WORKED_EXAMPLE)).unwrap();
    assert_eq!(message.message_type, "input_stream_data");
    assert_eq!(message.sequence_number, 1);
    assert_eq!(message.message_id, Uuid::parse_str(FIXTURE_ID).unwrap());
    assert_eq!(message.payload_type, 0);
    assert_eq!(message.payload_length, 7);
    assert_eq!(&message.payload[..], b"payload");
    assert_eq!(message.payload_digest, sha256(b"payload"));
    assert!(message.digest_matches());
}

#[test]
fn the_short_channel_closed_has_its_payload_at_116_and_no_payload_type() {
    let message = decode(&hex(SHORT_CHANNEL_CLOSED)).unwrap();
    assert_eq!(message.message_type, "channel_closed");
    assert_eq!(message.payload_type, 0);
    assert_eq!(message.payload_length, 7);
    assert_eq!(&message.payload[..], b"payload");
}

#[test]
fn the_message_id_swap_matches_gimlets_vector() {
    let canonical = Uuid::parse_str("a3de282f-478b-a6e6-812e-f34f87bd449e").unwrap();
    let wire = Uuid::parse_str("812ef34f-87bd-449e-a3de-282f478ba6e6").unwrap();
    assert_eq!(swap_halves(*canonical.as_bytes()), *wire.as_bytes());
    assert_eq!(swap_halves(*wire.as_bytes()), *canonical.as_bytes());
}

#[test]
fn publication_messages_are_not_validated() {
    // A zero CreatedDate and a wrong length: still a pause_publication.
    let mut bytes = encode(message_type::PAUSE_PUBLICATION, 0, 3, 0, b"").to_vec();
    bytes[40..48].fill(0);
    bytes[116..120].copy_from_slice(&5u32.to_le_bytes());
    let message = decode(&bytes.into()).unwrap();
    assert_eq!(message.message_type, message_type::PAUSE_PUBLICATION);
}

#[test]
fn other_messages_need_a_type_and_a_created_date() {
    let mut bytes = encode(message_type::OUTPUT_STREAM_DATA, 4, 0, 1, b"x").to_vec();
    bytes[40..48].fill(0);
    assert_eq!(
        decode(&bytes.clone().into()),
        Err(MessageError::ZeroCreatedDate("output_stream_data".into()))
    );
    bytes[4..36].fill(b' ');
    assert_eq!(decode(&bytes.into()), Err(MessageError::EmptyMessageType));
}

#[test]
fn a_wrong_digest_is_reported_not_refused() {
    let mut bytes = encode(message_type::OUTPUT_STREAM_DATA, 4, 0, 1, b"abc").to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let message = decode(&bytes.into()).unwrap();
    assert!(!message.digest_matches());
}

#[test]
fn truncated_and_undersized_headers_are_errors() {
    assert!(matches!(
        decode(&Bytes::from_static(&[0, 0])),
        Err(MessageError::Truncated { .. })
    ));
    assert_eq!(
        decode(&Bytes::from_static(&[0, 0, 0, 20, 1, 2, 3])),
        Err(MessageError::HeaderLength(20))
    );
    let huge = [0xff, 0xff, 0xff, 0xff, 0, 0];
    assert!(matches!(
        decode(&Bytes::copy_from_slice(&huge)),
        Err(MessageError::Truncated { .. })
    ));
}

/// What decoding may hold: the payload is a slice of the input and the type at most 32 bytes.
fn check_bounded(input: &Bytes) {
    if let Ok(message) = decode(input) {
        assert!(message.payload.len() <= input.len());
        assert!(message.message_type.len() <= 32);
        // Zero-copy: the payload points into the input.
        if !message.payload.is_empty() {
            let start = input.as_ptr() as usize;
            let payload = message.payload.as_ptr() as usize;
            assert!(payload >= start && payload + message.payload.len() <= start + input.len());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check_bounded(&Bytes::from(bytes));
    }

    #[test]
    fn arbitrary_headers_with_any_header_length_never_panic(
        header_length in any::<u32>(),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = header_length.to_be_bytes().to_vec();
        bytes.extend(rest);
        check_bounded(&Bytes::from(bytes));
    }

    #[test]
    fn encoded_messages_decode_to_what_was_sent(
        sequence in any::<i64>(),
        payload_type in any::<u32>(),
        payload in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let bytes = encode(message_type::OUTPUT_STREAM_DATA, sequence, 0, payload_type, &payload);
        let message = decode(&bytes).unwrap();
        prop_assert_eq!(message.sequence_number, sequence);
        prop_assert_eq!(message.payload_type, payload_type);
        prop_assert_eq!(&message.payload[..], &payload[..]);
        prop_assert!(message.digest_matches());
    }

    #[test]
    fn mutated_messages_never_panic(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        header_length in proptest::option::of(any::<u32>()),
    ) {
        let mut bytes = encode(message_type::OUTPUT_STREAM_DATA, 9, 0, 1, &payload).to_vec();
        for (at, value) in flips {
            let index = at % bytes.len();
            bytes[index] ^= value;
        }
        if let Some(header_length) = header_length {
            bytes[..4].copy_from_slice(&header_length.to_be_bytes());
        }
        bytes.truncate(cut % (bytes.len() + 1));
        check_bounded(&Bytes::from(bytes));
    }
}
