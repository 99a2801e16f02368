//! `--connect`: the marker, bytes both ways, a half-close passed on, and a refused port named in the error.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[tokio::test]
async fn bytes_go_both_ways_after_the_marker_and_the_end_is_passed_on() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // An upper-casing echo server that answers once its client has half-closed.
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        socket.read_to_end(&mut request).await.unwrap();
        socket
            .write_all(&request.to_ascii_uppercase())
            .await
            .unwrap();
    });
    let (mut client_input, input) = tokio::io::duplex(1024);
    let (output, mut client_output) = tokio::io::duplex(1024);
    let carrying = tokio::spawn(carry(port, input, output));
    let mut marker = [0u8; 1];
    client_output.read_exact(&mut marker).await.unwrap();
    assert_eq!(marker[0], CONNECTED);
    client_input.write_all(b"hello").await.unwrap();
    client_input.shutdown().await.unwrap();
    let mut answer = Vec::new();
    client_output.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"HELLO");
    carrying.await.unwrap().unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_an_error_before_any_output() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_client_input, input) = tokio::io::duplex(64);
    let (output, mut client_output) = tokio::io::duplex(64);
    let error = carry(port, input, output).await.unwrap_err();
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    let mut written = Vec::new();
    client_output.read_to_end(&mut written).await.unwrap();
    assert!(written.is_empty(), "nothing before the marker: {written:?}");
}
