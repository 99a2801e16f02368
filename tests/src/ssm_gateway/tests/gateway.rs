//! The gateway as a whole, through aws-sdk-ssm and a [`RawClient`]: the control plane's answers and errors,
//! the pass-through to moto, tokens, the handshake, acks, duplicates, reordering, digests, smux streams and
//! dial failures, session end, resumption with retransmission, basic mode, faults and shutdown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ssm::error::ProvideErrorMetadata as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use super::super::frame::{flag, message_type, payload_type};
use super::super::smux::Frame;
use super::super::{Faults, GatewayConfig};
use super::support::{
    INSTANCE, RawClient, echo_server, gateway, read_exactly, ssm_client, start_session,
};

#[tokio::test]
async fn describe_instance_information_reports_online_instances() {
    let gateway = gateway(GatewayConfig::default()).await;
    gateway.set_online("i-0000000000000000b", true);
    gateway.set_online("i-0000000000000000c", true);
    gateway.set_online("i-0000000000000000c", false);
    let ssm = ssm_client(&gateway).await;
    let all = ssm.describe_instance_information().send().await.unwrap();
    let ids: Vec<&str> = all
        .instance_information_list()
        .iter()
        .filter_map(|instance| instance.instance_id())
        .collect();
    assert_eq!(ids, ["i-0000000000000000b", INSTANCE]);
    let filtered = ssm
        .describe_instance_information()
        .filters(
            aws_sdk_ssm::types::InstanceInformationStringFilter::builder()
                .key("InstanceIds")
                .values(INSTANCE)
                .values("i-0000000000000000c")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let [instance] = filtered.instance_information_list() else {
        panic!("one instance: {filtered:?}");
    };
    assert_eq!(instance.instance_id(), Some(INSTANCE));
    assert_eq!(
        instance.ping_status(),
        Some(&aws_sdk_ssm::types::PingStatus::Online)
    );
    assert_eq!(instance.agent_version(), Some("3.3.1142.0"));
    assert_eq!(
        instance.platform_type(),
        Some(&aws_sdk_ssm::types::PlatformType::Linux)
    );
}

#[tokio::test]
async fn sessions_start_resume_and_terminate_through_the_sdk() {
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;

    let offline = ssm
        .start_session()
        .target("i-00000000000000bad")
        .document_name("AWS-StartPortForwardingSession")
        .parameters("portNumber", vec!["22".to_owned()])
        .send()
        .await
        .unwrap_err();
    let offline = offline.into_service_error();
    assert!(offline.is_target_not_connected(), "{offline:?}");
    assert_eq!(
        offline.message(),
        Some("i-00000000000000bad is not connected.")
    );

    let (id, url, token) = start_session(&ssm, 7).await;
    assert_eq!(
        url,
        format!(
            "ws://{}/v1/data-channel/{id}?role=publish_subscribe",
            gateway.address()
        )
    );
    assert!(token.len() >= 32);

    let resumed = ssm.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(resumed.stream_url(), Some(url.as_str()));
    assert_ne!(resumed.token_value(), Some(token.as_str()));

    ssm.terminate_session()
        .session_id(&id)
        .send()
        .await
        .unwrap();
    let ended = ssm.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(
        ended.token_value().unwrap_or_default(),
        "",
        "an ended session has no token"
    );

    let unknown = ssm
        .resume_session()
        .session_id("nobody-00000000000000000")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(unknown.is_does_not_exist_exception(), "{unknown:?}");

    let stats = gateway.stats();
    assert_eq!(
        (stats.sessions_started, stats.sessions_resumed),
        (1, 1),
        "{stats:?}"
    );
}

/// A stand-in for moto that records the one request it gets and answers it.
async fn recording_server(
    answer: &'static str,
) -> (String, Arc<Mutex<Option<http::Request<Bytes>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let recorded = Arc::new(Mutex::new(None));
    let keep = recorded.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            let keep = keep.clone();
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let keep = keep.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        *keep.lock().unwrap() = Some(http::Request::from_parts(parts, body));
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/x-amz-json-1.1")
                                .header("x-moto", "yes")
                                .body(Full::new(Bytes::from_static(answer.as_bytes())))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(connection), service),
            );
        }
    });
    (endpoint, recorded)
}

#[tokio::test]
async fn other_calls_pass_through_to_moto_unchanged() {
    let (moto, recorded) = recording_server(
        r#"{"Parameter":{"Name":"/skiff/x","Type":"String","Value":"from moto","Version":1}}"#,
    )
    .await;
    let gateway = gateway(GatewayConfig {
        moto_endpoint: Some(moto),
        ..GatewayConfig::default()
    })
    .await;
    let ssm = ssm_client(&gateway).await;
    let parameter = ssm.get_parameter().name("/skiff/x").send().await.unwrap();
    assert_eq!(
        parameter
            .parameter()
            .and_then(|parameter| parameter.value()),
        Some("from moto")
    );
    let request = recorded.lock().unwrap().take().expect("moto got the call");
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri().path(), "/");
    assert_eq!(request.headers()["x-amz-target"], "AmazonSSM.GetParameter");
    let authorization = request.headers()["authorization"].to_str().unwrap();
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDGATEWAYTEST/"),
        "{authorization}"
    );
    assert_eq!(
        request.headers()["host"].to_str().unwrap(),
        gateway.address().to_string(),
        "the signed Host header is kept"
    );
    let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(body["Name"], "/skiff/x");
}

#[tokio::test]
async fn other_calls_without_moto_fail_naming_the_call() {
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let error = ssm
        .get_parameter()
        .name("/x")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(error.code(), Some("InvalidAction"));
    assert!(
        error
            .message()
            .unwrap_or_default()
            .contains("AmazonSSM.GetParameter"),
        "{error:?}"
    );
}

/// The reason of the Close frame that ends `client`'s socket.
async fn close_reason(client: &mut RawClient) -> String {
    loop {
        match client.next_raw().await {
            Some(Message::Close(Some(frame))) => return frame.reason.to_string(),
            Some(Message::Close(None)) | None => return String::new(),
            Some(_) => continue,
        }
    }
}

#[tokio::test]
async fn a_wrong_or_reused_token_closes_the_socket_with_the_reason() {
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, 7).await;

    let mut wrong = RawClient::open(&url, "not-the-token").await;
    assert!(close_reason(&mut wrong).await.contains("not session"));

    let mut first = RawClient::open(&url, &token).await;
    let request = first.next_data().await;
    assert_eq!(request.payload_type, payload_type::HANDSHAKE_REQUEST);
    let mut again = RawClient::open(&url, &token).await;
    assert!(close_reason(&mut again).await.contains("already used"));

    let (mut websocket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    futures::SinkExt::send(&mut websocket, Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    let mut not_text = RawClient::over(websocket);
    assert!(
        close_reason(&mut not_text)
            .await
            .contains("text OpenDataChannelInput")
    );
    assert_eq!(gateway.stats().tokens_rejected, 3);
}

#[tokio::test]
async fn the_handshake_is_the_agents() {
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, 5432).await;
    let mut client = RawClient::open(&url, &token).await;
    let request = client.next_data().await;
    assert_eq!(request.message_type, message_type::OUTPUT_STREAM_DATA);
    assert_eq!(
        (request.sequence_number, request.flags, request.payload_type),
        (0, 1, 5)
    );
    assert_eq!(request.header_length, 116);
    let json: serde_json::Value = serde_json::from_slice(&request.payload).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "AgentVersion": "3.3.1142.0",
            "RequestedClientActions": [{
                "ActionType": "SessionType",
                "ActionParameters": {
                    "SessionType": "Port",
                    "Properties": {"localPortNumber": "0", "portNumber": "5432", "type": "LocalPortForwarding"},
                },
            }],
        })
    );
    client.ack(&request).await;
    let response = client
        .send_input(
            payload_type::HANDSHAKE_RESPONSE,
            br#"{"ClientVersion":"1.2.764.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1}],"Errors":[]}"#.to_vec(),
        )
        .await;
    let ack = client.next_ack().await;
    assert_eq!(ack.sequence_number, 0);
    assert_eq!(ack.message_id, response.message_id.to_string());
    assert_eq!(ack.message_type, "input_stream_data");
    let complete = client.next_data().await;
    assert_eq!(
        (
            complete.sequence_number,
            complete.flags,
            complete.payload_type
        ),
        (1, 0, 7)
    );
    let json: serde_json::Value = serde_json::from_slice(&complete.payload).unwrap();
    assert!(json["HandshakeTimeToComplete"].as_u64().unwrap() > 0);
    assert_eq!(json["CustomerMessage"], "");
}

#[tokio::test]
async fn a_failed_handshake_action_ends_the_session() {
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (id, url, token) = start_session(&ssm, 7).await;
    let mut client = RawClient::open(&url, &token).await;
    let request = client.next_data().await;
    client.ack(&request).await;
    client
        .send_input(
            payload_type::HANDSHAKE_RESPONSE,
            br#"{"ClientVersion":"1.2.764.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":3,"Error":"nope"}]}"#.to_vec(),
        )
        .await;
    let closed = client.next_data().await;
    assert_eq!(closed.message_type, message_type::CHANNEL_CLOSED);
    let json: serde_json::Value = serde_json::from_slice(&closed.payload).unwrap();
    assert_eq!(json["SessionId"], id.as_str());
    assert!(
        json["Output"].as_str().unwrap().contains("status 3"),
        "{json}"
    );
    assert!(close_reason(&mut client).await.contains("handshake failed"));
}

#[tokio::test]
async fn streams_echo_with_acks_re_acks_and_reordering() {
    let echo = echo_server().await;
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, echo.port()).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;

    // SYN and PSH in one message: the stream is dialled and the data comes back.
    let opened = client
        .send_frames(&[Frame::syn(3), Frame::psh(3, b"hello")])
        .await;
    assert_eq!(
        client.next_ack().await.sequence_number,
        opened.sequence_number
    );
    assert_eq!(client.smux_frame().await, Frame::psh(3, b"hello"));

    // A duplicate is acked again and not delivered again.
    client.send_bytes(opened.encode()).await;
    assert_eq!(
        client.next_ack().await.sequence_number,
        opened.sequence_number
    );

    // Out of order: the later one is acked and held until the gap fills.
    let first = client.input(payload_type::OUTPUT, Frame::psh(3, b"one,").encode());
    let second = client.input(payload_type::OUTPUT, Frame::psh(3, b"two").encode());
    client.send_bytes(second.encode()).await;
    assert_eq!(
        client.next_ack().await.sequence_number,
        second.sequence_number
    );
    client.send_bytes(first.encode()).await;
    assert_eq!(
        client.next_ack().await.sequence_number,
        first.sequence_number
    );
    let mut echoed = Vec::new();
    while echoed.len() < 7 {
        echoed.extend(client.smux_frame().await.data);
    }
    assert_eq!(echoed, b"one,two");

    // FIN closes the dialled connection, and the agent answers with FIN.
    client.send_frames(&[Frame::fin(3)]).await;
    assert_eq!(client.smux_frame().await, Frame::fin(3));
    let stats = gateway.stats();
    assert_eq!(stats.duplicates_received, 1, "{stats:?}");
    assert_eq!(stats.streams_opened, 1, "{stats:?}");
    // SYN + PSH hello, PSH one, PSH two, FIN; the duplicate is not delivered again.
    assert_eq!(stats.bytes_to_agent, 21 + 12 + 11 + 8, "{stats:?}");
}

#[tokio::test]
async fn a_wrong_digest_is_dropped_unacked_and_data_before_the_handshake_is_discarded() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, listener.local_addr().unwrap().port()).await;
    let mut client = RawClient::open(&url, &token).await;
    let request = client.next_data().await;
    client.ack(&request).await;

    // Stream data as seq 0, before the response: acked, then discarded as the agent does.
    let early = client
        .send_frames(&[Frame::syn(3), Frame::psh(3, b"early")])
        .await;
    assert_eq!(
        client.next_ack().await.sequence_number,
        early.sequence_number
    );
    client
        .send_input(
            payload_type::HANDSHAKE_RESPONSE,
            br#"{"ClientVersion":"1.2.764.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1}]}"#.to_vec(),
        )
        .await;
    assert_eq!(client.next_ack().await.sequence_number, 1);
    let complete = client.next_data().await;
    assert_eq!(complete.payload_type, payload_type::HANDSHAKE_COMPLETE);
    client.ack(&complete).await;

    // A corrupted message gets no ack; its clean resend does.
    let good = client.input(
        payload_type::OUTPUT,
        [Frame::syn(5), Frame::psh(5, b"late")]
            .iter()
            .flat_map(Frame::encode)
            .collect(),
    );
    let mut corrupted = good.encode();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 0x20;
    client.send_bytes(corrupted).await;
    client.send_bytes(good.encode()).await;
    let ack = client.next_ack().await;
    assert_eq!(ack.sequence_number, good.sequence_number);
    let (mut connection, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read_exactly(&mut connection, 4).await, b"late");
    let stats = gateway.stats();
    assert_eq!(stats.digest_mismatches, 1, "{stats:?}");
    assert_eq!(
        stats.streams_opened, 1,
        "the early SYN was discarded: {stats:?}"
    );
}

#[tokio::test]
async fn a_failed_dial_sends_connect_to_port_error_and_fin() {
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, closed_port).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    client.send_frames(&[Frame::syn(3)]).await;
    let flag_message = client.next_data().await;
    assert_eq!(flag_message.payload_type, payload_type::FLAG);
    assert_eq!(
        flag_message.payload,
        flag::CONNECT_TO_PORT_ERROR.to_be_bytes()
    );
    client.ack(&flag_message).await;
    assert_eq!(client.smux_frame().await, Frame::fin(3));
    assert_eq!(gateway.stats().dial_failures, 1);
}

#[tokio::test]
async fn the_terminate_flag_ends_the_session_and_closes_dialled_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (id, url, token) = start_session(&ssm, listener.local_addr().unwrap().port()).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    client.send_frames(&[Frame::syn(3)]).await;
    let (mut connection, _) = listener.accept().await.unwrap();

    client
        .send_input(
            payload_type::FLAG,
            flag::TERMINATE_SESSION.to_be_bytes().to_vec(),
        )
        .await;
    let closed = client.next_data().await;
    assert_eq!(closed.message_type, message_type::CHANNEL_CLOSED);
    assert_eq!(closed.header_length, 116);
    let json: serde_json::Value = serde_json::from_slice(&closed.payload).unwrap();
    assert_eq!(json["SessionId"], id.as_str());
    assert_eq!(json["MessageType"], "channel_closed");
    assert_eq!(json["SchemaVersion"], 1);
    assert_eq!(json["DestinationId"], "raw-client");
    assert!(json["CreatedDate"].as_str().unwrap().ends_with('Z'));
    assert!(!close_reason(&mut client).await.is_empty());

    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut connection, &mut rest),
    )
    .await
    .expect("the dialled connection closes");
    assert!(read.is_ok());
    let resumed = ssm.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(resumed.token_value().unwrap_or_default(), "");
    assert_eq!(gateway.stats().sessions_terminated, 1);
}

#[tokio::test]
async fn terminate_session_sends_the_short_channel_closed_when_asked() {
    let gateway = gateway(GatewayConfig {
        short_channel_closed: true,
        ..GatewayConfig::default()
    })
    .await;
    let ssm = ssm_client(&gateway).await;
    let (id, url, token) = start_session(&ssm, 7).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    ssm.terminate_session()
        .session_id(&id)
        .send()
        .await
        .unwrap();
    let closed = client.next_data().await;
    assert_eq!(closed.message_type, message_type::CHANNEL_CLOSED);
    assert_eq!(closed.header_length, 112);
    let json: serde_json::Value = serde_json::from_slice(&closed.payload).unwrap();
    assert!(json["Output"].as_str().unwrap().contains(&id));
}

#[tokio::test]
async fn a_resumed_socket_continues_the_sequence_and_gets_what_was_never_acked() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (id, url, token) = start_session(&ssm, listener.local_addr().unwrap().port()).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    client.send_frames(&[Frame::syn(3)]).await;
    let (mut connection, _) = listener.accept().await.unwrap();

    // The target speaks; the client receives it but never acks it, then the socket drops.
    connection.write_all(b"unacked").await.unwrap();
    let unacked = client.next_data().await;
    assert_eq!(unacked.payload, Frame::psh(3, b"unacked").encode());
    gateway.drop_websockets();
    assert!(
        matches!(client.next_raw().await, None | Some(Message::Close(_))),
        "the socket is gone"
    );

    // The old token is spent; ResumeSession gives a new one for the same URL.
    let mut stale = RawClient::open(&url, &token).await;
    assert!(close_reason(&mut stale).await.contains("already used"));
    let resumed = ssm.resume_session().session_id(&id).send().await.unwrap();
    assert_eq!(resumed.stream_url(), Some(url.as_str()));
    let mut client = RawClient {
        next_sequence: client.next_sequence,
        ..RawClient::open(&url, resumed.token_value().unwrap()).await
    };
    // No new handshake: the unacked message comes again with its sequence number.
    let again = client.next_data().await;
    assert_eq!(again.sequence_number, unacked.sequence_number);
    assert_eq!(again.payload, unacked.payload);
    client.ack(&again).await;

    // Input continues with the next sequence number and reaches the same connection.
    client.send_frames(&[Frame::psh(3, b"after")]).await;
    assert_eq!(read_exactly(&mut connection, 5).await, b"after");
    let stats = gateway.stats();
    assert_eq!(stats.websockets_dropped, 1, "{stats:?}");
    assert_eq!(stats.websockets_opened, 2, "{stats:?}");
    assert!(stats.retransmissions_sent >= 1, "{stats:?}");
}

#[tokio::test]
async fn drop_after_bytes_drops_each_socket() {
    let echo = echo_server().await;
    let gateway = gateway(GatewayConfig {
        faults: Faults {
            drop_after_bytes: Some(100),
            ..Faults::default()
        },
        ..GatewayConfig::default()
    })
    .await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, echo.port()).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    client
        .send_frames(&[Frame::syn(3), Frame::psh(3, &[7u8; 200])])
        .await;
    loop {
        match client.next_raw().await {
            None | Some(Message::Close(_)) => break,
            Some(_) => continue,
        }
    }
    assert_eq!(gateway.stats().websockets_dropped, 1);
}

#[tokio::test]
async fn old_clients_get_basic_mode() {
    let echo = echo_server().await;
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, echo.port()).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.1.61.0").await;
    client
        .send_input(payload_type::OUTPUT, b"raw bytes".to_vec())
        .await;
    let mut echoed = Vec::new();
    while echoed.len() < 9 {
        let message = client.next_data().await;
        client.ack(&message).await;
        echoed.extend(message.payload);
    }
    assert_eq!(echoed, b"raw bytes");
}

#[tokio::test]
async fn pings_are_answered() {
    let gateway = gateway(GatewayConfig::default()).await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, 7).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    futures::SinkExt::send(
        &mut client.websocket,
        Message::Ping(Bytes::from_static(b"keepalive")),
    )
    .await
    .unwrap();
    loop {
        match client.next_raw().await {
            Some(Message::Pong(payload)) => {
                assert_eq!(&payload[..], b"keepalive");
                break;
            }
            Some(_) => continue,
            None => panic!("the socket ended instead of answering the ping"),
        }
    }
}

#[tokio::test]
async fn shutdown_closes_sockets_and_dialled_connections() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = gateway(GatewayConfig::default()).await;
    let address = gateway.address();
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, listener.local_addr().unwrap().port()).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    client.send_frames(&[Frame::syn(3)]).await;
    let (mut connection, _) = listener.accept().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), gateway.shutdown())
        .await
        .expect("shutdown waits only for its own tasks");
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut connection, &mut rest)
        .await
        .unwrap();
    // What was on its way (the SYN's ack) may still arrive; then the socket ends.
    while let Some(message) = client.next_raw().await {
        if matches!(message, Message::Close(_)) {
            break;
        }
    }
    assert!(tokio::net::TcpStream::connect(address).await.is_err());
}

#[tokio::test]
async fn acks_wait_out_the_ack_delay() {
    let gateway = gateway(GatewayConfig {
        faults: Faults {
            ack_delay: Duration::from_millis(300),
            ..Faults::default()
        },
        ..GatewayConfig::default()
    })
    .await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, 7).await;
    let mut client = RawClient::open(&url, &token).await;
    client.handshake("1.2.764.0").await;
    let sent = std::time::Instant::now();
    let message = client.send_frames(&[Frame::nop()]).await;
    // The HandshakeResponse's ack is still on its way too: it was held back as long.
    while client.next_ack().await.sequence_number != message.sequence_number {}
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "{:?}",
        sent.elapsed()
    );
}

#[tokio::test]
async fn start_publication_comes_first_when_asked() {
    let gateway = gateway(GatewayConfig {
        start_publication: true,
        ..GatewayConfig::default()
    })
    .await;
    let ssm = ssm_client(&gateway).await;
    let (_, url, token) = start_session(&ssm, 7).await;
    let mut client = RawClient::open(&url, &token).await;
    let first = client.next().await;
    assert_eq!(first.message_type, message_type::START_PUBLICATION);
    assert!(first.payload.is_empty());
    client.handshake("1.2.764.0").await;
}
