//! A TCP test server for the forwarding tests and benchmarks, placed in the dev container like busybox:
//! busybox's `nc` resets connections under concurrent load, which would test busybox rather than skiff.
//!
//! `skiff-test-echo ADDRESS` echoes each connection back and answers the client's half-close with one;
//! `skiff-test-echo --sink ADDRESS` reads each connection to its end and answers with the byte count.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    let sink = arguments
        .first()
        .is_some_and(|argument| argument == "--sink");
    if sink {
        arguments.remove(0);
    }
    let address = arguments
        .first()
        .cloned()
        .unwrap_or_else(|| "0.0.0.0:7000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.into_split();
            if sink {
                let mut buffer = vec![0u8; 256 * 1024];
                let mut total: u64 = 0;
                while let Ok(read) = reader.read(&mut buffer).await {
                    if read == 0 {
                        break;
                    }
                    total += read as u64;
                }
                let _ = writer.write_all(format!("{total}\n").as_bytes()).await;
                let _ = writer.shutdown().await;
            } else if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
                let _ = writer.shutdown().await;
            }
        });
    }
}
