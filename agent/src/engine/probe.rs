//! The user environment probe (`userEnvProbe`): the remote user's shell, run as a login and/or interactive
//! shell, prints its environment between two marks.

use std::collections::BTreeMap;

use skiff::api::UpEvent;
use skiff::devcontainer::UserEnvProbe;

use super::process::{ProcessSpec, Sink};
use super::{ContainerInfo, Engine, Events, emit};

impl Engine {
    /// Probes the remote user's shell environment the way the reference CLI does (`userEnvProbe`): runs the user's shell as a
    /// login and/or interactive shell and reads its environment. A probe that fails or takes over 10 s gives nothing, with a
    /// warning.
    pub(super) async fn probe_user_env(
        &self,
        container: &ContainerInfo,
        user: &str,
        probe: UserEnvProbe,
        events: &Events,
    ) -> BTreeMap<String, String> {
        let flags = match probe {
            UserEnvProbe::None => return BTreeMap::new(),
            UserEnvProbe::LoginShell => "-lc",
            UserEnvProbe::InteractiveShell => "-ic",
            UserEnvProbe::LoginInteractiveShell => "-lic",
        };
        let script = format!(
            "u=\"$(id -un 2>/dev/null)\"; s=\"$SHELL\"; \
             [ -n \"$s\" ] || s=\"$( (getent passwd \"$u\" || grep \"^$u:\" /etc/passwd) 2>/dev/null | head -n 1 | cut -d: -f7)\"; \
             [ -x \"$s\" ] || s=/bin/sh; \
             exec \"$s\" {flags} 'printf %s {PROBE_MARK}; cat /proc/self/environ; printf %s {PROBE_MARK}'"
        );
        let spec = ProcessSpec {
            command: vec!["/bin/sh".into(), "-c".into(), script],
            user: Some(user.to_owned()),
            working_dir: None,
            env: Vec::new(),
            tty: false,
            window: None,
            stdin: false,
        };
        let run = self.run_to_end(container, spec, Sink::Collect);
        let output = match tokio::time::timeout(std::time::Duration::from_secs(10), run).await {
            Ok(Ok((_, output))) => output,
            Ok(Err(error)) => {
                emit(
                    events,
                    UpEvent::Warning(format!(
                        "userEnvProbe: probing the environment of {user} failed: {error}"
                    )),
                )
                .await;
                return BTreeMap::new();
            }
            Err(_) => {
                emit(events, UpEvent::Warning(format!(
                    "userEnvProbe: the shell of {user} did not answer within 10 s; commands run without its environment"
                )))
                .await;
                return BTreeMap::new();
            }
        };
        parse_probe(&output)
    }
}

/// Marks the start and end of the probed environment in the probe's output, so shell start-up noise is ignored.
const PROBE_MARK: &str = "SKIFF_ENV_PROBE_2f7c1a";

/// Reads the environment between the probe's marks (`NAME=value` entries separated by NUL); `PWD` is dropped, as in the
/// reference CLI.
fn parse_probe(output: &[u8]) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(output);
    let Some(start) = text.find(PROBE_MARK) else {
        return BTreeMap::new();
    };
    let rest = &text[start + PROBE_MARK.len()..];
    let Some(end) = rest.find(PROBE_MARK) else {
        return BTreeMap::new();
    };
    rest[..end]
        .split('\0')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| !key.is_empty() && *key != "PWD")
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}
