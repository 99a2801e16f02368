use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

use super::*;

/// The example frames of PROTOCOL.md §5, byte for byte.
#[test]
fn frames_match_the_protocol_examples() {
    assert_eq!(
        &encode(CMD_SYN, 3, &[])[..],
        &[0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00]
    );
    assert_eq!(
        &encode(CMD_PSH, 3, b"hello")[..],
        &[
            0x01, 0x02, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f
        ]
    );
    assert_eq!(
        &encode(CMD_FIN, 3, &[])[..],
        &[0x01, 0x01, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00]
    );
    assert_eq!(
        &encode(CMD_NOP, 0, &[])[..],
        &[0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    );
    let mut buffer = BytesMut::from(
        &[
            0x01, 0x02, 0x05, 0x00, 0x03, 0x00, 0x00, 0x00, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x01,
        ][..],
    );
    let frame = decode(&mut buffer).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame {
            command: CMD_PSH,
            stream_id: 3,
            payload: Bytes::from_static(b"hello")
        }
    );
    assert_eq!(decode(&mut buffer), Ok(None), "one byte is not a header");
}

#[test]
fn bad_frames_are_errors_that_name_the_problem() {
    let mut wrong_version = BytesMut::from(&[2u8, 2, 0, 0, 3, 0, 0, 0][..]);
    assert_eq!(decode(&mut wrong_version), Err(FrameError::Version(2)));
    let mut unknown = BytesMut::from(&[1u8, 4, 8, 0, 3, 0, 0, 0][..]);
    assert_eq!(
        decode(&mut unknown).unwrap_err().to_string(),
        "smux frame with unknown command 4"
    );
    let mut fin_with_data = BytesMut::from(&[1u8, 1, 1, 0, 3, 0, 0, 0, 9][..]);
    assert!(matches!(
        decode(&mut fin_with_data),
        Err(FrameError::UnexpectedPayload { .. })
    ));
}

/// A small deterministic generator, so the fuzz cases are the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Fuzzes the decoder: arbitrary bytes and mutated valid frames never panic, and a decoded frame never claims
/// more bytes than it had.
#[test]
fn the_decoder_survives_arbitrary_and_mutated_input() {
    let mut random = Lcg(0x5eed);
    for case in 0..50_000 {
        let mut input = if case % 2 == 0 {
            (0..random.below(64))
                .map(|_| random.next() as u8)
                .collect::<Vec<u8>>()
        } else {
            let payload: Vec<u8> = (0..random.below(40)).map(|_| random.next() as u8).collect();
            let mut frame = encode(CMD_PSH, random.next() as u32, &payload).to_vec();
            frame.extend_from_slice(&encode(CMD_FIN, 3, &[]));
            for _ in 0..=random.below(3) {
                let at = random.below(frame.len());
                frame[at] ^= 1 << random.below(8);
            }
            frame.truncate(random.below(frame.len() + 1));
            frame
        };
        let before = input.len();
        let mut buffer = BytesMut::from(&input[..]);
        let mut consumed = 0;
        while let Ok(Some(frame)) = decode(&mut buffer) {
            consumed += HEADER_SIZE + frame.payload.len();
        }
        assert!(consumed <= before, "case {case} consumed more than it had");
        input.clear();
    }
}

/// A frame split anywhere across session messages decodes the same.
#[test]
fn frames_split_across_messages_reassemble() {
    let mut stream = Vec::new();
    for index in 0..20u32 {
        let payload = vec![index as u8; (index * 37 % 300) as usize];
        stream.extend_from_slice(&encode(CMD_PSH, 3 + 2 * index, &payload));
    }
    let mut random = Lcg(7);
    for _ in 0..200 {
        let mut buffer = BytesMut::new();
        let mut frames = Vec::new();
        let mut offset = 0;
        while offset < stream.len() {
            let end = (offset + 1 + random.below(50)).min(stream.len());
            buffer.extend_from_slice(&stream[offset..end]);
            offset = end;
            while let Some(frame) = decode(&mut buffer).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 20);
        assert!(frames.iter().enumerate().all(|(index, frame)| {
            frame.stream_id == 3 + 2 * index as u32 && frame.payload.len() == index * 37 % 300
        }));
    }
}

/// A stand-in for the session below: what the client sends is collected; the test decides what arrives.
struct Peer {
    inbound: mpsc::Sender<Inbound>,
    sent: mpsc::UnboundedReceiver<Bytes>,
    received: BytesMut,
}

impl Peer {
    fn start() -> (Mux, Peer) {
        let (inbound, inbound_rx) = mpsc::channel(16);
        let (sent_tx, sent) = mpsc::unbounded_channel::<Bytes>();
        let send: Sender = Arc::new(move |bytes| {
            let sent_tx = sent_tx.clone();
            Box::pin(async move { sent_tx.send(bytes).map_err(|_| "peer gone".to_owned()) })
        });
        (
            Mux::start(
                tokio_stream::wrappers::ReceiverStream::new(inbound_rx),
                send,
            ),
            Peer {
                inbound,
                sent,
                received: BytesMut::new(),
            },
        )
    }

    async fn next_frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = decode(&mut self.received).unwrap() {
                return frame;
            }
            let bytes = self.sent.recv().await.expect("the client sent more");
            self.received.extend_from_slice(&bytes);
        }
    }

    async fn push(&self, frame: Bytes) {
        self.inbound.send(Inbound::Data(frame)).await.unwrap();
    }
}

#[tokio::test]
async fn streams_open_with_odd_ids_from_three_and_carry_bytes_both_ways() {
    let (mux, mut peer) = Peer::start();
    let mut first = mux.open().unwrap();
    let second = mux.open().unwrap();
    assert_eq!((first.id(), second.id()), (3, 5));
    assert_eq!(peer.next_frame().await.command, CMD_SYN);
    assert_eq!(peer.next_frame().await.stream_id, 5);

    first.write_all(b"ping").await.unwrap();
    let frame = peer.next_frame().await;
    assert_eq!((frame.command, &frame.payload[..]), (CMD_PSH, &b"ping"[..]));

    // One message holding two frames, the second split over two messages.
    let mut both = BytesMut::new();
    both.extend_from_slice(&encode(CMD_PSH, 3, b"po"));
    both.extend_from_slice(&encode(CMD_PSH, 3, b"ng"));
    let both = both.freeze();
    peer.push(both.slice(..12)).await;
    peer.push(both.slice(12..)).await;
    peer.push(encode(CMD_FIN, 3, &[])).await;
    let mut answer = Vec::new();
    first.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"pong");

    drop(second);
    let frame = peer.next_frame().await;
    assert_eq!((frame.command, frame.stream_id), (CMD_FIN, 5));
}

/// The bug PROTOCOL.md §10 describes: a stream whose session died must not read as a clean, short end of file.
#[tokio::test]
async fn a_stream_whose_session_ends_fails_instead_of_ending_short() {
    let (mux, peer) = Peer::start();
    let mut stream = mux.open().unwrap();
    peer.push(encode(CMD_PSH, 3, b"partial")).await;
    peer.inbound
        .send(Inbound::Ended("websocket dropped and not resumed".into()))
        .await
        .unwrap();
    let mut data = Vec::new();
    let error = stream.read_to_end(&mut data).await.unwrap_err();
    assert_eq!(data, b"partial");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    assert!(error.to_string().contains("websocket dropped"), "{error}");
    assert!(mux.open().is_err(), "no stream opens on an ended session");
    assert!(stream.write_all(b"more").await.is_err());
}

#[tokio::test]
async fn a_replaced_session_fails_open_streams_but_new_ones_work() {
    let (mux, mut peer) = Peer::start();
    let mut old = mux.open().unwrap();
    peer.next_frame().await;
    peer.inbound
        .send(Inbound::Replaced("resume refused".into()))
        .await
        .unwrap();
    let error = old.read_u8().await.unwrap_err();
    assert!(error.to_string().contains("replaced"), "{error}");

    let mut new = mux.open().unwrap();
    assert_eq!(peer.next_frame().await.stream_id, new.id());
    peer.push(encode(CMD_PSH, new.id(), b"x")).await;
    assert_eq!(new.read_u8().await.unwrap(), b'x');
}

#[tokio::test]
async fn a_corrupt_byte_stream_fails_every_stream() {
    let (mux, peer) = Peer::start();
    let mut stream = mux.open().unwrap();
    peer.push(Bytes::from_static(&[9, 9, 9, 9, 9, 9, 9, 9]))
        .await;
    let error = stream.read_u8().await.unwrap_err();
    assert!(error.to_string().contains("corrupt"), "{error}");
}

#[tokio::test]
async fn large_writes_are_split_into_frames_of_at_most_32_kib() {
    let (mux, mut peer) = Peer::start();
    let mut stream = mux.open().unwrap();
    peer.next_frame().await;
    let data: Vec<u8> = (0..100_000u32).map(|index| index as u8).collect();
    let writer = tokio::spawn(async move {
        stream.write_all(&data).await.unwrap();
        stream.shutdown().await.unwrap();
        data
    });
    let mut received = Vec::new();
    loop {
        let frame = peer.next_frame().await;
        if frame.command == CMD_FIN {
            break;
        }
        assert!(frame.payload.len() <= MAX_FRAME);
        received.extend_from_slice(&frame.payload);
    }
    assert_eq!(received, writer.await.unwrap());
}
