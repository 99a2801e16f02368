//! Property tests of the process server's wire, with arbitrary bytes and mutated valid encodings: frames
//! (`read_frame`), request lines (`read_line`), the request's JSON, the events the agent reads from a server
//! (which runs in the dev container, so is not trusted), and the server's door for callers without the token.
//! Nothing panics, nothing is read or allocated past [`MAX_FRAME`], valid frames round-trip whole or split
//! anywhere. `cargo xtask fuzz` runs them (every test under a `props` module) with many more cases.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt as _;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestRunner;
use skiff::api::ExecOutput;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};

use super::client::next_event;
use super::*;

#[path = "../../../support/props.rs"]
pub(super) mod support;

use support::{config, mutate, mutations};

/// A reader that hands out `chunks` one read at a time (or less, when the caller's buffer is smaller).
struct Chunked(VecDeque<Vec<u8>>);

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(chunk) = self.0.front_mut() {
            let count = chunk.len().min(buffer.remaining());
            buffer.put_slice(&chunk[..count]);
            chunk.drain(..count);
            if chunk.is_empty() {
                self.0.pop_front();
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Cuts `bytes` into pieces at `cuts` (positions taken modulo its length).
fn pieces(bytes: &[u8], cuts: &[Index]) -> VecDeque<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    at.push(0);
    at.push(bytes.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2)
        .map(|pair| bytes[pair[0]..pair[1]].to_vec())
        .collect()
}

/// Frames of the protocol's kinds (and some unknown ones), mostly small, sometimes large.
fn frame() -> impl Strategy<Value = (u8, Vec<u8>)> {
    let kind = prop_oneof![
        4 => proptest::sample::select(vec![STDIN, STDIN_EOF, RESIZE, SIGNAL, STDOUT, STDERR, EXIT, FAILED, OPENED]),
        1 => any::<u8>(),
    ];
    let payload = prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..32),
        1 => proptest::collection::vec(any::<u8>(), 0..200_000),
    ];
    (kind, payload)
}

fn encode_all(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    futures::executor::block_on(async {
        for (kind, payload) in frames {
            write_frame(&mut out, *kind, payload).await.unwrap();
        }
    });
    out
}

/// Reads frames from `reader` until its end or an error, checking that none is bigger than [`MAX_FRAME`].
fn read_all(reader: &mut (impl AsyncRead + Unpin)) -> (Vec<(u8, Vec<u8>)>, Option<std::io::Error>) {
    futures::executor::block_on(async {
        let mut frames = Vec::new();
        loop {
            match read_frame(reader).await {
                Ok(Some(frame)) => {
                    assert!(frame.1.len() <= MAX_FRAME);
                    frames.push(frame);
                }
                Ok(None) => return (frames, None),
                Err(error) => return (frames, Some(error)),
            }
        }
    })
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary bytes never panic the frame reader, and every frame it reads took exactly its header and payload.
    #[test]
    fn prop_read_frame_survives_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut reader = input.as_slice();
        let (frames, _) = read_all(&mut reader);
        let taken: usize = frames.iter().map(|(_, payload)| 5 + payload.len()).sum();
        prop_assert!(taken + reader.len() <= input.len());
    }

    /// Valid frames with bytes flipped, replaced, inserted, deleted or cut off never panic the frame reader.
    #[test]
    fn prop_read_frame_survives_mutated_frames(
        frames in proptest::collection::vec(frame(), 1..6),
        mutations in mutations(),
    ) {
        let mut bytes = encode_all(&frames);
        mutate(&mut bytes, &mutations);
        read_all(&mut bytes.as_slice());
    }

    /// Valid frames read back as themselves, whole or arriving in pieces cut anywhere.
    #[test]
    fn prop_frames_round_trip_whole_and_split(
        frames in proptest::collection::vec(frame(), 0..8),
        cuts in proptest::collection::vec(any::<Index>(), 0..8),
    ) {
        let bytes = encode_all(&frames);
        let (whole, error) = read_all(&mut bytes.as_slice());
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(&whole, &frames);
        let (pieced, error) = read_all(&mut Chunked(pieces(&bytes, &cuts)));
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(&pieced, &frames);
    }

    /// A request line is never longer than its limit, never read past it, and is what the bytes held.
    #[test]
    fn prop_read_line_keeps_to_its_limit(
        input in proptest::collection::vec(prop_oneof![4 => any::<u8>(), 1 => Just(b'\n'), 1 => Just(b'\r')], 0..200),
        limit in 0..100usize,
    ) {
        let mut reader = input.as_slice();
        let line = futures::executor::block_on(read_line(&mut reader, limit));
        let consumed = input.len() - reader.len();
        prop_assert!(consumed <= limit + 1, "read {} bytes past a limit of {}", consumed, limit);
        if let Ok(Some(line)) = line {
            prop_assert!(line.len() <= limit);
            prop_assert!(input.starts_with(&line));
            prop_assert_eq!(input[consumed - 1], b'\n');
        }
    }

    /// Arbitrary bytes and mutated valid requests never panic the request's parser.
    #[test]
    fn prop_spec_parsing_survives_arbitrary_and_mutated_json(
        garbage in proptest::collection::vec(any::<u8>(), 0..128),
        argv in proptest::collection::vec(".{0,8}", 0..4),
        tty in proptest::option::of((any::<u16>(), any::<u16>())),
        port in proptest::option::of(any::<u16>()),
        mutations in mutations(),
    ) {
        let _ = serde_json::from_slice::<Spec>(&garbage);
        let spec = Spec {
            argv,
            env: vec!["A=b".into()],
            cwd: Some("/workspaces/x".into()),
            user: Some("1000:1000".into()),
            tty,
            connect: port.map(|port| ConnectTarget { host: Some("db".into()), port }),
        };
        let mut json = serde_json::to_vec(&spec).unwrap();
        prop_assert_eq!(serde_json::from_slice::<Spec>(&json).unwrap(), spec);
        mutate(&mut json, &mutations);
        let _ = serde_json::from_slice::<Spec>(&json);
    }

    /// Whatever a process server sends, the agent's events are output, then exactly one last event (an exit or
    /// an error), then nothing: a hostile server can neither panic the agent nor make a process end twice.
    #[test]
    fn prop_process_events_end_once_whatever_the_server_sends(
        frames in proptest::collection::vec(frame(), 0..8),
        mutations in proptest::option::of(mutations()),
        cuts in proptest::collection::vec(any::<Index>(), 0..4),
    ) {
        let mut bytes = encode_all(&frames);
        if let Some(mutations) = &mutations {
            mutate(&mut bytes, mutations);
        }
        let reader = Chunked(pieces(&bytes, &cuts));
        let events: Vec<_> = futures::executor::block_on(
            futures::stream::unfold(Some(reader), next_event).collect(),
        );
        let (last, output) = events.split_last().expect("at least one event");
        prop_assert!(output
            .iter()
            .all(|event| matches!(event, Ok(ExecOutput::Stdout(_) | ExecOutput::Stderr(_)))));
        prop_assert!(!matches!(last, Ok(ExecOutput::Stdout(_) | ExecOutput::Stderr(_))), "{:?}", last);
        if mutations.is_none() {
            // Unchanged frames: the events are the frames up to the first that is not output.
            // Frames that run out before a last one end with an error of their own.
            let expected = frames
                .iter()
                .position(|(kind, _)| *kind != STDOUT && *kind != STDERR)
                .map_or(frames.len() + 1, |last| last + 1);
            prop_assert_eq!(events.len(), expected);
        }
    }
}

/// A frame claiming 4 GiB, or one byte over the limit, is an error from its header alone: nothing after the
/// header is read, so nothing is allocated for it. The largest allowed frame is read whole.
#[test]
fn a_frame_claiming_4_gib_is_an_error_without_reading_it() {
    for length in [u32::MAX, MAX_FRAME as u32 + 1] {
        let mut input = vec![STDOUT];
        input.extend(length.to_be_bytes());
        input.extend([7u8; 64]);
        let mut reader = input.as_slice();
        let error = futures::executor::block_on(read_frame(&mut reader)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("larger than"), "{error}");
        assert_eq!(reader.len(), 64, "the reader went past the header");
    }
    let largest = encode_all(&[(STDOUT, vec![1; MAX_FRAME])]);
    let (frames, error) = read_all(&mut largest.as_slice());
    assert!(error.is_none());
    assert_eq!(frames[0].1.len(), MAX_FRAME);
}

/// Callers without the token hear nothing, whatever they send, and are disconnected at once: arbitrary bytes
/// and mutated versions of a real request with a wrong token, against a real server on loopback.
#[test]
fn prop_the_server_says_nothing_to_callers_without_the_token() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let token = new_token().unwrap();
    let address = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(server::serve(
            listener,
            token.clone(),
            Duration::from_secs(5),
        ));
        address
    });
    let wrong_token = new_token().unwrap();
    let request = format!(
        "{wrong_token}\n{{\"argv\":[\"true\"],\"env\":[],\"cwd\":null,\"user\":null,\"tty\":null}}\n"
    );
    let input = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        mutations().prop_map(move |mutations| {
            let mut bytes = request.clone().into_bytes();
            mutate(&mut bytes, &mutations);
            bytes
        }),
    ];
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&input, |input| {
        prop_assume!(!input.starts_with(token.as_bytes()));
        let answer = runtime.block_on(async {
            let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
            // The server may hang up before taking everything; that is its right.
            let _ = stream.write_all(&input).await;
            let _ = stream.shutdown().await;
            let mut answer = Vec::new();
            let read =
                tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
                    .await;
            read.map(|_| answer)
        });
        let answer = answer.map_err(|_| {
            TestCaseError::fail("the server kept a caller without the token waiting")
        })?;
        prop_assert!(
            answer.is_empty(),
            "a caller without the token heard {:?}",
            answer
        );
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
