//! The process server: a small program the agent places in the dev container (`skiff-procd`) that starts
//! processes on the agent's behalf, so a command costs a fork instead of a `docker exec` round trip
//! through the engine and runc. The agent falls back to `docker exec` whenever the server cannot run.
//!
//! The wire protocol, over one TCP connection per process, is ours and tiny:
//! the agent sends the server's token (a line), then the process's [`Spec`] as one JSON line; after that both
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

/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1024 * 1024;

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
mod tests;
