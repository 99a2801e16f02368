//! The process server's side: accepts the agent's connections, checks the token, starts each process as
//! the requested user (with a pseudo-terminal when asked) and carries its input, output, resizes, signals
//! and exit, or opens a connection from inside the container (`connect`). Runs inside the dev container as
//! root, started by the agent with one `docker exec`.
//!
//! Starting a process as another user needs `setgroups`, `setgid` and `setuid` between fork and exec,
//! which the standard library cannot do in that order (it drops privileges before running `pre_exec`
//! hooks), so this module holds the project's only `unsafe`: those system calls in a `pre_exec` hook.

#![allow(unsafe_code)] // pre_exec hooks for setgroups/setgid/setuid and the controlling terminal; see the module doc.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Stdio;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::{
    EXIT, FAILED, MAX_FRAME, MAX_TOKEN_LINE, RESIZE, SIGNAL, STDERR, STDIN, STDIN_EOF, STDOUT,
    Spec, read_frame, read_line, token_matches, write_frame,
};

/// A user as `/etc/passwd` and `/etc/group` describe them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Home folder.
    pub home: String,
    /// User name, if the user has an entry.
    pub name: Option<String>,
}

/// Resolves `user` (`name`, `uid` or `uid:gid`) against passwd and group files' text.
pub fn resolve_account(user: &str, passwd: &str, group: &str) -> Result<Account, String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (user, None),
    };
    let entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .filter(|fields| fields.len() >= 7)
        .collect();
    let entry = entries
        .iter()
        .find(|fields| fields[0] == user_part)
        .or_else(|| {
            entries.iter().find(|fields| {
                user_part
                    .parse::<u32>()
                    .is_ok_and(|uid| fields[2] == uid.to_string())
            })
        });
    let (uid, mut gid, home, name) = match entry {
        Some(fields) => (
            fields[2]
                .parse()
                .map_err(|_| format!("user {user_part}: bad uid in /etc/passwd"))?,
            fields[3]
                .parse()
                .map_err(|_| format!("user {user_part}: bad gid in /etc/passwd"))?,
            fields[5].to_owned(),
            Some(fields[0].to_owned()),
        ),
        None => match user_part.parse::<u32>() {
            Ok(uid) => (uid, uid, "/".to_owned(), None),
            Err(_) => {
                return Err(format!(
                    "unable to find user {user_part}: no matching entries in passwd file"
                ));
            }
        },
    };
    if let Some(group_part) = group_part {
        gid = match group_part.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group
                .lines()
                .map(|line| line.split(':').collect::<Vec<_>>())
                .find(|fields| fields.len() >= 3 && fields[0] == group_part)
                .and_then(|fields| fields[2].parse().ok())
                .ok_or_else(|| format!("unable to find group {group_part}"))?,
        };
    }
    let mut groups = vec![gid];
    if let Some(name) = &name {
        for fields in group
            .lines()
            .map(|line| line.split(':').collect::<Vec<_>>())
        {
            if fields.len() >= 4
                && fields[3].split(',').any(|member| member == name)
                && let Ok(id) = fields[2].parse::<u32>()
                && !groups.contains(&id)
            {
                groups.push(id);
            }
        }
    }
    Ok(Account {
        uid,
        gid,
        groups,
        home,
        name,
    })
}

/// Serves the agent until the listener fails. `token` is what every connection must present first, within
/// `token_timeout`; a connection that does not is closed without an answer.
pub async fn serve(
    listener: TcpListener,
    token: String,
    token_timeout: std::time::Duration,
) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let token = token.clone();
        tokio::spawn(async move {
            let _ = handle(stream, &token, token_timeout).await;
        });
    }
}

async fn handle(
    stream: TcpStream,
    token: &str,
    token_timeout: std::time::Duration,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let request = tokio::time::timeout(token_timeout, request(&mut reader, token)).await;
    // Say nothing useful to a caller without the token, or one too slow to give it.
    let Ok(Ok(Some(line))) = request else {
        return Ok(());
    };
    let spec: Spec = match serde_json::from_slice(&line) {
        Ok(spec) => spec,
        Err(error) => {
            write_frame(
                &mut writer,
                FAILED,
                format!("a malformed request: {error}").as_bytes(),
            )
            .await?;
            return Ok(());
        }
    };
    if let Some(target) = &spec.connect {
        return super::connect::serve(target, reader, writer).await;
    }
    let (frames, mut frame_receiver) = mpsc::channel::<(u8, Vec<u8>)>(64);
    let writing = tokio::spawn(async move {
        while let Some((kind, payload)) = frame_receiver.recv().await {
            if write_frame(&mut writer, kind, &payload).await.is_err() {
                break;
            }
        }
    });
    let result = match spec.tty {
        Some(size) => run_on_terminal(&spec, size, reader, frames).await,
        None => run_with_pipes(&spec, reader, frames).await,
    };
    let _ = writing.await;
    result
}

/// The request line of a connection that presented `token`; `None` for one that did not.
async fn request(
    reader: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    token: &str,
) -> std::io::Result<Option<Vec<u8>>> {
    // A line longer than any token is cut off after MAX_TOKEN_LINE bytes, never buffered whole.
    let presented = read_line(reader, MAX_TOKEN_LINE).await?;
    if !presented.is_some_and(|presented| token_matches(&presented, token)) {
        return Ok(None);
    }
    read_line(reader, MAX_FRAME).await
}

/// A `Command` for `spec` that becomes the requested user between fork and exec.
fn command(spec: &Spec, terminal: bool) -> Result<std::process::Command, String> {
    let (program, arguments) = spec.argv.split_first().ok_or("an empty command")?;
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let account = resolve_account(spec.user.as_deref().unwrap_or("root"), &passwd, &group)?;
    let mut command = std::process::Command::new(program);
    command.args(arguments);
    command.env("HOME", &account.home);
    if let Some(name) = &account.name {
        command.env("USER", name);
    }
    for pair in &spec.env {
        if let Some((key, value)) = pair.split_once('=') {
            command.env(key, value);
        }
    }
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let groups: Vec<nix::unistd::Gid> = account
        .groups
        .iter()
        .map(|gid| nix::unistd::Gid::from_raw(*gid))
        .collect();
    let gid = nix::unistd::Gid::from_raw(account.gid);
    let uid = nix::unistd::Uid::from_raw(account.uid);
    // SAFETY: the hook only makes system calls (no allocation, no locks), as a pre_exec hook must.
    unsafe {
        command.pre_exec(move || {
            if terminal {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            nix::unistd::setgroups(&groups)?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
    Ok(command)
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

async fn run_with_pipes(
    spec: &Spec,
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    frames: mpsc::Sender<(u8, Vec<u8>)>,
) -> std::io::Result<()> {
    let mut command = match command(spec, false) {
        Ok(command) => command,
        Err(reason) => {
            let _ = frames.send((FAILED, reason.into_bytes())).await;
            return Ok(());
        }
    };
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match tokio::process::Command::from(command).spawn() {
        Ok(child) => child,
        Err(error) => {
            let reason = format!("{}: {error}", spec.argv[0]);
            let _ = frames.send((FAILED, reason.into_bytes())).await;
            return Ok(());
        }
    };
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let mut stdin = child.stdin.take();
    let pumps = [
        (
            child
                .stdout
                .take()
                .map(|out| Box::new(out) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            STDOUT,
        ),
        (
            child
                .stderr
                .take()
                .map(|err| Box::new(err) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
            STDERR,
        ),
    ]
    .into_iter()
    .filter_map(|(stream, kind)| Some((stream?, kind)))
    .map(|(mut stream, kind)| {
        let frames = frames.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            while let Ok(read) = stream.read(&mut buffer).await {
                if read == 0 || frames.send((kind, buffer[..read].to_vec())).await.is_err() {
                    break;
                }
            }
        })
    })
    .collect::<Vec<_>>();
    let input = tokio::spawn(async move {
        loop {
            match read_frame(&mut reader).await {
                Ok(Some((STDIN, data))) => {
                    if let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Ok(Some((STDIN_EOF, _))) => stdin = None,
                Ok(Some((SIGNAL, payload))) => signal(pid, &payload, false),
                Ok(Some(_)) => {}
                // The agent hung up: the process loses its controlling client, as with a closed terminal.
                Ok(None) | Err(_) => {
                    signal(pid, &libc::SIGHUP.to_be_bytes(), false);
                    break;
                }
            }
        }
    });
    let status = child.wait().await?;
    for pump in pumps {
        let _ = pump.await;
    }
    input.abort();
    let _ = frames
        .send((EXIT, exit_code(status).to_be_bytes().to_vec()))
        .await;
    Ok(())
}

fn signal(pid: Option<i32>, payload: &[u8], group: bool) {
    let (Some(pid), Ok(bytes)) = (pid, <[u8; 4]>::try_from(payload)) else {
        return;
    };
    let Ok(signal) = nix::sys::signal::Signal::try_from(i32::from_be_bytes(bytes)) else {
        return;
    };
    let target = if group { -pid } else { pid };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), signal);
}

fn resize(master: &OwnedFd, columns: u16, rows: u16) {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `master` is an open pseudo-terminal and `size` lives across the call.
    let _ = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &raw const size) };
}

async fn run_on_terminal(
    spec: &Spec,
    (columns, rows): (u16, u16),
    mut reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    frames: mpsc::Sender<(u8, Vec<u8>)>,
) -> std::io::Result<()> {
    let size = nix::pty::Winsize {
        ws_row: rows,
        ws_col: columns,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).map_err(std::io::Error::from)?;
    let mut command = match command(spec, true) {
        Ok(command) => command,
        Err(reason) => {
            let _ = frames.send((FAILED, reason.into_bytes())).await;
            return Ok(());
        }
    };
    command
        .stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?));
    if !spec.env.iter().any(|pair| pair.starts_with("TERM=")) {
        command.env("TERM", "xterm-256color");
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let reason = format!("{}: {error}", spec.argv[0]);
            let _ = frames.send((FAILED, reason.into_bytes())).await;
            return Ok(());
        }
    };
    // Only the child holds the terminal's other end now (the command kept copies for the child's stdio),
    // so reading ends when it and its children exit.
    drop(command);
    drop(pty.slave);
    let pid = i32::try_from(child.id()).ok();
    let master = pty.master;
    let mut master_writer = std::fs::File::from(master.try_clone()?);
    let mut master_reader = std::fs::File::from(master.try_clone()?);
    // The terminal is a blocking file: one thread reads it, the input task writes it.
    let output_frames = frames.clone();
    let output = std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match master_reader.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if output_frames
                        .blocking_send((STDOUT, buffer[..read].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    let (writes, mut write_receiver) = mpsc::channel::<Vec<u8>>(16);
    let writer = std::thread::spawn(move || {
        while let Some(data) = write_receiver.blocking_recv() {
            if master_writer.write_all(&data).is_err() {
                break;
            }
        }
    });
    let input = tokio::spawn(async move {
        loop {
            match read_frame(&mut reader).await {
                Ok(Some((STDIN, data))) => {
                    let _ = writes.send(data).await;
                }
                Ok(Some((RESIZE, payload))) if payload.len() == 4 => {
                    resize(
                        &master,
                        u16::from_be_bytes([payload[0], payload[1]]),
                        u16::from_be_bytes([payload[2], payload[3]]),
                    );
                }
                Ok(Some((SIGNAL, payload))) => signal(pid, &payload, true),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    signal(pid, &libc::SIGHUP.to_be_bytes(), true);
                    break;
                }
            }
        }
    });
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(std::io::Error::other)??;
    let _ = tokio::task::spawn_blocking(move || output.join()).await;
    input.abort();
    drop(writer);
    let _ = frames
        .send((EXIT, exit_code(status).to_be_bytes().to_vec()))
        .await;
    Ok(())
}
