//! The AWS path of idle shutdown: skiffd in a container standing in for the instance, configured to power
//! off when idle. The poweroff command is a stand-in that records when it ran; the test checks it runs
//! once the timeout has passed and not before.

use std::time::{Duration, SystemTime};

use skiff::tls::Identity;
use skiff_tests::{BASE_IMAGE, require_docker, wait_until};

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

fn unix_ms(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn an_idle_instance_powers_off_after_the_timeout_and_not_before() {
    require_docker();
    let state = tempfile::tempdir().unwrap();
    let client = Identity::generate("skiff-client").unwrap();
    std::fs::write(
        state.path().join("skiffd.toml"),
        format!(
            r#"workspace = "instance"
idle_timeout = "3s"
idle_action = "poweroff"
poweroff_command = ["/bin/sh", "-c", "date +%s%3N >> /state/poweroff-at"]
state_dir = "/state/agent"
client_certificate = '''{}'''
"#,
            client.certificate_pem
        ),
    )
    .unwrap();
    let name = format!("skiff-poweroff-{}", std::process::id());
    let skiffd = skiff_tests::binary("skiffd");
    let output = std::process::Command::new("docker")
        .args(["run", "-d", "--name", &name])
        .args([
            "-v",
            &format!("{}:/usr/local/bin/skiffd:ro", skiffd.display()),
        ])
        .args(["-v", &format!("{}:/state", state.path().display())])
        .args([
            BASE_IMAGE,
            "/usr/local/bin/skiffd",
            "--config",
            "/state/skiffd.toml",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let container = Container(name);

    let listening = state.path().join("agent/listen-address");
    wait_until(Duration::from_secs(15), || listening.exists()).unwrap_or_else(|| {
        let logs = std::process::Command::new("docker")
            .args(["logs", &container.0])
            .output()
            .unwrap();
        panic!(
            "the agent did not start: {}",
            String::from_utf8_lossy(&logs.stderr)
        )
    });
    let started = unix_ms(SystemTime::now());
    let marker = state.path().join("poweroff-at");

    std::thread::sleep(Duration::from_secs(2));
    assert!(!marker.exists(), "no poweroff before the timeout");
    // The shell creates the file before `date` writes to it: wait for a whole line, not only the file.
    let written = || {
        std::fs::read_to_string(&marker)
            .ok()
            .filter(|text| text.ends_with('\n'))
    };
    wait_until(Duration::from_secs(6), || written().is_some()).expect("the poweroff command ran");
    let text = written().expect("the poweroff command wrote its line");
    let ran_at: u128 = text
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| panic!("the poweroff command wrote {text:?}, not a time"));
    let late = ran_at as i128 - started as i128;
    assert!(
        late >= 2_800,
        "the poweroff came {late} ms after start, before the 3 s timeout"
    );
    assert!(
        late <= 3_000 + 2_000,
        "the poweroff came {late} ms after start, long after the timeout"
    );
    std::thread::sleep(Duration::from_secs(1));
    let runs = std::fs::read_to_string(&marker).unwrap().lines().count();
    assert_eq!(runs, 1, "the poweroff command runs once");
    let logs = std::process::Command::new("docker")
        .args(["logs", &container.0])
        .output()
        .unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(
        logs.contains("idle for the timeout"),
        "the decision is logged with its reason: {logs}"
    );
}
