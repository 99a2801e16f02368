//! Property tests of the resumable connection's wire and link, with arbitrary bytes, mutated valid encodings and
//! frames a hostile peer could checksum correctly: nothing panics, no data frame is bigger than
//! [`MAX_PAYLOAD`], damaged units are refused rather than taken for others, valid frames round-trip whole or split
//! anywhere, a link fed anything detaches with a reason, having delivered exactly the bytes in order, and the
//! agent's registry refuses a transport that does not open with a hello.
//! `cargo xtask fuzz` runs them (every test under a `props` module) with many more cases.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Registry;
use super::link::{Detach, Link, Policy};
use super::wire::{Frame, HELLO_LEN, Hello, MAX_PAYLOAD, WELCOME_LEN, Welcome, WireError};

#[path = "../../support/props.rs"]
mod support;

use support::{config, mutate, mutations};

/// Offsets and counts: mostly small (the ones a link acts on), sometimes anything, sometimes near the top.
fn number() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0..64u64,
        1 => any::<u64>(),
        1 => (0..64u64).prop_map(|below| u64::MAX - below),
    ]
}

/// Frames with any values, each with a correct checksum: what a hostile or confused peer could send.
fn frame() -> impl Strategy<Value = Frame> {
    let payload = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..48),
        1 => proptest::collection::vec(any::<u8>(), 0..=MAX_PAYLOAD),
    ];
    prop_oneof![
        3 => (number(), payload).prop_map(|(offset, payload)| Frame::Data { offset, payload: payload.into() }),
        1 => number().prop_map(|received| Frame::Ack { received }),
        1 => number().prop_map(|offset| Frame::Fin { offset }),
        1 => number().prop_map(|sent| Frame::Ping { sent }),
        1 => number().prop_map(|sent| Frame::Pong { sent }),
    ]
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        frame.encode(&mut out);
    }
    out.to_vec()
}

/// Decodes until more bytes are needed or the bytes are refused, checking what every decoder must: a frame never
/// takes more than it was given, no payload is over [`MAX_PAYLOAD`], and a wait leaves the bytes alone.
fn decode_checked(buffer: &mut BytesMut) -> (Vec<Frame>, Option<WireError>) {
    let mut frames = Vec::new();
    loop {
        let before = buffer.len();
        let capacity = buffer.capacity();
        match Frame::decode(buffer) {
            Ok(Some(frame)) => {
                assert!(buffer.len() < before, "a frame took no bytes");
                if let Frame::Data { payload, .. } = &frame {
                    assert!(payload.len() <= MAX_PAYLOAD);
                }
                frames.push(frame);
            }
            Ok(None) => {
                assert_eq!(buffer.len(), before, "a wait for more consumed bytes");
                assert_eq!(buffer.capacity(), capacity, "a wait for more allocated");
                return (frames, None);
            }
            Err(error) => return (frames, Some(error)),
        }
    }
}

/// Cuts `bytes` into pieces at `cuts` (positions taken modulo its length).
fn pieces<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|pair| &bytes[pair[0]..pair[1]]).collect()
}

/// How a link's turn on a transport ended, without the transport a replacement carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Broken(String),
    Damaged(String),
    Failed(String),
    Replaced,
    /// It neither ended nor failed within the time allowed.
    Hung,
}

/// Runs a link over a transport whose peer sends `pieces` (one write each, letting the link run between them)
/// and then closes its sending side, reading everything the link writes back; gives how the link detached and
/// the bytes it delivered to its application.
fn run_link(pieces: Vec<Vec<u8>>, welcome_pending: bool) -> (Outcome, Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (app, mut application) = tokio::io::duplex(64 * 1024);
        let (transport, peer) = tokio::io::duplex(64 * 1024);
        let (mut peer_read, mut peer_write) = tokio::io::split(peer);
        let draining = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = peer_read.read_to_end(&mut sink).await;
        });
        let feeding = tokio::spawn(async move {
            for piece in pieces {
                if peer_write.write_all(&piece).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
            let _ = peer_write.shutdown().await;
            peer_write
        });
        let delivering = tokio::spawn(async move {
            let mut data = Vec::new();
            let _ = application.read_to_end(&mut data).await;
            data
        });
        let policy = Policy {
            ping: None,
            stall: None,
            linger: Duration::from_secs(60),
        };
        let mut link = Link::new(app, policy);
        let attached = link.attach(Box::new(transport), 0, welcome_pending, None);
        let outcome = match tokio::time::timeout(Duration::from_secs(10), attached).await {
            Ok(Detach::Done) => Outcome::Done,
            Ok(Detach::Broken(reason)) => Outcome::Broken(reason),
            Ok(Detach::Damaged(reason)) => Outcome::Damaged(reason),
            Ok(Detach::Failed(reason)) => Outcome::Failed(reason),
            Ok(Detach::Replaced(..)) => Outcome::Replaced,
            Err(_) => Outcome::Hung,
        };
        // The link holds the application's end and the transport: dropping it ends the readers above.
        drop(link);
        let delivered = delivering.await.unwrap();
        drop(feeding.await.unwrap());
        draining.await.unwrap();
        (outcome, delivered)
    })
}

/// What a link must deliver from `frames`, and whether it stops before their end: every byte once and in order,
/// up to the first frame it cannot accept (a gap, data beyond the peer's end, an acknowledgement of bytes never
/// sent, a ping or pong counting other than what arrived, an offset past the end of any stream).
fn model(frames: &[Frame]) -> (Vec<u8>, bool) {
    let mut delivered = Vec::new();
    let mut received = 0u64;
    let mut peer_fin = false;
    for frame in frames {
        match frame {
            Frame::Data { offset, payload } => {
                let Some(end) = offset.checked_add(payload.len() as u64) else {
                    return (delivered, true);
                };
                if peer_fin && end > received {
                    return (delivered, true);
                }
                if end <= received {
                    continue;
                }
                if *offset > received {
                    return (delivered, true);
                }
                delivered.extend_from_slice(&payload[(received - offset) as usize..]);
                received = end;
            }
            // The link under test sends nothing, so only an acknowledgement of nothing is in range.
            Frame::Ack {
                received: acknowledged,
            } if *acknowledged > 0 => return (delivered, true),
            Frame::Ack { .. } => {}
            Frame::Ping { sent } | Frame::Pong { sent } if *sent != received => {
                return (delivered, true);
            }
            Frame::Ping { .. } | Frame::Pong { .. } => {}
            Frame::Fin { offset } if *offset < received => {}
            Frame::Fin { offset } if *offset > received => return (delivered, true),
            Frame::Fin { .. } => {
                peer_fin = true;
                received += 1;
            }
        }
    }
    (delivered, false)
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes never panic the decoders, and what the frame decoder takes keeps to its bounds.
    #[test]
    fn prop_decoders_survive_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buffer = BytesMut::from(&input[..]);
        decode_checked(&mut buffer);
        let mut hello = [0; HELLO_LEN];
        let length = input.len().min(HELLO_LEN);
        hello[..length].copy_from_slice(&input[..length]);
        let _ = Hello::decode(&hello);
        let mut welcome = [0; WELCOME_LEN];
        let length = input.len().min(WELCOME_LEN);
        welcome[..length].copy_from_slice(&input[..length]);
        let _ = Welcome::decode(&welcome);
    }

    /// Arbitrary bytes after a valid magic never panic the hello and welcome decoders, and are refused unless
    /// their checksum holds.
    #[test]
    fn prop_hello_and_welcome_survive_arbitrary_bodies(
        hello_body in proptest::array::uniform29(any::<u8>()),
        welcome_body in proptest::array::uniform13(any::<u8>()),
    ) {
        let mut hello = [0; HELLO_LEN];
        hello[..8].copy_from_slice(super::wire::HELLO_MAGIC);
        hello[8..].copy_from_slice(&hello_body);
        let checksum_holds = |unit: &[u8]| {
            crc32fast::hash(&unit[..unit.len() - 4]).to_be_bytes() == unit[unit.len() - 4..]
        };
        if Hello::decode(&hello).is_ok() {
            prop_assert!(checksum_holds(&hello));
        }
        let mut welcome = [0; WELCOME_LEN];
        welcome[..8].copy_from_slice(super::wire::WELCOME_MAGIC);
        welcome[8..].copy_from_slice(&welcome_body);
        if Welcome::decode(&welcome).is_ok() {
            prop_assert!(checksum_holds(&welcome));
        }
    }

    /// A hello or welcome damaged by a burst of up to 32 bits is refused: CRC-32 finds every such burst.
    #[test]
    fn prop_damaged_hellos_and_welcomes_are_refused(
        id in proptest::array::uniform16(any::<u8>()),
        received in any::<u64>(),
        resume in any::<bool>(),
        accepted in any::<bool>(),
        position in any::<Index>(),
        burst in 1..=u32::MAX,
    ) {
        let hello = if resume { Hello::Resume { id, received } } else { Hello::New { id } };
        let mut bytes = hello.encode();
        let at = position.index(HELLO_LEN - 3);
        for (byte, damage) in bytes[at..at + 4].iter_mut().zip(burst.to_be_bytes()) {
            *byte ^= damage;
        }
        let decoded = Hello::decode(&bytes);
        prop_assert!(decoded.is_err(), "a damaged hello decoded as {:?}", decoded);

        let welcome = if accepted { Welcome::Accepted { received } } else { Welcome::Unknown };
        let mut bytes = welcome.encode();
        let at = position.index(WELCOME_LEN - 3);
        for (byte, damage) in bytes[at..at + 4].iter_mut().zip(burst.to_be_bytes()) {
            *byte ^= damage;
        }
        let decoded = Welcome::decode(&bytes);
        prop_assert!(decoded.is_err(), "a damaged welcome decoded as {:?}", decoded);
    }

    /// Hellos and welcomes round-trip.
    #[test]
    fn prop_hellos_and_welcomes_round_trip(
        id in proptest::array::uniform16(any::<u8>()),
        received in any::<u64>(),
    ) {
        for hello in [Hello::New { id }, Hello::Resume { id, received }] {
            prop_assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        }
        for welcome in [Welcome::Accepted { received }, Welcome::Unknown] {
            prop_assert_eq!(Welcome::decode(&welcome.encode()), Ok(welcome));
        }
    }

    /// Valid frames with bytes flipped, replaced, inserted, deleted or cut off never panic the decoder.
    #[test]
    fn prop_frame_decoder_survives_mutated_frames(
        frames in proptest::collection::vec(frame(), 1..6),
        mutations in mutations(),
    ) {
        let mut bytes = encode_all(&frames);
        mutate(&mut bytes, &mutations);
        let mut buffer = BytesMut::from(&bytes[..]);
        decode_checked(&mut buffer);
    }

    /// Any one byte changed in a valid frame is an error, or (in a length) a wait for more, never a different
    /// frame.
    #[test]
    fn prop_a_damaged_frame_is_never_taken_for_another(
        frame in frame(),
        position in any::<Index>(),
        flip in 1..=255u8,
    ) {
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        let index = position.index(encoded.len());
        encoded[index] ^= flip;
        let decoded = Frame::decode(&mut encoded);
        prop_assert!(!matches!(decoded, Ok(Some(_))), "damaged frame decoded as {:?}", decoded);
    }

    /// Valid frames decode to themselves, whole or fed in pieces cut anywhere.
    #[test]
    fn prop_frames_round_trip_whole_and_split(
        frames in proptest::collection::vec(frame(), 0..8),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        let bytes = encode_all(&frames);
        let mut whole = BytesMut::from(&bytes[..]);
        let (decoded, error) = decode_checked(&mut whole);
        prop_assert_eq!(error, None);
        prop_assert_eq!(&decoded, &frames);
        prop_assert!(whole.is_empty());

        let mut buffer = BytesMut::new();
        let mut pieced = Vec::new();
        for piece in pieces(&bytes, &cuts) {
            buffer.extend_from_slice(piece);
            let (decoded, error) = decode_checked(&mut buffer);
            prop_assert_eq!(error, None);
            pieced.extend(decoded);
        }
        prop_assert_eq!(&pieced, &frames);
        prop_assert!(buffer.is_empty());
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// A link fed arbitrary bytes (after a welcome or not) detaches with a reason and never finishes.
    #[test]
    fn prop_link_survives_arbitrary_bytes(
        input in proptest::collection::vec(any::<u8>(), 0..256),
        welcome_pending in any::<bool>(),
    ) {
        let (outcome, _) = run_link(vec![input], welcome_pending);
        prop_assert!(
            matches!(outcome, Outcome::Broken(_) | Outcome::Damaged(_) | Outcome::Failed(_)),
            "{:?}", outcome
        );
    }

    /// A link fed frames a hostile peer could send, checksummed correctly and cut anywhere into the transport's
    /// reads, delivers exactly the bytes a correct link would, once each and in order, and detaches with a reason.
    #[test]
    fn prop_link_delivers_exactly_what_hostile_frames_allow(
        frames in proptest::collection::vec(frame(), 0..12),
        cuts in proptest::collection::vec(any::<Index>(), 0..4),
    ) {
        let (expected, _) = model(&frames);
        let bytes = encode_all(&frames);
        let pieces = pieces(&bytes, &cuts).into_iter().map(<[u8]>::to_vec).collect();
        let (outcome, delivered) = run_link(pieces, false);
        prop_assert!(
            matches!(outcome, Outcome::Damaged(_) | Outcome::Failed(_)),
            "{:?}", outcome
        );
        prop_assert_eq!(delivered, expected);
    }

    /// The agent's door: a transport that does not open with a hello (arbitrary bytes, or a hello with a burst of
    /// damage in it) is refused with an error, and the registry holds nothing for it.
    #[test]
    fn prop_the_registry_refuses_what_is_not_a_hello(
        garbage in proptest::collection::vec(any::<u8>(), 0..64),
        id in proptest::array::uniform16(any::<u8>()),
        received in any::<u64>(),
        damaged in proptest::option::of((any::<bool>(), any::<Index>(), 1..=u32::MAX)),
    ) {
        let input = match damaged {
            None => garbage,
            Some((resume, position, burst)) => {
                let hello = if resume { Hello::Resume { id, received } } else { Hello::New { id } };
                let mut bytes = hello.encode();
                let at = position.index(HELLO_LEN - 3);
                for (byte, damage) in bytes[at..at + 4].iter_mut().zip(burst.to_be_bytes()) {
                    *byte ^= damage;
                }
                bytes.to_vec()
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (refused, held) = runtime.block_on(async {
            let registry = Registry::new();
            let (mut client, agent) = tokio::io::duplex(1024);
            client.write_all(&input).await.unwrap();
            drop(client);
            let accepted = tokio::time::timeout(Duration::from_secs(10), registry.accept(Box::new(agent))).await;
            (matches!(accepted, Ok(Err(_))), registry.len())
        });
        prop_assert!(refused, "a transport without a hello was not refused");
        prop_assert_eq!(held, 0);
    }

    /// A link fed mutated frames never panics and detaches with a reason.
    #[test]
    fn prop_link_survives_mutated_frames(
        frames in proptest::collection::vec(frame(), 1..8),
        mutations in mutations(),
    ) {
        let mut bytes = encode_all(&frames);
        mutate(&mut bytes, &mutations);
        let (outcome, _) = run_link(vec![bytes], false);
        prop_assert!(
            matches!(outcome, Outcome::Broken(_) | Outcome::Damaged(_) | Outcome::Failed(_)),
            "{:?}", outcome
        );
    }
}

/// A data frame claiming 4 GiB (or just over the limit) is refused from its header, without waiting for its
/// bytes or making room for them.
#[test]
fn a_data_frame_claiming_4_gib_is_an_error_without_allocating() {
    for length in [u32::MAX, MAX_PAYLOAD as u32 + 1] {
        let mut header = vec![1u8];
        header.extend_from_slice(&7u64.to_be_bytes());
        header.extend_from_slice(&length.to_be_bytes());
        header.extend_from_slice(&[0; 4]);
        let mut buffer = BytesMut::with_capacity(header.len());
        buffer.extend_from_slice(&header);
        assert_eq!(Frame::decode(&mut buffer), Err(WireError::TooLong(length)));
        assert_eq!(buffer.capacity(), header.len(), "the decoder made room");
        assert_eq!(buffer.len(), header.len());
    }
    // The largest allowed one decodes.
    let frame = Frame::Data {
        offset: 0,
        payload: Bytes::from(vec![5; MAX_PAYLOAD]),
    };
    let mut buffer = BytesMut::new();
    frame.encode(&mut buffer);
    assert_eq!(Frame::decode(&mut buffer), Ok(Some(frame)));
}

/// The bug `prop_link_delivers_exactly_what_hostile_frames_allow` found: a correctly checksummed data frame at
/// offset u64::MAX carrying one byte overflowed `offset + length` in the link's reader. Debug builds panicked
/// (killing the agent's connection task before it freed its registry slot); release builds wrapped and ignored
/// the frame. It is the peer breaking the protocol, and fails the link with a reason.
#[test]
fn a_data_frame_past_the_end_of_any_stream_fails_the_link_instead_of_overflowing() {
    let frames = [Frame::Data {
        offset: u64::MAX,
        payload: Bytes::from_static(b"\0"),
    }];
    let (outcome, delivered) = run_link(vec![encode_all(&frames)], false);
    assert!(
        matches!(&outcome, Outcome::Failed(reason) if reason.contains("past the end of any stream")),
        "{outcome:?}"
    );
    assert!(delivered.is_empty());
}
