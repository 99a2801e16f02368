//! The JSON the data channel carries (`ssm/PROTOCOL.md` §1, §3, §4, §5) and the client's half of the
//! handshake, without I/O: the OpenDataChannelInput text frame, acknowledgements, the HandshakeRequest and the
//! client's answer to it, and the `channel_closed` payload.
//!
//! The handshake decides the port mode on both ends: the agent multiplexes (smux) iff the ClientVersion we
//! report is at least 1.1.70, and keeps its smux keep-alive off iff it is above 1.2.331.0 (§5). We report a
//! released plugin version above both, and refuse an agent too old to multiplex (3.0.196.0 or older), since
//! `mux` is the only port mode this client speaks.

use serde::{Deserialize, Serialize};

/// The plugin version we report: a released one (multiplexing, no smux keep-alive on the agent).
pub const CLIENT_VERSION: &str = "1.2.814.0";
/// Agents up to this version do not multiplex port sessions.
const LAST_AGENT_WITHOUT_MUX: &str = "3.0.196.0";
/// ActionStatus values (§4).
const ACTION_SUCCESS: u32 = 1;
const ACTION_UNSUPPORTED: u32 = 3;

/// The first (text) frame on every WebSocket (§1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannelInput<'a> {
    pub message_schema_version: &'a str,
    pub request_id: String,
    pub token_value: &'a str,
    pub client_id: &'a str,
    pub client_version: &'a str,
}

impl<'a> OpenDataChannelInput<'a> {
    /// The frame that opens (or re-opens) the data channel with `token`.
    pub fn json(token: &'a str, client_id: &'a str) -> String {
        let input = OpenDataChannelInput {
            message_schema_version: "1.0",
            request_id: uuid::Uuid::new_v4().to_string(),
            token_value: token,
            client_id,
            client_version: CLIENT_VERSION,
        };
        serde_json::to_string(&input).unwrap_or_default()
    }
}

/// An acknowledgement's payload (§3); the receiver uses only the sequence number.
#[derive(Debug, Serialize, Deserialize)]
pub struct AcknowledgeContent {
    #[serde(rename = "AcknowledgedMessageType")]
    pub message_type: String,
    #[serde(rename = "AcknowledgedMessageId")]
    pub message_id: String,
    #[serde(rename = "AcknowledgedMessageSequenceNumber")]
    pub sequence_number: i64,
    #[serde(rename = "IsSequentialMessage")]
    pub is_sequential: bool,
}

/// The agent's HandshakeRequest (§4), as far as the client reads it.
#[derive(Debug, Deserialize)]
pub struct HandshakeRequest {
    #[serde(rename = "AgentVersion", default)]
    pub agent_version: String,
    #[serde(rename = "RequestedClientActions", default)]
    pub requested_client_actions: Option<Vec<RequestedAction>>,
}

/// One action the agent asks for.
#[derive(Debug, Deserialize)]
pub struct RequestedAction {
    #[serde(rename = "ActionType")]
    pub action_type: String,
    #[serde(rename = "ActionParameters", default)]
    pub action_parameters: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct HandshakeResponse {
    #[serde(rename = "ClientVersion")]
    client_version: &'static str,
    #[serde(rename = "ProcessedClientActions")]
    processed_client_actions: Vec<ProcessedAction>,
    #[serde(rename = "Errors")]
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ProcessedAction {
    #[serde(rename = "ActionType")]
    action_type: String,
    #[serde(rename = "ActionStatus")]
    action_status: u32,
    #[serde(rename = "ActionResult")]
    action_result: Option<serde_json::Value>,
    #[serde(rename = "Error")]
    error: String,
}

/// Why the client cannot take part in a handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the agent's HandshakeRequest is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the SSM agent on the instance is version {0}, too old to multiplex a port session (it needs a version above {LAST_AGENT_WITHOUT_MUX}); update amazon-ssm-agent"
    )]
    AgentTooOld(String),
    #[error("the agent asks for a {0} session, not a port session")]
    NotPort(String),
}

/// The HandshakeResponse payload for `request`: Success for the port SessionType, Unsupported for anything else
/// (KMS encryption never occurs for port sessions, and the agent then ends the session with a reason).
pub fn respond(request: &[u8]) -> Result<(Vec<u8>, String), HandshakeError> {
    let request: HandshakeRequest = serde_json::from_slice(request)
        .map_err(|error| HandshakeError::NotJson(error.to_string()))?;
    if !newer_than(&request.agent_version, LAST_AGENT_WITHOUT_MUX) {
        return Err(HandshakeError::AgentTooOld(request.agent_version));
    }
    let mut processed = Vec::new();
    for action in request.requested_client_actions.unwrap_or_default() {
        let (status, error) = match action.action_type.as_str() {
            "SessionType" => {
                let session_type = action.action_parameters["SessionType"]
                    .as_str()
                    .unwrap_or_default();
                if session_type != "Port" {
                    return Err(HandshakeError::NotPort(session_type.to_owned()));
                }
                (ACTION_SUCCESS, String::new())
            }
            other => (
                ACTION_UNSUPPORTED,
                format!("skiff does not support the {other} action on port sessions"),
            ),
        };
        processed.push(ProcessedAction {
            action_type: action.action_type,
            action_status: status,
            action_result: None,
            error,
        });
    }
    let response = HandshakeResponse {
        client_version: CLIENT_VERSION,
        processed_client_actions: processed,
        errors: Vec::new(),
    };
    Ok((
        serde_json::to_vec(&response).unwrap_or_default(),
        request.agent_version,
    ))
}

/// The `Output` of a `channel_closed` payload: why the service ended the session.
pub fn channel_closed_output(payload: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ChannelClosed {
        #[serde(rename = "Output", default)]
        output: String,
    }
    serde_json::from_slice::<ChannelClosed>(payload)
        .map(|closed| closed.output)
        .unwrap_or_default()
}

/// Whether dotted version `version` is above `than`, numerically part by part (the plugin's strict compare;
/// an unreadable version is not newer).
pub fn newer_than(version: &str, than: &str) -> bool {
    let parse = |text: &str| -> Option<Vec<u64>> {
        text.trim()
            .split('.')
            .map(|part| part.parse().ok())
            .collect()
    };
    match (parse(version), parse(than)) {
        (Some(left), Some(right)) => left > right,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_request_gets_success_and_our_version() {
        let request = br#"{"AgentVersion":"3.3.1142.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"50051","type":"LocalPortForwarding"}}}]}"#;
        let (response, agent) = respond(request).unwrap();
        assert_eq!(agent, "3.3.1142.0");
        let json: serde_json::Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(json["ClientVersion"], CLIENT_VERSION);
        assert_eq!(
            json["ProcessedClientActions"][0]["ActionType"],
            "SessionType"
        );
        assert_eq!(json["ProcessedClientActions"][0]["ActionStatus"], 1);
    }

    #[test]
    fn an_unknown_action_is_unsupported_and_an_old_agent_refused() {
        let request = br#"{"AgentVersion":"3.3.1.0","RequestedClientActions":[{"ActionType":"KMSEncryption","ActionParameters":{}}]}"#;
        let (response, _) = respond(request).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&response).unwrap();
        assert_eq!(json["ProcessedClientActions"][0]["ActionStatus"], 3);
        let old = br#"{"AgentVersion":"3.0.196.0","RequestedClientActions":[]}"#;
        assert_eq!(
            respond(old).unwrap_err(),
            HandshakeError::AgentTooOld("3.0.196.0".into())
        );
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(newer_than("3.0.1000.0", "3.0.196.0"));
        assert!(!newer_than("3.0.196.0", "3.0.196.0"));
        assert!(!newer_than("garbage", "3.0.196.0"));
        assert!(newer_than(CLIENT_VERSION, "1.2.331.0"));
    }

    #[test]
    fn channel_closed_says_why() {
        let payload =
            br#"{"MessageId":"x","Output":"Session s was terminated.","SchemaVersion":1}"#;
        assert_eq!(channel_closed_output(payload), "Session s was terminated.");
        assert_eq!(channel_closed_output(b"not json"), "");
    }
}
