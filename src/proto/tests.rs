//! Tests of the conversions between the generated types and `crate::api`.

use super::*;

#[test]
fn exec_spec_round_trips() {
    let spec = api::ExecSpec {
        command: vec!["cat".into(), "/etc/os-release".into()],
        tty: true,
        user: Some("vscode".into()),
        working_dir: None,
        env: [("A".to_owned(), "1".to_owned())].into(),
        window: Some(api::WindowSize {
            columns: 120,
            rows: 40,
        }),
        stdin: true,
    };
    let request = v1::ExecRequest::from(spec.clone());
    assert_eq!(exec_start(request).unwrap(), spec);
}

#[test]
fn exec_stream_must_begin_with_start() {
    let request = v1::ExecRequest::from(api::ExecInput::Stdin(b"x".to_vec()));
    let error = exec_start(request).unwrap_err();
    assert!(
        error.to_string().contains("first message must be start"),
        "{error}"
    );
}

#[test]
fn unspecified_enums_are_refused() {
    let response = v1::StatusResponse {
        container_state: 0,
        idle: Some(v1::IdleStatus::default()),
        ..Default::default()
    };
    let error = api::Status::try_from(response).unwrap_err();
    assert_eq!(
        error.to_string(),
        "StatusResponse: field container_state has invalid value 0"
    );
}

#[test]
fn forward_port_zero_is_invalid() {
    let request = v1::ForwardRequest {
        message: Some(v1::forward_request::Message::Open(v1::ForwardOpen {
            host: String::new(),
            port: 70_000,
        })),
    };
    assert!(forward_open(request).is_err());
}

#[test]
fn up_event_round_trips() {
    let events = [
        api::UpEvent::Progress {
            phase: api::UpPhase::Building,
            message: "building".into(),
        },
        api::UpEvent::Output {
            stream: api::OutputStream::Stderr,
            data: vec![0, 255, 10],
        },
        api::UpEvent::Warning("careful".into()),
        api::UpEvent::Ready(api::UpResult {
            container_id: "abc".into(),
            created: true,
            workspace_folder: "/workspaces/app".into(),
            remote_user: "root".into(),
            image: "debian:12".into(),
        }),
    ];
    for event in events {
        let wire = v1::UpResponse::from(event.clone());
        assert_eq!(api::UpEvent::try_from(wire).unwrap(), event);
    }
}

#[test]
fn up_request_defaults_files_folder_to_local_folder() {
    let request = v1::UpRequest {
        config_json: "{}".into(),
        config_file: "/w/.devcontainer.json".into(),
        local_folder: "/w".into(),
        files_folder: String::new(),
        rebuild: false,
        registry_logins: Vec::new(),
    };
    let spec = api::UpSpec::try_from(request).unwrap();
    assert_eq!(spec.files_folder, "/w");
}

/// A registry login crosses the wire whole, and its secret never reaches a debug line.
#[test]
fn a_registry_login_crosses_and_its_secret_is_never_printed() {
    let login = api::RegistryLogin {
        registry: "127.0.0.1:5000".into(),
        username: "ada".into(),
        secret: "s3cret".into(),
        identity_token: false,
    };
    let spec = api::UpSpec {
        config_json: "{}".into(),
        config_file: "/w/.devcontainer.json".into(),
        local_folder: "/w".into(),
        files_folder: "/w".into(),
        rebuild: false,
        registry_logins: vec![login.clone()],
    };
    let back = api::UpSpec::try_from(v1::UpRequest::from(spec.clone())).unwrap();
    assert_eq!(back, spec);
    let printed = format!("{spec:?}");
    assert!(
        printed.contains("127.0.0.1:5000") && !printed.contains("s3cret"),
        "{printed}"
    );
    assert_eq!(
        api::RegistryLogin::for_reference(&[login], "127.0.0.1:5000/private/busybox:1")
            .map(|login| login.username.as_str()),
        Some("ada")
    );
}
