//! Tests of the process server: the framing, accounts, and real processes on this machine.

use futures::StreamExt;
use skiff::api::{ExecInput, ExecOutput};

use super::client::ProcServer;
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
    local_server_with(TOKEN_TIMEOUT).await
}

async fn local_server_with(token_timeout: std::time::Duration) -> ProcServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let token = new_token().unwrap();
    tokio::spawn(server::serve(listener, token.clone(), token_timeout));
    ProcServer {
        address,
        namespace: None,
        token,
    }
}

/// Whether the server closed `stream` within `within`, reading (and discarding) what it sent.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    let mut buffer = [0u8; 64];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn collect(process: &mut client::Process) -> (Vec<u8>, Vec<u8>, i32) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(event) = process.events.next().await {
        match event.unwrap() {
            ExecOutput::Stdout(data) => stdout.extend_from_slice(&data),
            ExecOutput::Stderr(data) => stderr.extend_from_slice(&data),
            ExecOutput::Exit(code) => return (stdout, stderr, code),
            ExecOutput::Notice(notice) => panic!("a process sent a notice: {notice}"),
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
        .send(ExecInput::Stdin(b"piped".to_vec()))
        .await
        .unwrap();
    process.input.send(ExecInput::StdinEof).await.unwrap();
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
        .send(ExecInput::Signal(libc::SIGTERM))
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
        namespace: None,
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
        process.events.next().await.unwrap().is_err(),
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
        .next()
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(error.contains("/no/such/program"), "{error}");
}

#[test]
fn tokens_come_from_the_random_source() {
    let (first, second) = (new_token().unwrap(), new_token().unwrap());
    assert_eq!(first.len(), TOKEN_LENGTH);
    assert!(
        first.bytes().all(|byte| byte.is_ascii_hexdigit()),
        "{first}"
    );
    assert_ne!(first, second);
    assert_ne!(first, "0".repeat(TOKEN_LENGTH), "never the all-zero token");
}

#[test]
fn tokens_match_only_themselves() {
    let token = "ab".repeat(TOKEN_LENGTH / 2);
    assert!(token_matches(token.as_bytes(), &token));
    assert!(!token_matches(&token.as_bytes()[1..], &token));
    assert!(!token_matches(b"", &token));
    let mut almost = token.clone().into_bytes();
    almost[TOKEN_LENGTH - 1] = b'c';
    assert!(!token_matches(&almost, &token));
}

/// Attack (issue 13): a peer sends a token line with no end, hoping the server buffers it whole. The server
/// reads at most MAX_TOKEN_LINE bytes and closes the connection, while the peer is still sending.
#[tokio::test]
async fn an_endless_token_line_is_cut_off() {
    let server = local_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.split();
    let sending = async {
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        // 256 MiB, far more than any buffer between the two; the server must stop reading long before.
        while sent < 1 << 28 {
            if tokio::io::AsyncWriteExt::write_all(&mut writer, &chunk)
                .await
                .is_err()
            {
                return sent;
            }
            sent += chunk.len();
        }
        sent
    };
    let sent = tokio::time::timeout(std::time::Duration::from_secs(10), sending)
        .await
        .expect("the server stopped reading but kept the connection open");
    assert!(sent < 1 << 28, "the server read a 256 MiB token line");
    let mut buffer = [0u8; 16];
    assert!(matches!(reader.read(&mut buffer).await, Ok(0) | Err(_)));
}

/// Attack (issue 13): connections that never present a token are closed after the token timeout, so they
/// cannot pile up in the server.
#[tokio::test]
async fn a_silent_connection_is_closed_after_the_token_timeout() {
    let server = local_server_with(std::time::Duration::from_millis(300)).await;
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    assert!(
        closed_within(&mut stream, std::time::Duration::from_secs(5)).await,
        "a connection that said nothing was kept open"
    );
}

/// Attack (issue 13): a peer on the loopback that guesses a token runs nothing, and is closed.
#[tokio::test]
async fn a_wrong_token_line_is_refused_and_closed() {
    let server = local_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.address)
        .await
        .unwrap();
    let mut guess = server.token.clone().into_bytes();
    guess[0] = if guess[0] == b'0' { b'1' } else { b'0' };
    guess.extend_from_slice(b"\n{\"argv\":[\"touch\",\"/tmp/x\"]}\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, &guess)
        .await
        .unwrap();
    assert!(closed_within(&mut stream, std::time::Duration::from_secs(5)).await);
}

#[test]
fn the_static_server_is_chosen_only_while_it_is_not_older_than_the_plain_one() {
    use std::time::{Duration, SystemTime};
    let folder = tempfile::tempdir().unwrap();
    let static_build = folder.path().join(super::client::STATIC_NAME);
    let plain = folder.path().join("skiff-procd");
    let choose = || super::client::choose_binary(&static_build, &plain);
    assert!(matches!(choose(), Err(super::client::ProcdError::NoBinary(path)) if path == plain));
    std::fs::write(&plain, b"plain").unwrap();
    assert_eq!(choose().unwrap(), plain);
    std::fs::write(&static_build, b"static").unwrap();
    let now = SystemTime::now();
    let set = |path: &std::path::Path, time: SystemTime| {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    };
    set(&plain, now - Duration::from_secs(60));
    set(&static_build, now);
    assert_eq!(choose().unwrap(), static_build);
    // A plain `cargo build` that relinked `skiff-procd` after the static one was made: the static one is stale.
    set(&plain, now + Duration::from_secs(60));
    assert_eq!(choose().unwrap(), plain);
    std::fs::remove_file(&plain).unwrap();
    assert_eq!(choose().unwrap(), static_build);
}
