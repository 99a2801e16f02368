//! The gateway's HTTP control plane: AWS JSON 1.1 calls (`POST /`, `X-Amz-Target: AmazonSSM.<Op>`) as
//! aws-sdk-ssm sends them. StartSession, ResumeSession, TerminateSession and DescribeInstanceInformation are
//! answered here; every other `AmazonSSM.*` call goes byte for byte (method, path, headers with the SigV4
//! signature, body) to the moto server, whose answer comes back unchanged. Signatures are never checked.
//! WebSocket upgrades of the same port go to `upgrade`.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::Shared;
use super::session::{self, SessionInfo};
use super::upgrade;

/// The content type of AWS JSON 1.1.
const JSON_1_1: &str = "application/x-amz-json-1.1";
/// The only document the gateway runs.
const PORT_FORWARDING_DOCUMENT: &str = "AWS-StartPortForwardingSession";

/// A call the gateway answers itself, from its parsed JSON input.
type Answer = fn(&Arc<Shared>, &Value) -> Response<Full<Bytes>>;

/// Answers one HTTP request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if upgrade::is_websocket(&request) {
        return upgrade::accept(shared, request);
    }
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                format!("could not read the request body: {error}"),
            );
        }
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(operation) = target.strip_prefix("AmazonSSM.") else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!(
                "the SSM test gateway serves AmazonSSM.* calls (X-Amz-Target), and this request has {target:?}"
            ),
        );
    };
    let answered: Option<Answer> = match operation {
        "StartSession" => Some(start_session),
        "ResumeSession" => Some(resume_session),
        "TerminateSession" => Some(terminate_session),
        "DescribeInstanceInformation" => Some(describe_instance_information),
        _ => None,
    };
    let Some(answer) = answered else {
        return pass_through(&shared, operation, parts, body).await;
    };
    match serde_json::from_slice::<Value>(&body) {
        Ok(input) => answer(&shared, &input),
        Err(error) => aws_error(
            StatusCode::BAD_REQUEST,
            "SerializationException",
            format!("the AmazonSSM.{operation} body is not JSON: {error}"),
        ),
    }
}

fn start_session(shared: &Arc<Shared>, input: &Value) -> Response<Full<Bytes>> {
    let Some(target) = input["Target"].as_str() else {
        return validation_error("Target");
    };
    let document = input["DocumentName"]
        .as_str()
        .unwrap_or("SSM-SessionManagerRunShell");
    if document != PORT_FORWARDING_DOCUMENT {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidDocument",
            format!("the SSM test gateway runs only {PORT_FORWARDING_DOCUMENT}, not {document}"),
        );
    }
    // The document's defaults: portNumber 80, localPortNumber 0.
    let parameter = |name: &str, default: &str| {
        input["Parameters"][name][0]
            .as_str()
            .unwrap_or(default)
            .to_owned()
    };
    let port_number = parameter("portNumber", "80");
    let local_port_number = parameter("localPortNumber", "0");
    let Ok(port) = port_number.parse::<u16>() else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameters",
            format!("portNumber {port_number:?} is not a port number"),
        );
    };
    if !shared.is_online(target) {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "TargetNotConnected",
            format!("{target} is not connected."),
        );
    }
    let route = shared
        .settings
        .routes
        .get(&(target.to_owned(), port))
        .copied()
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let id = shared.new_session_id();
    let info = SessionInfo {
        id: id.clone(),
        target: target.to_owned(),
        port_number,
        local_port_number,
        route,
        ordinal: shared.next_ordinal(),
    };
    let (handle, token) = session::start(shared, info);
    shared.insert_session(handle);
    shared.counters.add_session_started();
    tracing::debug!(session = %id, %target, %route, "ssm gateway: session started");
    ok(json!({
        "SessionId": id,
        "TokenValue": token,
        "StreamUrl": shared.stream_url(&id),
    }))
}

fn resume_session(shared: &Arc<Shared>, input: &Value) -> Response<Full<Bytes>> {
    let Some(id) = input["SessionId"].as_str() else {
        return validation_error("SessionId");
    };
    let Some(session) = shared.session(id) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "DoesNotExistException",
            format!("Session {id} does not exist."),
        );
    };
    match session.new_token() {
        Some(token) => {
            shared.counters.add_session_resumed();
            ok(json!({
                "SessionId": id,
                "TokenValue": token,
                "StreamUrl": shared.stream_url(id),
            }))
        }
        // An ended session answers like a timed-out one: no token (§1).
        None => ok(json!({ "SessionId": id, "TokenValue": "" })),
    }
}

fn terminate_session(shared: &Arc<Shared>, input: &Value) -> Response<Full<Bytes>> {
    let Some(id) = input["SessionId"].as_str() else {
        return validation_error("SessionId");
    };
    if let Some(session) = shared.session(id) {
        session.terminate(format!("Session {id} was terminated."));
    }
    ok(json!({ "SessionId": id }))
}

fn describe_instance_information(shared: &Arc<Shared>, input: &Value) -> Response<Full<Bytes>> {
    let mut instance_ids: Option<BTreeSet<String>> = None;
    let mut ping_statuses: Option<BTreeSet<String>> = None;
    let strings = |value: &Value| -> BTreeSet<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    };
    let mut filters: Vec<(String, BTreeSet<String>)> = Vec::new();
    if input.get("InstanceIds").is_some() {
        filters.push(("InstanceIds".to_owned(), strings(&input["InstanceIds"])));
    }
    for filter in input["Filters"].as_array().into_iter().flatten() {
        let key = filter["Key"].as_str().unwrap_or_default().to_owned();
        filters.push((key, strings(&filter["Values"])));
    }
    for filter in input["InstanceInformationFilterList"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let key = filter["key"].as_str().unwrap_or_default().to_owned();
        filters.push((key, strings(&filter["valueSet"])));
    }
    for (key, values) in filters {
        let slot = match key.as_str() {
            "InstanceIds" => &mut instance_ids,
            "PingStatus" => &mut ping_statuses,
            other => {
                return aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidFilterKey",
                    format!(
                        "the SSM test gateway filters instances by InstanceIds and PingStatus, not {other:?}"
                    ),
                );
            }
        };
        slot.get_or_insert_with(BTreeSet::new).extend(values);
    }
    let online_wanted = ping_statuses
        .as_ref()
        .is_none_or(|statuses| statuses.contains("Online"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    let list: Vec<Value> = shared
        .online_instances()
        .into_iter()
        .filter(|id| online_wanted && instance_ids.as_ref().is_none_or(|ids| ids.contains(id)))
        .map(|id| {
            json!({
                "InstanceId": id,
                "PingStatus": "Online",
                "LastPingDateTime": now,
                "AgentVersion": shared.settings.agent_version,
                "IsLatestVersion": true,
                "PlatformType": "Linux",
                "PlatformName": "Ubuntu",
                "PlatformVersion": "24.04",
                "ResourceType": "EC2Instance",
                "IPAddress": "127.0.0.1",
                "ComputerName": "ip-127-0-0-1.ec2.internal",
            })
        })
        .collect();
    ok(json!({ "InstanceInformationList": list }))
}

/// Sends the call to moto as it came and returns moto's answer as it came.
async fn pass_through(
    shared: &Shared,
    operation: &str,
    parts: http::request::Parts,
    body: Bytes,
) -> Response<Full<Bytes>> {
    let Some(endpoint) = shared.settings.moto_endpoint.as_deref() else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            format!(
                "the SSM test gateway answers StartSession, ResumeSession, TerminateSession and \
                 DescribeInstanceInformation itself and has no moto endpoint to pass AmazonSSM.{operation} to"
            ),
        );
    };
    match forward(endpoint, parts, body, shared).await {
        Ok(response) => response,
        Err(error) => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            format!(
                "the SSM test gateway could not pass AmazonSSM.{operation} to moto at {endpoint}: {error:#}"
            ),
        ),
    }
}

async fn forward(
    endpoint: &str,
    parts: http::request::Parts,
    body: Bytes,
    shared: &Shared,
) -> anyhow::Result<Response<Full<Bytes>>> {
    let uri: http::Uri = endpoint.parse()?;
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("the endpoint has no host:port"))?;
    let address = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let connection = tokio::net::TcpStream::connect(&address).await?;
    let (mut sender, driver) =
        hyper::client::conn::http1::handshake(TokioIo::new(connection)).await?;
    shared.tasks.spawn(async move {
        let _ = driver.await;
    });
    let mut request = Request::from_parts(parts, Full::new(body));
    request
        .headers_mut()
        .remove(hyper::header::TRANSFER_ENCODING);
    let response = sender.send_request(request).await?;
    let (mut parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
    parts.headers.remove(hyper::header::CONNECTION);
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn ok(body: Value) -> Response<Full<Bytes>> {
    json_response(StatusCode::OK, &body)
}

fn validation_error(field: &str) -> Response<Full<Bytes>> {
    aws_error(
        StatusCode::BAD_REQUEST,
        "ValidationException",
        format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ),
    )
}

/// An AWS JSON error the SDK parses: `{"__type":..,"message":..}` and the same type in `x-amzn-ErrorType`.
pub(crate) fn aws_error(status: StatusCode, kind: &str, message: String) -> Response<Full<Bytes>> {
    let mut response = json_response(status, &json!({ "__type": kind, "message": message }));
    if let Ok(value) = http::HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, JSON_1_1)
        .header("x-amzn-requestid", uuid::Uuid::new_v4().to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_default()
}
