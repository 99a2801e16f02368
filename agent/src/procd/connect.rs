//! Connections made from inside the dev container's network: the process server opens them for `Forward`
//! and SSH `direct-tcpip` (a [`Spec`](super::Spec) with `connect`), so a name resolves with the
//! container's DNS and `/etc/hosts`, loopback is the container's loopback (where IDE servers listen), and
//! nothing leaves from the host's network, where the instance's metadata service and its neighbours are.
//!
//! Link-local addresses (`169.254.0.0/16`, `fe80::/10`, and the IPv4 ones written as IPv6: mapped,
//! compatible or NAT64) and EC2's IPv6 service range (`fd00:ec2::/32`, the metadata service at
//! `fd00:ec2::254`) are refused wherever the address came from, a literal or a name: the metadata service
//! hands out the instance role's credentials, and skiff carries nothing there. The check runs in the
//! container after resolution, so a name the container controls cannot point past it.
//!
//! After the [`OPENED`] frame the connection is carried as frames (see the protocol in [`super`]); the
//! agent's side is [`open`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::client::{ProcServer, ProcdError};
use super::{
    ConnectTarget, EXIT, FAILED, OPENED, STDIN, STDIN_EOF, STDOUT, Spec, read_frame, write_frame,
};

/// How long one connection attempt may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a connection to `address` is refused whatever the port, or `None` when it may be made.
pub fn refusal(address: IpAddr) -> Option<&'static str> {
    let address = match address {
        IpAddr::V6(v6) => embedded_ipv4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match address {
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("a link-local address, where the cloud's metadata service answers")
        }
        IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80 => Some("a link-local address"),
        IpAddr::V6(v6) if v6.segments()[..2] == [0xfd00, 0x0ec2] => {
            Some("in EC2's service range, where the instance metadata service answers")
        }
        _ => None,
    }
}

/// The IPv4 address an IPv6 one stands for: mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`, deprecated
/// but still routed by some stacks) or NAT64 (`64:ff9b::a.b.c.d`).
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = address.to_ipv4_mapped() {
        return Some(v4);
    }
    let segments = address.segments();
    let compatible = segments[..6] == [0; 6];
    let nat64 = segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    (compatible || nat64)
        .then(|| Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7])))
}

/// A connection as its target names it, for messages.
fn describe(target: &ConnectTarget) -> String {
    match &target.host {
        Some(host) => format!("{host}:{}", target.port),
        None => format!("port {} of the dev container's loopback", target.port),
    }
}

/// Opens the connection from here (the container): resolves the name, drops refused addresses, and tries
/// the rest in order. The error is a sentence for the user.
pub async fn dial(target: &ConnectTarget) -> Result<TcpStream, String> {
    let what = describe(target);
    let candidates: Vec<SocketAddr> = match &target.host {
        None => vec![
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), target.port),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), target.port),
        ],
        Some(host) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            tokio::net::lookup_host((host, target.port))
                .await
                .map_err(|error| {
                    format!("{host} does not resolve inside the dev container: {error}")
                })?
                .collect()
        }
    };
    let mut refused = None;
    let mut failed = None;
    for address in candidates {
        if let Some(reason) = refusal(address.ip()) {
            refused = Some(format!(
                "{what} is refused: {} is {reason}, and skiff does not forward there",
                address.ip()
            ));
            continue;
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => failed = Some(format!("connecting to {address} ({what}): {error}")),
            Err(_) => {
                failed = Some(format!(
                    "connecting to {address} ({what}): no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
        }
    }
    Err(failed
        .or(refused)
        .unwrap_or_else(|| format!("{what} resolves to no address")))
}

/// The server's side of a connection request: [`dial`], then [`OPENED`] or [`FAILED`], then the bytes both
/// ways as frames until both directions have ended (or the remote side reset, sent as [`FAILED`]).
pub async fn serve(
    target: &ConnectTarget,
    mut reader: impl AsyncRead + Unpin + Send + 'static,
    mut writer: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let stream = match dial(target).await {
        Ok(stream) => stream,
        Err(reason) => return write_frame(&mut writer, FAILED, reason.as_bytes()).await,
    };
    let _ = stream.set_nodelay(true);
    let address = stream.peer_addr()?;
    write_frame(&mut writer, OPENED, address.to_string().as_bytes()).await?;
    let (mut remote_reader, mut remote_writer) = stream.into_split();
    let upstream = tokio::spawn(async move {
        // The agent's half-close (or its hang-up) is passed on as a half-close.
        while let Ok(Some((kind, data))) = read_frame(&mut reader).await {
            match kind {
                STDIN if remote_writer.write_all(&data).await.is_err() => break,
                STDIN_EOF => break,
                _ => {}
            }
        }
        let _ = remote_writer.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match remote_reader.read(&mut buffer).await {
            Ok(0) => {
                write_frame(&mut writer, EXIT, &0i32.to_be_bytes()).await?;
                break;
            }
            Ok(read) => write_frame(&mut writer, STDOUT, &buffer[..read]).await?,
            Err(error) => {
                upstream.abort();
                let reason = format!("the connection to {address} was reset: {error}");
                return write_frame(&mut writer, FAILED, reason.as_bytes()).await;
            }
        }
    }
    let _ = upstream.await;
    Ok(())
}

/// A connection the process server opened inside the container, carried as frames.
#[derive(Debug)]
pub struct Connection {
    /// The address it reached, as the container sees it.
    pub address: SocketAddr,
    /// Frames from the server: [`STDOUT`] bytes, [`EXIT`] at the remote side's end, [`FAILED`] on a reset.
    pub reader: OwnedReadHalf,
    /// Frames to the server: [`STDIN`] bytes and [`STDIN_EOF`].
    pub writer: OwnedWriteHalf,
}

/// The agent's side: asks `server` to connect to `port` of `host` (`None`: the container's loopback).
/// The outer error means the server could not be used; the inner one that the connection was refused
/// or could not be made (a sentence for the user).
pub async fn open(
    server: &ProcServer,
    host: Option<&str>,
    port: u16,
) -> Result<Result<Connection, String>, ProcdError> {
    let spec = Spec {
        connect: Some(ConnectTarget {
            host: host.map(str::to_owned),
            port,
        }),
        ..Spec::default()
    };
    let (mut reader, writer) = server.dial(&spec).await?;
    match read_frame(&mut reader).await? {
        Some((OPENED, address)) => {
            let address = String::from_utf8_lossy(&address)
                .parse()
                .map_err(|_| ProcdError::Start("named no address it connected to".into()))?;
            Ok(Ok(Connection {
                address,
                reader,
                writer,
            }))
        }
        Some((FAILED, reason)) => Ok(Err(String::from_utf8_lossy(&reason).into_owned())),
        Some((kind, _)) => Err(ProcdError::Start(format!(
            "answered a connection with frame {kind:#x}"
        ))),
        None => Err(ProcdError::Start(
            "closed the connection without answering".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
