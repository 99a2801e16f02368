//! Connections from inside the container: which addresses are refused, bytes both ways as frames with each
//! end passed on, and a refused or unreachable target named in the error.

use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// Attacks the metadata service's addresses in every spelling a forward could use.
#[test]
fn link_local_and_metadata_addresses_are_refused_in_every_spelling() {
    for address in [
        "169.254.169.254",
        "169.254.0.1",
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::169.254.169.254",
        "fe80::1",
        "febf::1",
        "fd00:ec2::254",
        "fd00:ec2::23",
    ] {
        let parsed: IpAddr = address.parse().unwrap();
        assert!(refusal(parsed).is_some(), "{address} must be refused");
    }
    for address in [
        "127.0.0.1",
        "::1",
        "10.0.0.2",
        "172.17.0.3",
        "::ffff:10.0.0.2",
        "fd00::1",
        "fec0::1",
        "2001:db8::1",
        "169.253.0.1",
    ] {
        let parsed: IpAddr = address.parse().unwrap();
        assert!(refusal(parsed).is_none(), "{address} must be allowed");
    }
}

#[tokio::test]
async fn a_refused_address_is_never_dialled_and_the_error_says_why() {
    for host in ["169.254.169.254", "::ffff:169.254.169.254", "[fe80::1]"] {
        let error = dial(&ConnectTarget {
            host: Some(host.to_owned()),
            port: 80,
        })
        .await
        .unwrap_err();
        assert!(error.contains("does not forward there"), "{error}");
    }
}

#[tokio::test]
async fn bytes_go_both_ways_as_frames_and_each_end_is_passed_on() {
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
    let (mut agent_input, input) = tokio::io::duplex(1024);
    let (output, mut agent_output) = tokio::io::duplex(1024);
    let target = ConnectTarget { host: None, port };
    let serving = tokio::spawn(async move { serve(&target, input, output).await });
    let opened = read_frame(&mut agent_output).await.unwrap().unwrap();
    assert_eq!(opened.0, OPENED);
    assert_eq!(
        String::from_utf8_lossy(&opened.1),
        format!("127.0.0.1:{port}")
    );
    write_frame(&mut agent_input, STDIN, b"hello")
        .await
        .unwrap();
    write_frame(&mut agent_input, STDIN_EOF, &[]).await.unwrap();
    let mut answer = Vec::new();
    loop {
        match read_frame(&mut agent_output).await.unwrap() {
            Some((STDOUT, data)) => answer.extend(data),
            Some((EXIT, _)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answer, b"HELLO");
    agent_input.shutdown().await.unwrap();
    serving.await.unwrap().unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_port_nobody_listens_on_is_a_failure_naming_it() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_agent_input, input) = tokio::io::duplex(4096);
    let (output, mut agent_output) = tokio::io::duplex(4096);
    let target = ConnectTarget { host: None, port };
    serve(&target, input, output).await.unwrap();
    let (kind, reason) = read_frame(&mut agent_output).await.unwrap().unwrap();
    assert_eq!(kind, FAILED);
    let reason = String::from_utf8_lossy(&reason);
    assert!(reason.contains(&format!(":{port}")), "{reason}");
}
