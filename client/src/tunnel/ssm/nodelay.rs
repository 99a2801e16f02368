//! Nagle's algorithm off on the data channel's WebSocket.
//!
//! aws-ssm-bridge 0.6.0 dials its WebSocket with tokio-tungstenite's `connect_async`, which leaves Nagle's
//! algorithm on, and offers no way to hand it a socket or a connector. The data channel writes many small frames
//! (every message, every acknowledgement), and under Nagle a small write waits until the one before it is
//! acknowledged; with the peer's delayed acknowledgements that adds tens of milliseconds to every round trip of
//! an interactive command. So after each (re)connection of a session, [`apply`] finds this process's connected
//! TCP sockets and sets `TCP_NODELAY` on those that lack it. Every TCP socket a skiff client holds is a
//! request/response connection (the data channels, the SDK's HTTPS connections, gRPC), for which no delay is
//! what their own libraries choose too, so none is harmed by it.
//!
//! The change shaped for upstream is one argument in the library's `connection::dial`:
//! `connect_async_with_config(request, None, true)`. This module goes when the library takes it.

use std::os::fd::{BorrowedFd, RawFd};

/// Sets `TCP_NODELAY` on every connected TCP socket of this process that does not have it; returns how many it
/// changed.
pub fn apply() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    let mut changed = 0;
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if is_socket && set_if_tcp(fd) {
            changed += 1;
        }
    }
    if changed > 0 {
        tracing::debug!(changed, "TCP_NODELAY set on the data channel's sockets");
    }
    changed
}

/// Sets `TCP_NODELAY` on `fd` if it is a connected IPv4 or IPv6 stream socket without it.
#[expect(
    unsafe_code,
    reason = "the only way to reach a socket the library owns and does not expose"
)]
fn set_if_tcp(fd: RawFd) -> bool {
    // SAFETY: `fd` was listed as open in /proc/self/fd a moment ago and is only borrowed for the calls below,
    // none of which closes it or takes ownership. If another thread closed it meanwhile, the calls fail
    // (EBADF, ENOTSOCK) or reach the descriptor's next owner; only a connected TCP socket is ever changed, and
    // only to send without delay, which no socket of this process relies on not doing.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = socket2::SockRef::from(&borrowed);
    let tcp = socket
        .r#type()
        .is_ok_and(|kind| kind == socket2::Type::STREAM)
        && socket
            .peer_addr()
            .is_ok_and(|peer| peer.is_ipv4() || peer.is_ipv6());
    tcp && socket.tcp_nodelay().is_ok_and(|on| !on) && socket.set_tcp_nodelay(true).is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn connected_tcp_sockets_get_nodelay_and_others_are_left_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nodelay(false).unwrap();
        server.set_nodelay(false).unwrap();
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(super::apply() >= 2);
        assert!(client.nodelay().unwrap());
        assert!(server.nodelay().unwrap());
        // A Unix socket is no TCP socket: it is left as it was, and still works.
        assert!(unix.peer_addr().is_ok());
    }
}
