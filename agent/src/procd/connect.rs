//! `skiff-procd --connect PORT`: one TCP connection to a port on the dev container's own loopback, carried on
//! standard input and output. The agent's SSH server runs it in the container for `direct-tcpip` channels
//! to `localhost`, because a server that listens on the container's 127.0.0.1 (VS Code's and JetBrains'
//! remote servers, most development servers) cannot be reached from outside the container.
//!
//! The protocol on standard output is one byte, [`CONNECTED`], once the connection is open, then the
//! connection's bytes. A connection that cannot be opened writes its reason to standard error and exits with
//! status 1 before writing anything. The end of standard input half-closes the connection; the end of the
//! connection's input ends the program.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The byte that says the connection is open.
pub const CONNECTED: u8 = b'+';

/// Connects to `port` on loopback (IPv4, then IPv6) and carries it on `input` and `output` until the
/// connection's input ends.
pub async fn carry(
    port: u16,
    mut input: impl AsyncRead + Unpin + Send + 'static,
    mut output: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let stream = match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(stream) => stream,
        Err(first) => TcpStream::connect(("::1", port)).await.map_err(|_| {
            std::io::Error::new(
                first.kind(),
                format!("connecting to 127.0.0.1:{port}: {first}"),
            )
        })?,
    };
    let _ = stream.set_nodelay(true);
    output.write_all(&[CONNECTED]).await?;
    output.flush().await?;
    let (mut reader, mut writer) = stream.into_split();
    // The client's end is passed on as a half-close; the connection stays open for the answer.
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut input, &mut writer).await;
        let _ = writer.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::io::AsyncReadExt::read(&mut reader, &mut buffer).await?;
        if read == 0 {
            return output.flush().await;
        }
        output.write_all(&buffer[..read]).await?;
        output.flush().await?;
    }
}

/// What `skiff-procd --connect PORT` runs: [`carry`] on standard input and output.
pub fn serve_stdio(port: u16) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(carry(port, tokio::io::stdin(), tokio::io::stdout()));
    // A read of standard input may still be waiting in a blocking thread; it must not hold the exit.
    runtime.shutdown_background();
    result
}

#[cfg(test)]
mod tests;
