use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A carrier whose streams are in-memory pipes to an echo task that prefixes its lane.
struct Echo {
    lane: u8,
}

impl Carrier for Echo {
    fn open_stream(&self) -> Pin<Box<dyn Future<Output = io::Result<BoxIo>> + Send + '_>> {
        let lane = self.lane;
        Box::pin(async move {
            let (near, mut far) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let mut buffer = vec![0; 1024];
                while let Ok(count) = far.read(&mut buffer).await {
                    if count == 0 {
                        break;
                    }
                    let mut answer = vec![lane];
                    answer.extend_from_slice(&buffer[..count]);
                    if far.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
            Ok(Box::new(near) as BoxIo)
        })
    }

    fn ended(&self) -> Option<String> {
        None
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async {})
    }
}

fn opener(opened: Arc<AtomicUsize>) -> Opener {
    Arc::new(move |lane| {
        let opened = Arc::clone(&opened);
        Box::pin(async move {
            if lane == 3 {
                anyhow::bail!("lane 3 refused by the test");
            }
            opened.fetch_add(1, Ordering::SeqCst);
            Ok(Box::new(Echo { lane }) as Box<dyn Carrier>)
        })
    })
}

#[tokio::test]
async fn lanes_share_one_daemon_and_pool_sessions_open_on_first_use() {
    let folder = tempfile::tempdir().unwrap();
    let socket = socket_path(folder.path());
    let listener = bind(&socket).unwrap();
    let opened = Arc::new(AtomicUsize::new(0));
    let daemon = tokio::spawn(serve(
        listener,
        opener(Arc::clone(&opened)),
        Box::new(Echo { lane: 0 }),
        Duration::from_secs(60),
    ));

    let mut interactive = connect(&socket, 0).await.unwrap().unwrap();
    interactive.write_all(b"hi").await.unwrap();
    let mut answer = [0; 3];
    interactive.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"\0hi");
    assert_eq!(opened.load(Ordering::SeqCst), 0, "lane 0 was opened before");

    for _ in 0..2 {
        let mut bulk = connect(&socket, 2).await.unwrap().unwrap();
        bulk.write_all(b"x").await.unwrap();
        let mut answer = [0; 2];
        bulk.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"\x02x");
    }
    assert_eq!(
        opened.load(Ordering::SeqCst),
        1,
        "lane 2 is opened once and kept"
    );

    let refused = connect(&socket, 3).await.unwrap_err().to_string();
    assert!(refused.contains("lane 3 refused by the test"), "{refused}");
    let missing = connect(&socket, 9).await.unwrap_err().to_string();
    assert!(missing.contains("lane 9 does not exist"), "{missing}");

    drop(interactive);
    assert!(stop(&socket).await);
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon exits when asked")
        .unwrap();
}

#[tokio::test]
async fn the_daemon_exits_after_the_idle_time_and_not_while_a_connection_is_open() {
    let folder = tempfile::tempdir().unwrap();
    let socket = socket_path(folder.path());
    let listener = bind(&socket).unwrap();
    let daemon = tokio::spawn(serve(
        listener,
        opener(Arc::default()),
        Box::new(Echo { lane: 0 }),
        Duration::from_millis(300),
    ));
    let connection = connect(&socket, 0).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!daemon.is_finished(), "an open connection keeps the tunnel");
    drop(connection);
    tokio::time::timeout(Duration::from_secs(5), daemon)
        .await
        .expect("the daemon exits once idle")
        .unwrap();
}

#[tokio::test]
async fn no_daemon_is_none_and_a_stale_socket_is_replaced() {
    let folder = tempfile::tempdir().unwrap();
    let socket = socket_path(folder.path());
    assert!(connect(&socket, 0).await.unwrap().is_none());
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(connect(&socket, 0).await.unwrap().is_none());
    let _listener = bind(&socket).unwrap();
}
