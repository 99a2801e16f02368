//! What the gateway tests share: hex dumps, an echo server, an aws-sdk-ssm configuration pointed at a gateway,
//! and [`RawClient`], a data-channel client made of the gateway's own codec that lets a test do exactly the
//! wrong (or right) thing at exactly one step.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::super::frame::{self, ClientMessage, header_flags, message_type, payload_type};
use super::super::payloads::AcknowledgeContent;
use super::super::smux::{Frame, Reassembler};
use super::super::{Gateway, GatewayConfig};

/// The instance the tests talk to.
pub const INSTANCE: &str = "i-0123456789abcdef0";

/// The bytes of a hex dump: an optional `offset:` prefix per line, then hex pairs.
pub fn hex(dump: &str) -> Vec<u8> {
    dump.lines()
        .map(|line| line.split_once(':').map_or(line, |(_, rest)| rest))
        .flat_map(str::split_whitespace)
        .map(|pair| u8::from_str_radix(pair, 16).expect("a hex byte"))
        .collect()
}

/// A gateway with [`INSTANCE`] online and the given config otherwise.
pub async fn gateway(config: GatewayConfig) -> Gateway {
    let gateway = Gateway::start(config).await.unwrap();
    gateway.set_online(INSTANCE, true);
    gateway
}

/// An echo server on 127.0.0.1; returns its address. It runs until the test's runtime ends.
pub async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = connection.into_split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
                let _ = writer.shutdown().await;
            });
        }
    });
    address
}

pub async fn ssm_client(gateway: &Gateway) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&gateway.sdk_config().await)
}

/// StartSession for port `port` of [`INSTANCE`]: (session id, stream URL, token).
pub async fn start_session(ssm: &aws_sdk_ssm::Client, port: u16) -> (String, String, String) {
    let output = ssm
        .start_session()
        .target(INSTANCE)
        .document_name("AWS-StartPortForwardingSession")
        .parameters("portNumber", vec![port.to_string()])
        .send()
        .await
        .unwrap();
    (
        output.session_id().unwrap().to_owned(),
        output.stream_url().unwrap().to_owned(),
        output.token_value().unwrap().to_owned(),
    )
}

/// A hand-driven data-channel client.
pub struct RawClient {
    pub websocket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The next `input_stream_data` sequence number.
    pub next_sequence: i64,
    /// smux bytes the agent sent, for [`RawClient::smux_frame`].
    pub smux: Reassembler,
    /// Data messages [`RawClient::next_ack`] passed over, for [`RawClient::next_data`].
    pub pending: std::collections::VecDeque<ClientMessage>,
}

const STEP: Duration = Duration::from_secs(5);

impl RawClient {
    /// Dials `url` and sends the OpenDataChannelInput with `token`.
    pub async fn open(url: &str, token: &str) -> Self {
        let (mut websocket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let open = serde_json::json!({
            "MessageSchemaVersion": "1.0",
            "RequestId": uuid::Uuid::new_v4().to_string(),
            "TokenValue": token,
            "ClientId": "raw-client",
            "ClientVersion": "1.2.764.0",
        });
        websocket
            .send(Message::text(open.to_string()))
            .await
            .unwrap();
        Self::over(websocket)
    }

    /// A client over an already open WebSocket.
    pub fn over(websocket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            websocket,
            next_sequence: 0,
            smux: Reassembler::default(),
            pending: Default::default(),
        }
    }

    /// The next WebSocket message of any kind, or `None` when the socket ended.
    pub async fn next_raw(&mut self) -> Option<Message> {
        match tokio::time::timeout(STEP, self.websocket.next()).await {
            Ok(Some(Ok(message))) => Some(message),
            Ok(Some(Err(_)) | None) => None,
            Err(_) => panic!("the gateway sent nothing for {STEP:?}"),
        }
    }

    /// The next ClientMessage (binary frame).
    pub async fn next(&mut self) -> ClientMessage {
        loop {
            match self.next_raw().await {
                Some(Message::Binary(bytes)) => return frame::decode(&bytes).unwrap(),
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a binary ClientMessage, got {other:?}"),
            }
        }
    }

    /// The next message that is not an acknowledgement.
    pub async fn next_data(&mut self) -> ClientMessage {
        if let Some(message) = self.pending.pop_front() {
            return message;
        }
        loop {
            let message = self.next().await;
            if message.message_type != message_type::ACKNOWLEDGE {
                return message;
            }
        }
    }

    /// The next acknowledgement's content.
    pub async fn next_ack(&mut self) -> AcknowledgeContent {
        loop {
            let message = self.next().await;
            if message.message_type == message_type::ACKNOWLEDGE {
                return serde_json::from_slice(&message.payload).unwrap();
            }
            self.pending.push_back(message);
        }
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.websocket.send(Message::binary(bytes)).await.unwrap();
    }

    /// The next `input_stream_data` with `payload_type`; returns it (already sent).
    pub fn input(&mut self, payload_type: u32, payload: Vec<u8>) -> ClientMessage {
        let message = ClientMessage::new(
            message_type::INPUT_STREAM_DATA,
            self.next_sequence,
            0,
            payload_type,
            payload,
        );
        self.next_sequence += 1;
        message
    }

    pub async fn send_input(&mut self, payload_type: u32, payload: Vec<u8>) -> ClientMessage {
        let message = self.input(payload_type, payload);
        self.send_bytes(message.encode()).await;
        message
    }

    pub async fn ack(&mut self, message: &ClientMessage) {
        let content = AcknowledgeContent {
            message_type: message.message_type.clone(),
            message_id: message.message_id.to_string(),
            sequence_number: message.sequence_number,
            is_sequential: true,
        };
        let ack = ClientMessage::new(
            message_type::ACKNOWLEDGE,
            0,
            header_flags::CONTROL,
            0,
            serde_json::to_vec(&content).unwrap(),
        );
        self.send_bytes(ack.encode()).await;
    }

    /// The whole handshake as a client reporting `client_version`; returns the HandshakeRequest JSON.
    pub async fn handshake(&mut self, client_version: &str) -> serde_json::Value {
        let request = self.next_data().await;
        assert_eq!(request.payload_type, payload_type::HANDSHAKE_REQUEST);
        self.ack(&request).await;
        let response = serde_json::json!({
            "ClientVersion": client_version,
            "ProcessedClientActions": [{"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": null, "Error": ""}],
            "Errors": null,
        });
        let sent = self
            .send_input(
                payload_type::HANDSHAKE_RESPONSE,
                response.to_string().into_bytes(),
            )
            .await;
        let complete = self.next_data().await;
        assert_eq!(complete.payload_type, payload_type::HANDSHAKE_COMPLETE);
        self.ack(&complete).await;
        let _ = sent;
        serde_json::from_slice(&request.payload).unwrap()
    }

    /// Sends smux frames as one Output message.
    pub async fn send_frames(&mut self, frames: &[Frame]) -> ClientMessage {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        self.send_input(payload_type::OUTPUT, bytes).await
    }

    /// The next smux frame from the agent, acking every Output message it takes.
    pub async fn smux_frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.smux.next_frame().unwrap() {
                return frame;
            }
            let message = self.next_data().await;
            assert_eq!(message.message_type, message_type::OUTPUT_STREAM_DATA);
            self.ack(&message).await;
            assert_eq!(
                message.payload_type,
                payload_type::OUTPUT,
                "expected smux bytes"
            );
            self.smux.push(&message.payload);
        }
    }
}

/// Reads from `connection` until `wanted` bytes came.
pub async fn read_exactly(connection: &mut TcpStream, wanted: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; wanted];
    tokio::time::timeout(STEP, connection.read_exact(&mut buffer))
        .await
        .expect("the bytes arrive in time")
        .unwrap();
    buffer
}
