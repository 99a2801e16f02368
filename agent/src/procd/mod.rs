//! The process server: a small program the agent places in the dev container (`skiff-procd`) that starts
//! processes on the agent's behalf, so a command costs a fork instead of a `docker exec` round trip
//! through the engine and runc. The agent falls back to `docker exec` whenever the server cannot run.
//!
//! The wire protocol, over one TCP connection per process, is ours and tiny:
//! the agent sends the server's token (a line of [`TOKEN_LENGTH`] hex digits, read within [`TOKEN_TIMEOUT`] and no
//! longer than [`MAX_TOKEN_LINE`], compared in constant time), then the process's [`Spec`] as one JSON line of at
//! most [`MAX_FRAME`] bytes; after that both
//! sides send frames of `kind: u8, length: u32 (big-endian), payload`. Agent to server: [`STDIN`],
//! [`STDIN_EOF`], [`RESIZE`] (columns, rows as u16), [`SIGNAL`] (i32). Server to agent: [`STDOUT`],
//! [`STDERR`], [`EXIT`] (i32 code, 128 + n for a death by signal n), [`FAILED`] (a UTF-8 reason).
//! A [`Spec`] with `connect` set runs no process: the server opens a TCP connection from inside the
//! container's network (see [`connect`]) and answers [`OPENED`] (the address, as text) or [`FAILED`]; then
//! [`STDIN`] and [`STDIN_EOF`] carry the agent's bytes and its half-close, [`STDOUT`] the remote side's bytes,
//! [`EXIT`] (0) the remote side's half-close, and [`FAILED`] a reset.
//! We write our own rather than reuse gRPC here because the server must be tiny, start in milliseconds,
//! and have no TLS: the token (passed on the server's stdin, never in argv or the environment) is the
//! authentication, and the connection never leaves the machine.
//!
//! The server listens on the container's loopback only (it refuses any other address), so no other container
//! on the network and no process outside the container reaches it; the agent connects from a thread that has
//! entered the container's network namespace (`client::ProcServer::connect`). An agent that cannot enter it (not
//! root, or Docker in a VM) uses `docker exec`.

pub mod client;
pub mod connect;
pub mod server;
pub mod sftp;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes for the process's standard input.
pub const STDIN: u8 = 0x01;
/// Standard input ended.
pub const STDIN_EOF: u8 = 0x02;
/// The terminal changed size: columns and rows, u16 each.
pub const RESIZE: u8 = 0x03;
/// A signal for the process: i32.
pub const SIGNAL: u8 = 0x04;
/// Bytes from standard output (or the terminal).
pub const STDOUT: u8 = 0x11;
/// Bytes from standard error.
pub const STDERR: u8 = 0x12;
/// The process ended: i32 exit code.
pub const EXIT: u8 = 0x13;
/// The process could not start: a UTF-8 reason.
pub const FAILED: u8 = 0x14;
/// A connection (a [`Spec`] with `connect`) is open: the address it reached, as text.
pub const OPENED: u8 = 0x15;

/// The largest frame either side accepts, and the longest request line.
pub const MAX_FRAME: usize = 1024 * 1024;
/// How many hex digits a token has (32 random bytes).
pub const TOKEN_LENGTH: usize = 64;
/// The longest token line the server reads (the token, a newline, and room for a carriage return).
pub const MAX_TOKEN_LINE: usize = TOKEN_LENGTH + 2;
/// How long a connection may take to present its token and request.
pub const TOKEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A fresh token: 32 bytes from the operating system's random source, as hex digits. Failing to read that
/// source is an error; there is no weaker fallback.
pub fn new_token() -> std::io::Result<String> {
    let mut bytes = [0u8; TOKEN_LENGTH / 2];
    getrandom::fill(&mut bytes).map_err(|error| {
        std::io::Error::other(format!(
            "reading the operating system's random source: {error}"
        ))
    })?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Whether `presented` is `token`, in time that does not depend on where they differ.
pub fn token_matches(presented: &[u8], token: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(presented.ct_eq(token.as_bytes()))
}

/// Reads one line of at most `limit` bytes (its newline and a carriage return before it removed); `None` at
/// the end of the stream, an `InvalidData` error when the line is longer, without reading past the limit.
pub async fn read_line(
    reader: &mut (impl tokio::io::AsyncBufRead + Unpin),
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    let mut limited = reader.take(limit as u64 + 1);
    if limited.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a line longer than {limit} bytes, or no line end"),
        ));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// What to run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Spec {
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Environment `KEY=VALUE` on top of the server's own (the container's).
    pub env: Vec<String>,
    /// The working folder.
    pub cwd: Option<String>,
    /// The user, by name or uid (`name`, `uid`, `uid:gid`); root when absent.
    pub user: Option<String>,
    /// Run on a new pseudo-terminal of this size (columns, rows).
    pub tty: Option<(u16, u16)>,
    /// Open a TCP connection from inside the container instead of running a process; `argv` and the rest
    /// are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectTarget>,
}

/// Where a connection made inside the container goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnectTarget {
    /// A name as the container resolves it, or an address; `None` is the container's own loopback.
    pub host: Option<String>,
    /// The port.
    pub port: u16,
}

/// Writes one frame.
pub async fn write_frame(
    writer: &mut (impl AsyncWrite + Unpin),
    kind: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let length =
        u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    let mut header = [0u8; 5];
    header[0] = kind;
    header[1..].copy_from_slice(&length.to_be_bytes());
    writer.write_all(&header).await?;
    writer.write_all(payload).await?;
    writer.flush().await
}

/// Reads one frame; `None` at a clean end of the stream.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match reader.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error),
    }
    reader.read_exact(&mut header[1..]).await?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes is larger than {MAX_FRAME}"),
        ));
    }
    let mut payload = vec![0u8; length];
    reader.read_exact(&mut payload).await?;
    Ok(Some((header[0], payload)))
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
