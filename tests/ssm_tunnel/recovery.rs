//! How fast and how cleanly the data channel recovers (issue 15), through the gateway to a plain TCP sink on
//! loopback, with no agent, TLS or gRPC above the tunnel, so the figures are the data channel's own:
//!
//! - a TCP connection cut in the middle of a 20 MiB upload costs at most half the undisturbed time again, in
//!   each of 10 runs (the session is resumed and every unacknowledged message sent again at once);
//! - with every 50th message lost, at most half again too (every expired message is resent, not only the
//!   oldest);
//! - once the client has a message, the agent resends it at most 3 times (duplicates are acknowledged again);
//! - a WebSocket closed cleanly without `channel_closed` is resumed (the same session), not replaced;
//! - repeated messages are acknowledged again.
//!
//! Pacing is off, so a run takes about a second; each timed assertion compares against an undisturbed upload
//! measured in the same run, on the same tunnel.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use skiff_client::tunnel::ssm::{Target, Tunnel};
use skiff_tests::ssm_gateway::{Faults, Gateway, GatewayConfig};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::{INSTANCE, runtime};

const UPLOAD: usize = 20 << 20;
/// How much slower a disturbed upload may be than an undisturbed one (issue 15).
const SLOWDOWN: f64 = 1.5;

/// A TCP server on loopback: each connection's first 8 bytes say how many bytes follow; it reads them and
/// answers with their SHA-256. It runs until the runtime ends.
async fn sink() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut length = [0u8; 8];
                connection.read_exact(&mut length).await?;
                let mut left = u64::from_be_bytes(length);
                let mut hasher = Sha256::new();
                let mut buffer = vec![0u8; 256 * 1024];
                while left > 0 {
                    let wanted = buffer.len().min(left as usize);
                    let count = connection.read(&mut buffer[..wanted]).await?;
                    if count == 0 {
                        break;
                    }
                    hasher.update(&buffer[..count]);
                    left -= count as u64;
                }
                connection.write_all(&hasher.finalize()).await?;
                std::io::Result::Ok(())
            });
        }
    });
    address
}

async fn gateway(config: GatewayConfig) -> (Gateway, aws_config::SdkConfig) {
    let gateway = Gateway::start(config).await.unwrap();
    gateway.set_online(INSTANCE, true);
    let sdk = gateway.sdk_config().await;
    (gateway, sdk)
}

async fn open(sdk: &aws_config::SdkConfig, port: u16) -> Tunnel {
    let target = Target {
        instance_id: INSTANCE.into(),
        port,
    };
    Tunnel::open(sdk, &target, true).await.unwrap()
}

/// Uploads `body` through a new stream of `tunnel` to the sink; checks the sink's digest and returns the time
/// from the first byte to the answer.
async fn upload(tunnel: &Tunnel, body: &[u8]) -> Duration {
    let expected: [u8; 32] = Sha256::digest(body).into();
    let stream = tunnel.open_stream().unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let started = Instant::now();
    let writing = async {
        writer
            .write_all(&(body.len() as u64).to_be_bytes())
            .await
            .unwrap();
        writer.write_all(body).await.unwrap();
    };
    let reading = async {
        let mut digest = [0u8; 32];
        reader.read_exact(&mut digest).await.map(|_| digest)
    };
    let ((), digest) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(writing, reading)
    })
    .await
    .expect("the upload ends within 60 s");
    let elapsed = started.elapsed();
    let digest = digest.unwrap_or_else(|error| {
        panic!(
            "the upload's answer did not come ({error}); tunnel ended: {:?}",
            tunnel.ended()
        )
    });
    assert_eq!(digest, expected, "the sink received other bytes");
    elapsed
}

fn body(size: usize) -> Vec<u8> {
    let mut state = 0x0bad_cafe_f00d_u64;
    skiff_tests::noise(&mut state, size)
}

/// Drops the gateway's WebSockets (TCP closed, no Close frame) once `bytes` reached the agent side.
fn cut_after(gateway: &std::sync::Arc<Gateway>, bytes: u64) -> tokio::task::JoinHandle<()> {
    let gateway = std::sync::Arc::clone(gateway);
    tokio::spawn(async move {
        let start = gateway.stats().bytes_to_agent;
        while gateway.stats().bytes_to_agent < start + bytes {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        gateway.drop_websockets();
    })
}

/// Each cut upload is compared with the median of the test's 10 undisturbed ones: a single undisturbed upload
/// of about 0.1 s varies by half its time on a loaded machine, which a per-run pair would read as the cut's cost
/// (seen: 79 ms undisturbed against 81 ms with a cut in one run, 84 ms against 149 ms in the next).
/// The resume itself takes 1–5 ms (the channel logs it). While this binary's tests ran side by side, a cut
/// upload landed above 1.5 times the median in 1 to 3 runs of 10 when another test's transfer hit it; they now run
/// one at a time (`main::ALONE`), and the cut runs measured 0.95–1.25 times the median.
#[test]
fn a_tcp_cut_in_the_middle_of_a_20_mib_upload_costs_at_most_half_its_time_again_in_10_runs() {
    runtime().block_on(async {
        let (gateway, sdk) = gateway(GatewayConfig::default()).await;
        let gateway = std::sync::Arc::new(gateway);
        let sink = sink().await;
        let body = body(UPLOAD);
        let mut undisturbed_times = Vec::new();
        let mut cut_times = Vec::new();
        // One whole untimed upload first: the process's first 20 MiB (its allocator, the sink, the page cache) took
        // twice the others' time in a full test run (170 ms against a median of 73 ms), cut or not, which a
        // per-run comparison against the median reads as the cut's cost.
        let warm = open(&sdk, sink.port()).await;
        upload(&warm, &body).await;
        warm.close().await;
        for run in 1..=10 {
            let tunnel = open(&sdk, sink.port()).await;
            let session = tunnel.session_id().to_owned();
            // A small upload first, so both timed ones start on a warm tunnel.
            upload(&tunnel, &body[..1 << 20]).await;
            let undisturbed = upload(&tunnel, &body).await;
            let before = gateway.stats();
            let cutter = cut_after(&gateway, (UPLOAD / 2) as u64);
            let cut = upload(&tunnel, &body).await;
            cutter.await.unwrap();
            let after = gateway.stats();
            eprintln!("run {run}: 20 MiB undisturbed {undisturbed:?}, with a TCP cut {cut:?}");
            assert_eq!(after.websockets_dropped, before.websockets_dropped + 1);
            assert!(
                after.sessions_resumed > before.sessions_resumed,
                "run {run}: the cut session was resumed: {after:?}"
            );
            assert_eq!(
                after.sessions_started, before.sessions_started,
                "run {run}: resumed, not replaced"
            );
            assert_eq!(tunnel.session_id(), session);
            undisturbed_times.push(undisturbed);
            cut_times.push(cut);
            tunnel.close().await;
        }
        let mut sorted = undisturbed_times.clone();
        sorted.sort();
        let median = (sorted[4] + sorted[5]) / 2;
        let failures: Vec<String> = cut_times
            .iter()
            .enumerate()
            .filter(|(_, cut)| cut.as_secs_f64() > SLOWDOWN * median.as_secs_f64())
            .map(|(index, cut)| {
                format!(
                    "run {}: {cut:?} with the cut ({:.2}x)",
                    index + 1,
                    cut.as_secs_f64() / median.as_secs_f64()
                )
            })
            .collect();
        eprintln!("undisturbed median {median:?}; with a cut {cut_times:?}");
        assert!(
            failures.is_empty(),
            "a TCP cut made a 20 MiB upload more than {SLOWDOWN}x slower than the undisturbed median {median:?}:\n{}",
            failures.join("\n")
        );
    });
}

/// Losing every 50th message costs an upload at most half its time again: the medians of seven lossy and seven
/// undisturbed uploads, alternating, compared (one pair alone is at the mercy of the machine's other work at the
/// scale of 100 ms).
#[test]
fn with_every_50th_message_lost_a_20_mib_upload_costs_at_most_half_its_time_again() {
    const RUNS: usize = 7;
    runtime().block_on(async {
        let (gateway, sdk) = gateway(GatewayConfig::default()).await;
        let sink = sink().await;
        let body = body(UPLOAD);
        let tunnel = open(&sdk, sink.port()).await;
        upload(&tunnel, &body[..1 << 20]).await;
        let mut undisturbed_times = Vec::new();
        let mut lossy_times = Vec::new();
        for run in 1..=RUNS {
            gateway.set_faults(Faults::none());
            let undisturbed = upload(&tunnel, &body).await;
            let before = gateway.stats();
            gateway.set_faults(Faults {
                drop_every: Some(50),
                ..Faults::none()
            });
            let lossy = upload(&tunnel, &body).await;
            let after = gateway.stats();
            eprintln!(
                "run {run}: 20 MiB undisturbed {undisturbed:?}, every 50th message lost {lossy:?} ({:.2}x, {} lost)",
                lossy.as_secs_f64() / undisturbed.as_secs_f64(),
                after.messages_lost - before.messages_lost
            );
            assert!(after.messages_lost > before.messages_lost, "{after:?}");
            undisturbed_times.push(undisturbed);
            lossy_times.push(lossy);
        }
        gateway.set_faults(Faults::none());
        tunnel.close().await;
        undisturbed_times.sort();
        lossy_times.sort();
        let (undisturbed, lossy) = (undisturbed_times[RUNS / 2], lossy_times[RUNS / 2]);
        let ratio = lossy.as_secs_f64() / undisturbed.as_secs_f64();
        eprintln!("medians: undisturbed {undisturbed:?}, every 50th message lost {lossy:?} ({ratio:.2}x)");
        assert!(
            ratio <= SLOWDOWN,
            "losing every 50th message made a 20 MiB upload more than {SLOWDOWN}x slower: median {lossy:?} against {undisturbed:?} ({ratio:.2}x); runs {lossy_times:?} against {undisturbed_times:?}"
        );
    });
}

/// An echo server on loopback.
async fn echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = connection.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    address
}

/// Sends `body` through a stream to the echo server and checks what comes back.
async fn echo_round_trip(tunnel: &Tunnel, body: &[u8]) {
    let stream = tunnel.open_stream().unwrap();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let writing = async { writer.write_all(body).await.unwrap() };
    let reading = async {
        let mut echoed = vec![0u8; body.len()];
        reader.read_exact(&mut echoed).await.map(|_| echoed)
    };
    let ((), echoed) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(writing, reading)
    })
    .await
    .expect("the echo comes back within 60 s");
    let echoed = echoed.unwrap_or_else(|error| {
        panic!(
            "the echo ended early ({error}); tunnel ended: {:?}",
            tunnel.ended()
        )
    });
    assert!(echoed == body, "the echo differs from what was sent");
}

#[test]
fn after_a_drop_no_message_is_resent_more_than_3_times_once_the_client_has_it() {
    runtime().block_on(async {
        let (gateway, sdk) = gateway(GatewayConfig {
            faults: Faults {
                drop_every: Some(50),
                ..Faults::none()
            },
            ..GatewayConfig::default()
        })
        .await;
        let echo = echo().await;
        let tunnel = open(&sdk, echo.port()).await;
        echo_round_trip(&tunnel, &body(4 << 20)).await;
        // Idle a while: a message the client has but never acknowledged would be resent all along.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let stats = gateway.stats();
        eprintln!("{stats:?}");
        assert!(stats.messages_lost > 50, "{stats:?}");
        assert!(stats.retransmissions_sent > 0, "{stats:?}");
        assert!(
            stats.most_resends_after_delivery <= 3,
            "a message the client had was resent {} times: {stats:?}",
            stats.most_resends_after_delivery
        );
        tunnel.close().await;
    });
}

#[test]
fn a_clean_close_without_channel_closed_is_resumed_not_replaced() {
    runtime().block_on(async {
        let (gateway, sdk) = gateway(GatewayConfig::default()).await;
        let echo = echo().await;
        let tunnel = open(&sdk, echo.port()).await;
        let session = tunnel.session_id().to_owned();
        let stream = tunnel.open_stream().unwrap();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut echoed = [0u8; 6];
        writer.write_all(b"before").await.unwrap();
        reader.read_exact(&mut echoed).await.unwrap();
        gateway.close_websockets();
        let deadline = Instant::now() + Duration::from_secs(10);
        while gateway.stats().sessions_resumed == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The same stream goes on over the resumed session.
        writer.write_all(b"after!").await.unwrap();
        reader.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"after!");
        let stats = gateway.stats();
        assert_eq!(stats.websockets_closed, 1, "{stats:?}");
        assert_eq!(
            stats.sessions_resumed, 1,
            "ResumeSession was called: {stats:?}"
        );
        assert_eq!(stats.sessions_started, 1, "no new session: {stats:?}");
        assert_eq!(stats.sessions_terminated, 0, "{stats:?}");
        assert_eq!(tunnel.session_id(), session);
        assert!(tunnel.ended().is_none());
        tunnel.close().await;
    });
}

#[test]
fn repeated_messages_are_acknowledged_again() {
    runtime().block_on(async {
        let (gateway, sdk) = gateway(GatewayConfig {
            faults: Faults {
                repeat: 0.1,
                seed: 7,
                ..Faults::none()
            },
            ..GatewayConfig::default()
        })
        .await;
        let echo = echo().await;
        let tunnel = open(&sdk, echo.port()).await;
        echo_round_trip(&tunnel, &body(2 << 20)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = gateway.stats();
        eprintln!("{stats:?}");
        assert!(stats.outputs_repeated > 20, "{stats:?}");
        assert!(
            stats.re_acks_received >= stats.outputs_repeated,
            "every repeated output message is acknowledged again: {stats:?}"
        );
        tunnel.close().await;
    });
}
