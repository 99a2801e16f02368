//! The data channel's front door: the WebSocket upgrade of `/v1/data-channel/<session-id>` (any query, any
//! extra headers such as a SigV4 signature), then the first frame, which must be the text
//! OpenDataChannelInput JSON carrying the session's current, unused token (`ssm/PROTOCOL.md` §1). A socket
//! that passes is handed to its session; one that does not is closed with a reason that says why.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::Shared;
use super::control::aws_error;
use super::payloads::OpenDataChannelInput;
use super::session::{SessionCommand, SessionHandle};
use super::socket::WebSocket;

/// How long a new socket may take to send its OpenDataChannelInput.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// The path every StreamUrl has before the session id.
pub(crate) const DATA_CHANNEL_PATH: &str = "/v1/data-channel/";

/// Whether `request` asks for a WebSocket.
pub(crate) fn is_websocket(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(hyper::header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// Answers the upgrade and, once it is done, authenticates the socket in a task of its own.
pub(crate) fn accept(shared: Arc<Shared>, mut request: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(session_id) = request.uri().path().strip_prefix(DATA_CHANNEL_PATH) else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!(
                "the SSM test gateway carries data channels at {DATA_CHANNEL_PATH}<session-id>, not {}",
                request.uri().path()
            ),
        );
    };
    let Some(session) = shared.session(session_id) else {
        return aws_error(
            StatusCode::NOT_FOUND,
            "DoesNotExistException",
            format!("session {session_id} does not exist"),
        );
    };
    let Some(key) = request.headers().get("sec-websocket-key") else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationException",
            "the WebSocket upgrade has no Sec-WebSocket-Key".to_owned(),
        );
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut request);
    let tasks = shared.tasks.clone();
    tasks.spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let websocket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                open(&shared, &session, websocket).await;
            }
            Err(error) => tracing::debug!(%error, "ssm gateway: WebSocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept_key)
        .body(Full::new(Bytes::new()))
        .unwrap_or_default()
}

/// Reads the OpenDataChannelInput and hands the socket to its session, or closes it with the reason.
async fn open(shared: &Shared, session: &Arc<SessionHandle>, mut websocket: WebSocket) {
    let first = tokio::time::timeout(OPEN_TIMEOUT, websocket.next()).await;
    let input = match first {
        Ok(Some(Ok(Message::Text(text)))) => {
            serde_json::from_str::<OpenDataChannelInput>(text.as_str())
                .map_err(|error| format!("the OpenDataChannelInput is not valid: {error}"))
        }
        Ok(Some(Ok(other))) => Err(format!(
            "the first frame must be the text OpenDataChannelInput, not {}",
            frame_kind(&other)
        )),
        // The client went away before saying anything.
        Ok(Some(Err(_)) | None) => return,
        Err(_) => Err(format!(
            "no OpenDataChannelInput within {}s",
            OPEN_TIMEOUT.as_secs()
        )),
    };
    let opened = input.and_then(|input| {
        session
            .redeem(&input.token_value)
            .map(|()| input)
            .map_err(|error| error.to_string())
    });
    match opened {
        Ok(input) => {
            tracing::debug!(session = %session.info.id, client_version = ?input.client_version, "ssm gateway: data channel opened");
            session.command(SessionCommand::Attach {
                websocket: Box::new(websocket),
                client_id: input.client_id,
            });
        }
        Err(reason) => {
            shared.counters.add_token_rejected();
            tracing::warn!(session = %session.info.id, %reason, "ssm gateway: data channel refused");
            let frame = CloseFrame {
                code: CloseCode::Policy,
                reason: reason.chars().take(120).collect::<String>().into(),
            };
            let _ = websocket.close(Some(frame)).await;
        }
    }
}

fn frame_kind(message: &Message) -> &'static str {
    match message {
        Message::Text(_) => "a text frame",
        Message::Binary(_) => "a binary frame",
        Message::Ping(_) => "a ping",
        Message::Pong(_) => "a pong",
        Message::Close(_) => "a close frame",
        Message::Frame(_) => "a raw frame",
    }
}
