//! The resumable connection over in-memory transports that break, lose bytes or belong to an agent that does
//! not speak it, with an echo server standing in for TLS on the agent's side. The wire and the link fed
//! arbitrary and mutated input are property tests in `props.rs`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::BytesMut;
use sha2::{Digest as _, Sha256};
use tokio::io::{
    AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream, ReadBuf,
};

use super::wire::{Frame, HELLO_LEN, Hello, WELCOME_LEN, Welcome, WireError};
use super::*;

/// What a transport does to the bytes the client writes into it.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Nothing.
    None,
    /// After this many bytes the transport dies both ways.
    BreakAfter(usize),
    /// The write that crosses this many bytes is swallowed (reported written, never delivered).
    LoseAt(usize),
    /// Every write after this many bytes is swallowed: the transport goes silent without failing.
    SilentAfter(usize),
    /// Gone silent.
    Silent,
    /// The write that crosses this many bytes never completes, nor does any after it: a transport that takes
    /// nothing more and never says it failed.
    StuckAfter(usize),
}

/// Each write one end of a transport made, in order.
type WriteLog = Arc<std::sync::Mutex<Vec<Vec<u8>>>>;

/// One end of an in-memory transport, with a fault, writing down what it delivers.
struct Faulty {
    inner: Option<DuplexStream>,
    fault: Fault,
    written: usize,
    log: WriteLog,
}

impl AsyncRead for Faulty {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_read(context, buffer),
            None => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }
}

impl AsyncWrite for Faulty {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        match this.fault {
            Fault::BreakAfter(limit) if this.written + buffer.len() > limit => {
                this.inner = None;
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            Fault::LoseAt(at) if this.written + buffer.len() > at => {
                this.fault = Fault::None;
                this.written += buffer.len();
                return Poll::Ready(Ok(buffer.len()));
            }
            Fault::SilentAfter(at) if this.written + buffer.len() > at => {
                this.fault = Fault::Silent;
                return Poll::Ready(Ok(buffer.len()));
            }
            Fault::Silent => return Poll::Ready(Ok(buffer.len())),
            Fault::StuckAfter(at) if this.written + buffer.len() > at => return Poll::Pending,
            _ => {}
        }
        let written = std::task::ready!(Pin::new(inner).poll_write(context, buffer))?;
        this.written += written;
        this.log.lock().unwrap().push(buffer[..written].to_vec());
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_flush(context),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_shutdown(context),
            None => Poll::Ready(Ok(())),
        }
    }
}

/// An agent that echoes every connection, and a dial to it whose `n`th transport gets `faults[n]`.
struct Agent {
    registry: Arc<Registry>,
    dials: Arc<AtomicUsize>,
    /// Dials that asked for a carrier other than the last one.
    suspect: Arc<AtomicUsize>,
    /// What the client's and the agent's ends wrote into their transports.
    client_writes: WriteLog,
    agent_writes: WriteLog,
}

impl Agent {
    fn start() -> Self {
        Self {
            registry: Registry::new(),
            dials: Arc::new(AtomicUsize::new(0)),
            suspect: Arc::new(AtomicUsize::new(0)),
            client_writes: WriteLog::default(),
            agent_writes: WriteLog::default(),
        }
    }

    fn dial(&self, faults: Vec<Fault>) -> Dial {
        let registry = Arc::clone(&self.registry);
        let dials = Arc::clone(&self.dials);
        let suspect = Arc::clone(&self.suspect);
        let client_writes = Arc::clone(&self.client_writes);
        let agent_writes = Arc::clone(&self.agent_writes);
        let faults = Arc::new(faults);
        Arc::new(move |redial| {
            if redial == Redial::Suspect {
                suspect.fetch_add(1, Ordering::SeqCst);
            }
            let registry = Arc::clone(&registry);
            let index = dials.fetch_add(1, Ordering::SeqCst);
            let fault = faults.get(index).copied().unwrap_or(Fault::None);
            let client_writes = Arc::clone(&client_writes);
            let agent_writes = Arc::clone(&agent_writes);
            Box::pin(async move {
                let (client, agent) = tokio::io::duplex(64 * 1024);
                let agent = Faulty {
                    inner: Some(agent),
                    fault: Fault::None,
                    written: 0,
                    log: agent_writes,
                };
                tokio::spawn(async move {
                    if let Ok(Some(Accepted { app, pending })) =
                        registry.accept(Box::new(agent)).await
                    {
                        pending.established();
                        let (mut read, mut write) = tokio::io::split(app);
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                        let _ = write.shutdown().await;
                    }
                });
                Ok(Box::new(Faulty {
                    inner: Some(client),
                    fault,
                    written: 0,
                    log: client_writes,
                }) as Transport)
            })
        })
    }
}

/// Sends `size` pseudo-random bytes through an echo over `dial`; the SHA-256 of what went and what came back,
/// and how the connection ended.
async fn echo(dial: Dial, wait: bool, size: usize) -> (String, String, Result<(), String>) {
    let client = Client::open(dial, wait)
        .await
        .expect("the connection opens");
    let (app, ours) = tokio::io::duplex(APP_BUFFER);
    let carrying = tokio::spawn(client.carry(ours));
    let (mut read, mut write) = tokio::io::split(app);
    let sending = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut sent = 0;
        while sent < size {
            let block: Vec<u8> = (0..(100_003).min(size - sent))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            hasher.update(&block);
            write.write_all(&block).await.unwrap();
            sent += block.len();
        }
        write.shutdown().await.unwrap();
        format!("{:x}", hasher.finalize())
    });
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 65536];
    loop {
        match read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(length) => hasher.update(&buffer[..length]),
        }
    }
    let sent = sending.await.unwrap();
    let ended = carrying.await.unwrap();
    (sent, format!("{:x}", hasher.finalize()), ended)
}

#[tokio::test]
async fn bytes_go_both_ways_and_both_ends_finish() {
    let agent = Agent::start();
    let (sent, received, ended) = echo(agent.dial(vec![]), true, 8 << 20).await;
    assert_eq!(sent, received);
    assert_eq!(ended, Ok(()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(agent.registry.is_empty(), "{:?}", agent.registry);
}

/// The frames of each write in `log` after the hello or welcome.
fn frames_of_writes(log: &WriteLog) -> Vec<Vec<Frame>> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|write| !write.starts_with(b"SKIFFR"))
        .map(|write| {
            let mut buffer = BytesMut::from(&write[..]);
            let mut frames = Vec::new();
            while let Some(frame) = Frame::decode(&mut buffer).expect("whole frames") {
                frames.push(frame);
            }
            assert!(buffer.is_empty(), "a write ends in the middle of a frame");
            frames
        })
        .collect()
}

/// In a request-and-answer exchange each side has the other's last bytes to acknowledge whenever it writes, so
/// the acknowledgement rides in the same write: only a write made more than the acknowledgement delay after
/// the bytes it answers could find one already sent on its own.
#[tokio::test]
async fn in_an_exchange_acknowledgements_ride_with_the_answers() {
    let agent = Agent::start();
    let client = Client::open(agent.dial(vec![]), true)
        .await
        .expect("the connection opens");
    let (app, ours) = tokio::io::duplex(APP_BUFFER);
    let carrying = tokio::spawn(client.carry(ours));
    let (mut read, mut write) = tokio::io::split(app);
    let rounds = 20u8;
    for round in 0..rounds {
        write.write_all(&[round; 100]).await.unwrap();
        let mut answer = [0; 100];
        read.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, [round; 100]);
    }
    for (side, log) in [
        ("client", &agent.client_writes),
        ("agent", &agent.agent_writes),
    ] {
        let writes = frames_of_writes(log);
        let has = |frames: &[Frame], ack: bool| {
            frames.iter().any(|frame| {
                if ack {
                    matches!(frame, Frame::Ack { .. })
                } else {
                    matches!(frame, Frame::Data { .. })
                }
            })
        };
        let mut data_writes = 0;
        let mut acknowledged_alone = false;
        for frames in &writes {
            if has(frames, false) {
                // The client's first request has nothing to acknowledge; every other write answers something.
                let owes = side == "agent" || data_writes > 0;
                assert!(
                    !owes || has(frames, true) || acknowledged_alone,
                    "{side}'s write {data_writes} owed an acknowledgement and carried none: {writes:?}"
                );
                data_writes += 1;
                acknowledged_alone = false;
            } else if has(frames, true) {
                acknowledged_alone = true;
            }
        }
        assert_eq!(data_writes, usize::from(rounds), "{side}: {writes:?}");
    }
    write.shutdown().await.unwrap();
    let mut rest = Vec::new();
    read.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(carrying.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn a_transport_that_breaks_mid_transfer_is_replaced_and_nothing_is_lost() {
    let agent = Agent::start();
    let faults = vec![
        Fault::BreakAfter(3 << 20),
        Fault::BreakAfter(1 << 20),
        Fault::BreakAfter(100),
    ];
    let (sent, received, ended) = echo(agent.dial(faults), false, 16 << 20).await;
    assert_eq!(sent, received, "every byte came back, in order");
    assert_eq!(ended, Ok(()));
    assert!(agent.dials.load(Ordering::SeqCst) >= 4);
}

#[tokio::test]
async fn bytes_lost_inside_a_transport_are_seen_and_sent_again() {
    let agent = Agent::start();
    let faults = vec![Fault::LoseAt(2 << 20), Fault::LoseAt(50_000)];
    let (sent, received, ended) = echo(agent.dial(faults), false, 8 << 20).await;
    assert_eq!(sent, received, "every byte came back, in order");
    assert_eq!(ended, Ok(()));
    assert!(agent.dials.load(Ordering::SeqCst) >= 3);
}

/// A first transport with `fault` is noticed within 15 s (a test that waits 30 s fails rather than hangs) and
/// replaced once, on another carrier, and every byte arrives.
async fn noticed_and_replaced(fault: Fault) {
    let agent = Agent::start();
    let started = std::time::Instant::now();
    let (sent, received, ended) = tokio::time::timeout(
        Duration::from_secs(30),
        echo(agent.dial(vec![fault]), true, 4 << 20),
    )
    .await
    .unwrap_or_else(|_| panic!("a transport with {fault:?} is noticed, not waited on for ever"));
    assert_eq!(sent, received, "every byte came back, in order");
    assert_eq!(ended, Ok(()));
    assert_eq!(agent.dials.load(Ordering::SeqCst), 2);
    assert_eq!(
        agent.suspect.load(Ordering::SeqCst),
        1,
        "the faulty transport's carrier is not used again"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_transport_that_goes_silent_is_noticed_and_replaced() {
    noticed_and_replaced(Fault::SilentAfter(1 << 20)).await;
}

#[tokio::test]
async fn a_transport_whose_writes_never_complete_is_noticed_and_replaced() {
    noticed_and_replaced(Fault::StuckAfter(1 << 20)).await;
}

#[tokio::test]
async fn lost_bytes_with_nothing_after_them_are_found_by_the_next_ping() {
    // The first write after the hello is the only data; it is swallowed and nothing follows it: no later frame
    // shows the gap, the client's next ping does.
    let agent = Agent::start();
    let client = Client::open(agent.dial(vec![Fault::LoseAt(HELLO_LEN)]), false)
        .await
        .unwrap();
    let (mut app, ours) = tokio::io::duplex(APP_BUFFER);
    let carrying = tokio::spawn(client.carry(ours));
    let message: Vec<u8> = (0..1000u32).map(|index| index as u8).collect();
    app.write_all(&message).await.unwrap();
    let mut echoed = vec![0; message.len()];
    tokio::time::timeout(Duration::from_secs(10), app.read_exact(&mut echoed))
        .await
        .expect("the echo arrives after the next ping")
        .unwrap();
    assert_eq!(echoed, message);
    assert_eq!(agent.dials.load(Ordering::SeqCst), 2);
    app.shutdown().await.unwrap();
    let mut rest = Vec::new();
    app.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(carrying.await.unwrap(), Ok(()));
}

#[tokio::test]
async fn an_agent_that_forgot_the_connection_makes_it_an_error() {
    let agent = Agent::start();
    let registry = Arc::clone(&agent.registry);
    let first = agent.dial(vec![Fault::BreakAfter(1 << 20)]);
    // The agent "restarts" once the first transport broke: it holds nothing after that.
    let dials = AtomicUsize::new(0);
    let dial: Dial = Arc::new(move |redial| {
        if dials.fetch_add(1, Ordering::SeqCst) == 1 {
            registry.lock().clear();
        }
        first(redial)
    });
    let client = Client::open(dial, false).await.unwrap();
    let (app, ours) = tokio::io::duplex(APP_BUFFER);
    let carrying = tokio::spawn(client.carry(ours));
    let (mut read, mut write) = tokio::io::split(app);
    let writing = tokio::spawn(async move {
        let block = vec![7; 1 << 20];
        for _ in 0..4 {
            if write.write_all(&block).await.is_err() {
                break;
            }
        }
    });
    let mut sink = Vec::new();
    let _ = read.read_to_end(&mut sink).await;
    let ended = carrying.await.unwrap();
    writing.abort();
    let error = ended.expect_err("a connection the agent forgot cannot go on");
    assert!(error.contains("no longer holds the connection"), "{error}");
    assert!(sink.len() < 4 << 20);
}

/// A dial whose far end reads the hello, answers `answer` and closes.
fn answering(answer: &'static [u8]) -> Dial {
    Arc::new(move |_redial| {
        Box::pin(async move {
            let (client, mut agent) = tokio::io::duplex(1024);
            tokio::spawn(async move {
                let mut hello = [0; HELLO_LEN];
                let _ = agent.read_exact(&mut hello).await;
                let _ = agent.write_all(answer).await;
                drop(agent);
            });
            Ok(Box::new(client) as Transport)
        })
    })
}

#[tokio::test]
async fn an_agent_that_does_not_speak_it_is_unsupported() {
    // An older agent reads the hello as a broken TLS handshake, sends a fatal alert (decode_error) and closes.
    let alert: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];
    let error = Client::open(answering(alert), true)
        .await
        .err()
        .expect("refused");
    assert!(matches!(error, OpenError::Unsupported(_)), "{error}");
}

/// The log said "the agent is older than resumable connections" for every dial while the agent was not listening
/// yet: a tunnel's far end accepts and closes at once, without a byte, and that is told apart now.
#[tokio::test]
async fn a_port_that_closes_without_a_byte_is_not_called_an_old_agent() {
    let error = Client::open(answering(b""), true)
        .await
        .err()
        .expect("refused");
    assert!(matches!(error, OpenError::ClosedAtOnce), "{error}");
}

#[tokio::test]
async fn the_agent_refuses_what_is_not_a_hello() {
    let registry = Registry::new();
    let (mut client, agent) = tokio::io::duplex(1024);
    client.write_all(&[0x16; HELLO_LEN]).await.unwrap();
    let error = registry.accept(Box::new(agent)).await.err().unwrap();
    assert!(
        matches!(error, AcceptError::Wire(WireError::NotThisProtocol(_))),
        "{error}"
    );
    let (mut client, agent) = tokio::io::duplex(1024);
    let mut hello = Hello::New { id: [1; 16] }.encode();
    hello[20] ^= 1;
    client.write_all(&hello).await.unwrap();
    let error = registry.accept(Box::new(agent)).await.err().unwrap();
    assert!(
        matches!(error, AcceptError::Wire(WireError::Checksum(_))),
        "{error}"
    );
    assert!(registry.is_empty());
}

#[test]
fn hellos_and_welcomes_round_trip() {
    for hello in [
        Hello::New { id: [9; 16] },
        Hello::Resume {
            id: [3; 16],
            received: 1 << 40,
        },
    ] {
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
    }
    for welcome in [Welcome::Accepted { received: 77 }, Welcome::Unknown] {
        assert_eq!(Welcome::decode(&welcome.encode()), Ok(welcome));
    }
    assert_eq!(WELCOME_LEN, Welcome::Unknown.encode().len());
}

#[test]
fn a_frame_split_anywhere_decodes_once_whole() {
    let frames = [
        Frame::Data {
            offset: 5,
            payload: bytes::Bytes::from_static(b"hello, world"),
        },
        Frame::Ack { received: 17 },
        Frame::Fin { offset: 17 },
        Frame::Ping { sent: 18 },
        Frame::Pong { sent: 3 },
    ];
    let mut encoded = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut encoded);
    }
    for split in 0..encoded.len() {
        let mut buffer = BytesMut::from(&encoded[..split]);
        let mut decoded = Vec::new();
        while let Some(frame) = Frame::decode(&mut buffer).unwrap() {
            decoded.push(frame);
        }
        buffer.extend_from_slice(&encoded[split..]);
        while let Some(frame) = Frame::decode(&mut buffer).unwrap() {
            decoded.push(frame);
        }
        assert_eq!(decoded, frames, "split at {split}");
        assert!(buffer.is_empty());
    }
}

/// Attack (issue 13): a peer that says hello and then never authenticates must not keep a slot of the registry
/// (which holds at most 1,024) once the agent gives up on it; dropping the pending hold frees it at once,
/// while the peer's transport is still open.
#[tokio::test]
async fn an_abandoned_pending_connection_frees_its_slot_at_once() {
    let registry = Registry::new();
    let (mut client, agent) = tokio::io::duplex(1024);
    client
        .write_all(&Hello::New { id: [7; 16] }.encode())
        .await
        .unwrap();
    let accepted = registry.accept(Box::new(agent)).await.unwrap().unwrap();
    assert_eq!(registry.len(), 1);
    drop(accepted);
    assert!(registry.is_empty(), "the slot outlived its pending hold");
    // The peer's transport is closed with it.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "the abandoned connection's transport was kept open"
    );

    // An established one stays.
    let (mut client, agent) = tokio::io::duplex(1024);
    client
        .write_all(&Hello::New { id: [8; 16] }.encode())
        .await
        .unwrap();
    let Accepted { app, pending } = registry.accept(Box::new(agent)).await.unwrap().unwrap();
    pending.established();
    assert_eq!(registry.len(), 1);
    drop(app);
}
