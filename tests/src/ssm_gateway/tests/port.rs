//! The Port plugin's choices that take too long to watch through a socket: the mode a client version gets,
//! and the agent's smux keep-alive (a NOP every 10 s, the session ended after 30 s without a frame) for
//! clients up to 1.2.331.0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::port::{Context, Outbound, Port};
use super::super::smux::Frame;
use super::super::stats::Counters;
use super::super::tasks::Tasks;

fn port(client_version: &str) -> (Port, mpsc::Receiver<Outbound>, CancellationToken) {
    let cancel = CancellationToken::new();
    let (tasks, _ended) = Tasks::new(cancel.clone());
    let (outbound, queue) = mpsc::channel(8);
    let context = Context {
        route: "127.0.0.1:9".parse().unwrap(),
        outbound,
        cancel: cancel.clone(),
        tasks,
        counters: Arc::new(Counters::default()),
    };
    (Port::for_client(client_version, context), queue, cancel)
}

#[tokio::test]
async fn the_client_version_picks_the_mode() {
    for (version, mux) in [
        ("1.2.764.0", true),
        ("1.1.70", true),
        ("1.2.0.0-gimlet", true),
        ("1.1.61.0", false),
    ] {
        let (port, _queue, cancel) = port(version);
        assert_eq!(port.is_mux(), mux, "{version}");
        cancel.cancel();
    }
}

#[tokio::test]
async fn old_mux_clients_get_the_agents_keepalive() {
    let start = Instant::now();
    let (mut port, mut queue, _cancel) = port("1.2.331.0");
    port.tick(start + Duration::from_secs(5)).unwrap();
    assert!(queue.try_recv().is_err(), "no NOP before 10 s");
    port.tick(start + Duration::from_secs(11)).unwrap();
    match queue.try_recv() {
        Ok(Outbound::Bytes(bytes)) => assert_eq!(bytes, Frame::nop().encode()),
        other => panic!("expected a NOP, got {other:?}"),
    }
    // Any frame from the client counts as life.
    port.on_client_bytes(&Frame::nop().encode()).unwrap();
    let error = port
        .tick(Instant::now() + Duration::from_secs(31))
        .unwrap_err();
    assert!(error.contains("no frame for 30s"), "{error}");
}

#[tokio::test]
async fn newer_clients_get_no_keepalive() {
    let (mut port, mut queue, _cancel) = port("1.2.764.0");
    port.tick(Instant::now() + Duration::from_secs(3600))
        .unwrap();
    assert!(queue.try_recv().is_err());
}
