//! Property tests of the smux decoder and of the multiplexer's inbound path, with arbitrary bytes and mutated
//! valid frames: nothing panics, no frame is bigger than its header allows, valid frames round-trip whole or
//! split anywhere, and a stream fed a broken byte stream fails with an error instead of waiting forever.
//! `cargo xtask fuzz` runs them (every test under a `props` module) with many more cases.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use tokio::io::AsyncReadExt as _;

use super::*;

#[path = "../../../../../support/props.rs"]
mod support;

use support::{config, mutate, mutations};

/// Valid frames as the agent could send them; stream ids mostly the few a client opens.
fn frame() -> impl Strategy<Value = Frame> {
    let stream_id = prop_oneof![4 => (0..4u32).prop_map(|index| 3 + 2 * index), 1 => any::<u32>()];
    let payload = prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..=usize::from(u16::MAX)),
    ];
    (0..4u8, stream_id, payload).prop_map(|(command, stream_id, payload)| Frame {
        command,
        stream_id,
        payload: if command == CMD_PSH {
            payload.into()
        } else {
            Bytes::new()
        },
    })
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|frame| encode(frame.command, frame.stream_id, &frame.payload).to_vec())
        .collect()
}

/// Decodes until more bytes are needed or the bytes are not smux, checking what every decoder must: a frame
/// never takes more than it was given, never more than its header can say, and a wait leaves the bytes alone.
fn decode_checked(buffer: &mut BytesMut) -> (Vec<Frame>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        let before = buffer.len();
        let capacity = buffer.capacity();
        match decode(buffer) {
            Ok(Some(frame)) => {
                assert!(frame.payload.len() <= usize::from(u16::MAX));
                assert_eq!(buffer.len(), before - HEADER_SIZE - frame.payload.len());
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

/// Reads a stream to its end, or to its error; `None` when it neither ends nor fails (a hang).
async fn read_all(stream: &mut MuxStream) -> Option<io::Result<Vec<u8>>> {
    let mut data = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut data)).await;
    read.ok().map(|result| result.map(|_| data))
}

/// How the session below ends after its bytes.
#[derive(Debug, Clone, Copy)]
enum End {
    /// `Inbound::Ended`.
    Ended,
    /// The stream of inbound events just stops.
    Closed,
    /// A replacement, then the end.
    ReplacedThenEnded,
}

fn end() -> impl Strategy<Value = End> {
    prop_oneof![
        Just(End::Ended),
        Just(End::Closed),
        Just(End::ReplacedThenEnded)
    ]
}

/// Cuts `bytes` into chunks at `cuts` (positions taken modulo its length), as Session Manager messages.
fn chunks(bytes: &[u8], cuts: &[Index]) -> Vec<Bytes> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .map(|pair| Bytes::copy_from_slice(&bytes[pair[0]..pair[1]]))
        .collect()
}

/// What a multiplexer run gave.
struct MuxRun {
    /// Each stream's read to its end: its bytes or its error, `None` for one that neither ended nor failed.
    outcomes: Vec<Option<io::Result<Vec<u8>>>>,
    /// Why the multiplexer ended, once the session did.
    ended: Option<String>,
    /// Whether a stream could still be opened after the end.
    opens_after_end: bool,
}

/// Runs a multiplexer with `streams` open streams over a session that delivers `chunks` and then ends as
/// `end` says.
fn run_mux(streams: usize, chunks: Vec<Bytes>, end: End) -> MuxRun {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut inbound: Vec<Inbound> = chunks.into_iter().map(Inbound::Data).collect();
        match end {
            End::Ended => inbound.push(Inbound::Ended("the test ended it".into())),
            End::Closed => {}
            End::ReplacedThenEnded => {
                inbound.push(Inbound::Replaced("the test replaced it".into()));
                inbound.push(Inbound::Ended("the test ended it".into()));
            }
        }
        let send: Sender = Arc::new(|_| Box::pin(async { Ok::<(), String>(()) }));
        let mux = Mux::start(futures::stream::iter(inbound), send);
        // On a current-thread runtime the receiving task has not run yet: every stream is open before the
        // first byte arrives.
        let mut opened: Vec<MuxStream> = (0..streams).map(|_| mux.open().unwrap()).collect();
        let mut outcomes = Vec::new();
        for stream in &mut opened {
            outcomes.push(read_all(stream).await);
        }
        MuxRun {
            outcomes,
            ended: mux.ended(),
            opens_after_end: mux.open().is_ok(),
        }
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes never panic the decoder, and what it decodes keeps to the headers.
    #[test]
    fn prop_decode_survives_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut buffer = BytesMut::from(&input[..]);
        decode_checked(&mut buffer);
    }

    /// Valid frames with bytes flipped, replaced, inserted, deleted or cut off never panic the decoder.
    #[test]
    fn prop_decode_survives_mutated_frames(
        frames in proptest::collection::vec(frame(), 1..6),
        mutations in mutations(),
    ) {
        let mut bytes = encode_all(&frames);
        mutate(&mut bytes, &mutations);
        let mut buffer = BytesMut::from(&bytes[..]);
        decode_checked(&mut buffer);
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
        for chunk in chunks(&bytes, &cuts) {
            buffer.extend_from_slice(&chunk);
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

    /// The multiplexer's inbound path fed valid frames in pieces cut anywhere: a stream whose FIN arrived reads
    /// exactly its bytes to a clean end, every other stream fails with an error when the session ends (never a
    /// clean, short end), and the multiplexer opens nothing more.
    #[test]
    fn prop_mux_delivers_valid_frames_and_fails_unfinished_streams(
        streams in 1..4usize,
        frames in proptest::collection::vec(frame(), 0..12),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
        end in end(),
    ) {
        let bytes = encode_all(&frames);
        // What each stream should read: its PSH payloads up to its first FIN, if one arrives.
        let mut expected: Vec<(Vec<u8>, bool)> = vec![(Vec::new(), false); streams];
        for frame in &frames {
            let Some(index) = (0..streams).find(|index| frame.stream_id == 3 + 2 * *index as u32) else {
                continue;
            };
            let (data, finished) = &mut expected[index];
            if *finished {
                continue;
            }
            match frame.command {
                CMD_PSH => data.extend_from_slice(&frame.payload),
                CMD_FIN => *finished = true,
                _ => {}
            }
        }
        let MuxRun { outcomes, ended, opens_after_end } = run_mux(streams, chunks(&bytes, &cuts), end);
        for (index, (outcome, (data, finished))) in outcomes.into_iter().zip(expected).enumerate() {
            let Some(outcome) = outcome else {
                return Err(TestCaseError::fail(format!("stream {index} neither ended nor failed")));
            };
            if finished {
                prop_assert_eq!(outcome.unwrap(), data, "stream {}", index);
            } else {
                let error = outcome.expect_err("a stream without FIN ended cleanly");
                prop_assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
            }
        }
        prop_assert!(ended.is_some(), "the multiplexer did not notice its session ended");
        prop_assert!(!opens_after_end, "a stream opened on an ended session");
    }

    /// The multiplexer's inbound path fed mutated frames or arbitrary bytes, in pieces: nothing panics, and
    /// every stream ends or fails once the session is over, none waits forever.
    #[test]
    fn prop_mux_survives_mutated_and_arbitrary_input(
        streams in 1..4usize,
        frames in proptest::collection::vec(frame(), 0..8),
        mutations in mutations(),
        garbage in proptest::collection::vec(any::<u8>(), 0..128),
        use_garbage in any::<bool>(),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
        end in end(),
    ) {
        let bytes = if use_garbage {
            garbage
        } else {
            let mut bytes = encode_all(&frames);
            mutate(&mut bytes, &mutations);
            bytes
        };
        let MuxRun { outcomes, ended, opens_after_end } = run_mux(streams, chunks(&bytes, &cuts), end);
        for (index, outcome) in outcomes.into_iter().enumerate() {
            prop_assert!(outcome.is_some(), "stream {} neither ended nor failed", index);
        }
        prop_assert!(ended.is_some(), "the multiplexer did not notice its session ended");
        prop_assert!(!opens_after_end, "a stream opened on an ended session");
    }
}

/// The largest payload a header can claim (64 KiB - 1, the length is a u16) is waited for, not allocated: the
/// decoder never reserves room for bytes that have not arrived.
#[test]
fn a_header_claiming_the_largest_payload_waits_without_allocating() {
    let mut buffer = BytesMut::with_capacity(HEADER_SIZE);
    buffer.extend_from_slice(&[VERSION, CMD_PSH, 0xff, 0xff, 3, 0, 0, 0]);
    assert_eq!(decode(&mut buffer), Ok(None));
    assert_eq!(buffer.len(), HEADER_SIZE);
    assert_eq!(buffer.capacity(), HEADER_SIZE);

    // Any other command claiming a payload is refused at once instead of waited for.
    let mut buffer = BytesMut::from(&[VERSION, CMD_NOP, 0xff, 0xff, 3, 0, 0, 0][..]);
    assert!(matches!(
        decode(&mut buffer),
        Err(FrameError::UnexpectedPayload { length: 65535, .. })
    ));
}
