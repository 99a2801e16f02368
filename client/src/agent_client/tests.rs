//! How a failed call is sorted: by status code and by the types in the error's source chain, never by text.

use super::*;

/// An error of some layer above the transport, whose cause is `source`.
#[derive(Debug)]
struct Layer(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Layer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a layer failed")
    }
}

impl std::error::Error for Layer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[test]
fn the_agents_answer_keeps_its_code_and_message() {
    let status = tonic::Status::new(tonic::Code::Unimplemented, "unknown method Ssh");
    let error = AgentError::from_status("ssh", status);
    assert_eq!(error.code(), Some(Code::Unimplemented));
    assert!(
        matches!(&error, AgentError::Agent { call: "ssh", message, .. } if message == "unknown method Ssh"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "unknown method Ssh");
}

#[test]
fn an_agent_message_that_speaks_of_connections_is_still_the_agents() {
    // The agent's own words may say "connection" or "transport error": only the types beneath a status say
    // that the connection failed, and a status from the wire has none.
    for message in [
        "connection refused by 127.0.0.1:8080 in the dev container",
        "transport error in the forwarded connection",
        "error trying to connect to the registry",
    ] {
        let error = AgentError::from_status(
            "forward",
            tonic::Status::new(tonic::Code::Unavailable, message),
        );
        assert_eq!(error.code(), Some(Code::Unavailable), "{message}");
        assert!(matches!(error, AgentError::Agent { .. }), "{message}");
    }
}

#[test]
fn an_io_error_beneath_the_status_is_a_lost_connection() {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "the peer reset it");
    let status = tonic::Status::from_error(Box::new(io));
    let error = AgentError::from_status("exec", status);
    assert_eq!(error.code(), None);
    match &error {
        AgentError::Connection { call, detail } => {
            assert_eq!(*call, "exec");
            assert!(detail.contains("the peer reset it"), "{detail}");
        }
        other => panic!("expected a lost connection, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .starts_with("exec: lost the connection to the agent: "),
        "{error}"
    );
}

#[test]
fn a_transport_error_deep_in_the_chain_is_found() {
    // Its text has none of the words the old sorting looked for.
    let io = std::io::Error::other("the tunnel daemon went away");
    let status = tonic::Status::from_error(Box::new(Layer(Box::new(Layer(Box::new(io))))));
    let error = AgentError::from_status("status", status);
    assert!(matches!(error, AgentError::Connection { .. }), "{error:?}");
}

#[test]
fn an_http2_reset_is_a_lost_connection() {
    for reason in [
        h2::Reason::CANCEL,
        h2::Reason::INTERNAL_ERROR,
        h2::Reason::REFUSED_STREAM,
    ] {
        let status = tonic::Status::from_error(Box::new(h2::Error::from(reason)));
        let error = AgentError::from_status("up", status);
        assert!(
            matches!(error, AgentError::Connection { .. }),
            "{reason:?}: {error:?}"
        );
    }
}

#[test]
fn a_cause_that_is_no_transport_leaves_the_answer_to_the_agent() {
    let status = tonic::Status::from_error(Box::new(Layer(Box::new(std::fmt::Error))));
    let error = AgentError::from_status("status", status);
    assert_eq!(error.code(), Some(Code::Unknown));
}

#[test]
fn every_status_code_has_its_own_kind() {
    let codes = [
        (tonic::Code::Cancelled, Code::Cancelled),
        (tonic::Code::Unknown, Code::Unknown),
        (tonic::Code::InvalidArgument, Code::InvalidArgument),
        (tonic::Code::DeadlineExceeded, Code::DeadlineExceeded),
        (tonic::Code::NotFound, Code::NotFound),
        (tonic::Code::AlreadyExists, Code::AlreadyExists),
        (tonic::Code::PermissionDenied, Code::PermissionDenied),
        (tonic::Code::ResourceExhausted, Code::ResourceExhausted),
        (tonic::Code::FailedPrecondition, Code::FailedPrecondition),
        (tonic::Code::Aborted, Code::Aborted),
        (tonic::Code::OutOfRange, Code::OutOfRange),
        (tonic::Code::Unimplemented, Code::Unimplemented),
        (tonic::Code::Internal, Code::Internal),
        (tonic::Code::Unavailable, Code::Unavailable),
        (tonic::Code::DataLoss, Code::DataLoss),
        (tonic::Code::Unauthenticated, Code::Unauthenticated),
    ];
    for (wire, ours) in codes {
        let error = AgentError::from_status("call", tonic::Status::new(wire, "no"));
        assert_eq!(error.code(), Some(ours), "{wire:?}");
    }
}
