//! Tests of the process server: the framing, accounts, and real processes on this machine.

use super::client::{Event, Input, ProcServer};
use super::server::resolve_account;
use super::*;

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/bash\nvscode:x:1000:1000::/home/vscode:/bin/bash\n";
const GROUP: &str = "root:x:0:\nvscode:x:1000:\ndocker:x:998:vscode,other\nsudo:x:27:vscode\n";

#[test]
fn accounts_resolve_like_docker() {
    let vscode = resolve_account("vscode", PASSWD, GROUP).unwrap();
    assert_eq!(
        (vscode.uid, vscode.gid, vscode.home.as_str()),
        (1000, 1000, "/home/vscode")
    );
    assert_eq!(vscode.groups, vec![1000, 998, 27]);
    let by_id = resolve_account("1000", PASSWD, GROUP).unwrap();
    assert_eq!(by_id.name.as_deref(), Some("vscode"));
    let unknown_id = resolve_account("4242:4243", PASSWD, GROUP).unwrap();
    assert_eq!((unknown_id.uid, unknown_id.gid), (4242, 4243));
    let root_docker = resolve_account("root:docker", PASSWD, GROUP).unwrap();
    assert_eq!(root_docker.gid, 998);
    let error = resolve_account("nobody-here", PASSWD, GROUP).unwrap_err();
    assert!(error.contains("unable to find user nobody-here"), "{error}");
}

#[tokio::test]
async fn frames_round_trip_and_oversized_ones_are_refused() {
    let mut buffer = Vec::new();
    write_frame(&mut buffer, STDOUT, b"hello").await.unwrap();
    write_frame(&mut buffer, EXIT, &3i32.to_be_bytes())
        .await
        .unwrap();
    let mut reader = buffer.as_slice();
    assert_eq!(
        read_frame(&mut reader).await.unwrap(),
        Some((STDOUT, b"hello".to_vec()))
    );
    assert_eq!(
        read_frame(&mut reader).await.unwrap(),
        Some((EXIT, 3i32.to_be_bytes().to_vec()))
    );
    assert_eq!(read_frame(&mut reader).await.unwrap(), None);
    let mut huge = vec![STDOUT];
    huge.extend(u32::MAX.to_be_bytes());
    assert!(read_frame(&mut huge.as_slice()).await.is_err());
}

async fn local_server() -> ProcServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let token = "t".repeat(64);
    tokio::spawn(server::serve(listener, token.clone()));
    ProcServer { address, token }
}

async fn collect(process: &mut client::Process) -> (Vec<u8>, Vec<u8>, i32) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(event) = process.events.recv().await {
        match event.unwrap() {
            Event::Output(skiff::api::OutputStream::Stdout, data) => {
                stdout.extend_from_slice(&data)
            }
            Event::Output(skiff::api::OutputStream::Stderr, data) => {
                stderr.extend_from_slice(&data)
            }
            Event::Exit(code) => return (stdout, stderr, code),
        }
    }
    panic!("no exit");
}

#[tokio::test]
async fn runs_a_process_with_separate_streams_stdin_and_exit_code() {
    let server = local_server().await;
    let spec = Spec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "cat; echo oops >&2; exit 3".into(),
        ],
        env: vec!["GREETING=hi".into()],
        cwd: Some("/".into()),
        user: None,
        tty: None,
        connect: None,
    };
    let mut process = server.spawn(&spec).await.unwrap();
    process
        .input
        .send(Input::Stdin(b"piped".to_vec()))
        .await
        .unwrap();
    process.input.send(Input::StdinEof).await.unwrap();
    let (stdout, stderr, code) = collect(&mut process).await;
    assert_eq!(
        (stdout.as_slice(), stderr.as_slice(), code),
        (&b"piped"[..], &b"oops\n"[..], 3)
    );
}

#[tokio::test]
async fn signals_and_signal_deaths() {
    let server = local_server().await;
    let spec = Spec {
        argv: vec!["sleep".into(), "30".into()],
        ..Spec::default()
    };
    let mut process = server.spawn(&spec).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    process
        .input
        .send(Input::Signal(libc::SIGTERM))
        .await
        .unwrap();
    let (_, _, code) = collect(&mut process).await;
    assert_eq!(code, 128 + libc::SIGTERM);
}

#[tokio::test]
async fn a_terminal_has_the_requested_size() {
    let server = local_server().await;
    let spec = Spec {
        argv: vec!["stty".into(), "size".into()],
        tty: Some((132, 43)),
        ..Spec::default()
    };
    let mut process = server.spawn(&spec).await.unwrap();
    let (stdout, _, code) = collect(&mut process).await;
    assert_eq!(code, 0);
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), "43 132");
}

#[tokio::test]
async fn a_wrong_token_gets_nothing() {
    let server = local_server().await;
    let impostor = ProcServer {
        address: server.address,
        token: "x".repeat(64),
    };
    let mut process = impostor
        .spawn(&Spec {
            argv: vec!["true".into()],
            ..Spec::default()
        })
        .await
        .unwrap();
    assert!(
        process.events.recv().await.unwrap().is_err(),
        "the connection closes without running anything"
    );
}

#[tokio::test]
async fn a_missing_program_is_a_clear_failure() {
    let server = local_server().await;
    let mut process = server
        .spawn(&Spec {
            argv: vec!["/no/such/program".into()],
            ..Spec::default()
        })
        .await
        .unwrap();
    let error = process
        .events
        .recv()
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(error.contains("/no/such/program"), "{error}");
}
