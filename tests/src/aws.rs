//! The AWS rig: one moto server per test binary, [`AwsSandbox`] (a [`Sandbox`] whose `skiff` talks to it), boto3
//! read-backs through `tests/fixtures/aws/moto.py`, and [`Instance`], a container standing in for an EC2 instance.
//!
//! The moto server starts on first use, on a free port, with the Ubuntu AMIs of `tests/fixtures/aws/amis.json` and
//! AWS managed policies, and stops when the binary exits. Each test uses a region of its own, so tests running at
//! once never see each other's instances. Read-backs go through boto3, a real AWS client, never through skiff's own
//! code. Every AWS call goes to 127.0.0.1: the endpoint is set, instance metadata is disabled, and the AWS config
//! files are empty.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::{BASE_IMAGE, Sandbox, fixtures_dir, wait_until};

/// The owner moto reports for the tests' default credentials: their `aws:userid`, the `skiff:owner` tag.
pub const MOTO_OWNER: &str = "AKIAIOSFODNN7EXAMPLE";
/// The ARN moto reports for the same credentials, the informational `skiff:owner-arn` tag.
pub const MOTO_ARN: &str = "arn:aws:sts::123456789012:user/moto";

/// The moto server of this test binary.
pub struct Moto {
    pub endpoint: String,
}

pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

/// The version of python tool `name` that `tests/fixtures/aws/requirements.txt` pins (`cargo xtask test` installs
/// those into `target/test-tools/venv` and puts its `bin` first on `PATH`).
pub fn pinned(name: &str) -> String {
    let requirements = fixtures_dir().join("aws/requirements.txt");
    std::fs::read_to_string(&requirements)
        .unwrap()
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .find_map(|line| {
            let (tool, version) = line.split_once("==")?;
            (tool.split('[').next() == Some(name)).then(|| version.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("{} pins no version of {name}", requirements.display()))
}

/// How a test run gets the python tools at their pinned versions, for failure messages.
pub const PYTHON_TOOLS_HINT: &str = "run the tests with `cargo xtask test`, which installs the pinned versions \
     into target/test-tools/venv and puts its bin first on PATH (or put target/test-tools/venv/bin first on PATH \
     yourself after one `cargo xtask test`)";

/// Fails naming what it found unless the `python3` on `PATH` has moto at the pinned version: other versions answer
/// some of these tests' calls with HTTP 500, which would surface as an unreadable XML parse error.
fn check_moto_version() {
    let wanted = pinned("moto");
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys; print(sys.executable); import moto; print(moto.__version__)",
        ])
        .output()
        .unwrap_or_else(|error| {
            panic!("the AWS tests need python3 with moto {wanted}: {error}; {PYTHON_TOOLS_HINT}")
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    let python = lines.next().unwrap_or("python3").to_owned();
    match lines.next() {
        Some(found) if output.status.success() => assert!(
            found.trim() == wanted,
            "the AWS tests need moto {wanted}, and {python} has moto {found} (other versions answer some calls \
             with HTTP 500); {PYTHON_TOOLS_HINT}"
        ),
        _ => panic!(
            "the AWS tests need moto {wanted}, and {python} has none ({}); {PYTHON_TOOLS_HINT}",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    }
}

fn start_moto() -> Moto {
    check_moto_version();
    let port = crate::free_port();
    // moto writes its request recording into its working folder: a fresh one per test binary.
    let folder = std::env::temp_dir().join(format!("skiff-moto-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    let log = folder.join("moto.log");
    // A watchdog shell owns the server and stops it (and removes its folder) when this test process is gone,
    // because a static is never dropped: the server cannot outlive the tests.
    let script = format!(
        "python3 -m moto.server -H 127.0.0.1 -p {port} >{log} 2>&1 & server=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.5; done; \
         kill $server 2>/dev/null; sleep 1; rm -rf {folder}",
        log = log.display(),
        parent = std::process::id(),
        folder = folder.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .env("MOTO_AMIS_PATH", fixtures_dir().join("aws/amis.json"))
        .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        .env("MOTO_ENABLE_AMI_VALIDATION", "true")
        .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
        .current_dir(&folder)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|mut watchdog| {
            // Reaped in the background: the watchdog lives as long as this test binary.
            std::thread::spawn(move || watchdog.wait());
        })
        .expect("running sh to start moto");
    let endpoint = format!("http://127.0.0.1:{port}");
    let ready = wait_until(Duration::from_secs(30), || {
        http_post(port, "/moto-api/recorder/reset-recording")
    });
    http_post(port, "/moto-api/recorder/start-recording");
    assert!(
        ready.is_some(),
        "the moto server did not start on {endpoint}: {}; these tests need moto[server] {}: {PYTHON_TOOLS_HINT}",
        std::fs::read_to_string(&log).unwrap_or_default().trim(),
        pinned("moto")
    );
    Moto { endpoint }
}

/// A bare HTTP POST to moto's control API; whether it answered 200.
fn http_post(port: u16, path: &str) -> bool {
    crate::http::request(port, "POST", path, &[], &[]).is_ok_and(|response| response.status == 200)
}

/// Runs `tests/fixtures/aws/moto.py` against the server for `region`; its standard output.
pub fn helper(region: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg(fixtures_dir().join("aws/moto.py"))
        .arg(&moto().endpoint)
        .arg(region)
        .args(args)
        .output()
        .expect("running python3");
    assert!(
        output.status.success(),
        "moto.py {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// One AWS call through boto3, as JSON.
pub fn call(region: &str, service: &str, operation: &str, params: &Value) -> Value {
    serde_json::from_str(&helper(
        region,
        &["call", service, operation, &params.to_string()],
    ))
    .unwrap()
}

/// The requests skiff (the Rust SDK, not the tests' boto3) sent signed for `region`, in order.
pub fn recorded(region: &str) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(&helper(region, &["recording"])).unwrap()
}

pub fn recorded_actions<'a>(requests: &'a [Value], action: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|request| request["action"] == action)
        .collect()
}

/// Live (not terminated) instances tagged with skiff:workspace = `name` in `region`.
pub fn live_instances(region: &str, name: &str) -> Vec<Value> {
    let output = call(
        region,
        "ec2",
        "describe_instances",
        &serde_json::json!({"Filters": [
            {"Name": "tag:skiff:workspace", "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}
        ]}),
    );
    output["Reservations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|reservation| reservation["Instances"].as_array().unwrap().clone())
        .collect()
}

pub fn tagged_groups(region: &str, name: &str) -> Vec<Value> {
    call(
        region,
        "ec2",
        "describe_security_groups",
        &serde_json::json!({"Filters": [{"Name": "tag:skiff:workspace", "Values": [name]}]}),
    )["SecurityGroups"]
        .as_array()
        .unwrap()
        .clone()
}

pub fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource["Tags"]
        .as_array()?
        .iter()
        .find(|tag| tag["Key"] == key)
        .and_then(|tag| tag["Value"].as_str())
}

/// Runs `skiff aws-setup` once for this moto server's default account, as an IAM administrator would before any
/// developer uses skiff.
pub fn aws_setup() {
    static SETUP: OnceLock<()> = OnceLock::new();
    SETUP.get_or_init(|| {
        let sandbox = AwsSandbox::bare("us-east-1");
        let made = sandbox.ok(&["aws-setup"]);
        assert!(made.contains("role skiff-instance"), "{made}");
    });
}

/// Temporary credentials of `session` in a role of `account`, from moto's STS: another person (another
/// `aws:userid`), and with another account, an account where nobody ran `aws-setup`.
pub fn assumed_role(account: &str, session: &str) -> [String; 3] {
    let credentials = call(
        "us-east-1",
        "sts",
        "assume_role",
        &serde_json::json!({"RoleArn": format!("arn:aws:iam::{account}:role/developers"), "RoleSessionName": session}),
    )["Credentials"]
        .clone();
    ["AccessKeyId", "SecretAccessKey", "SessionToken"]
        .map(|field| credentials[field].as_str().unwrap().to_owned())
}

/// A skiff home of its own, set up for the moto server and one region: a [`Sandbox`] whose `skiff` calls go to moto
/// with the test's credentials, and which deletes its workspaces (through moto) when dropped.
#[derive(Debug)]
pub struct AwsSandbox {
    sandbox: Sandbox,
    /// The region of every call.
    pub region: String,
    /// Credentials other than the default ones (access key, secret, session token).
    pub credentials: Option<[String; 3]>,
}

impl std::ops::Deref for AwsSandbox {
    type Target = Sandbox;

    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl AwsSandbox {
    /// A sandbox in an account where `aws-setup` has run, with the default credentials.
    pub fn new(region: &str) -> Self {
        aws_setup();
        Self::bare(region)
    }

    /// A sandbox whose calls are `session`'s in a role of `account`.
    pub fn as_role(region: &str, account: &str, session: &str) -> Self {
        aws_setup();
        let mut sandbox = Self::bare(region);
        let credentials = assumed_role(account, session);
        let [key, secret, token] = credentials.clone();
        sandbox
            .sandbox
            .set_env("AWS_ACCESS_KEY_ID", Some(key.into()));
        sandbox
            .sandbox
            .set_env("AWS_SECRET_ACCESS_KEY", Some(secret.into()));
        sandbox
            .sandbox
            .set_env("AWS_SESSION_TOKEN", Some(token.into()));
        sandbox.credentials = Some(credentials);
        sandbox
    }

    /// A sandbox with the default credentials, whether or not `aws-setup` has run.
    pub fn bare(region: &str) -> Self {
        let endpoint = &moto().endpoint;
        let mut sandbox = Sandbox::new();
        std::fs::create_dir_all(sandbox.home()).unwrap();
        let aws_config = sandbox.root.path().join("aws-config");
        std::fs::write(&aws_config, "").unwrap();
        for (key, value) in [
            ("SKIFF_AWS_REGION", Some(region.into())),
            ("AWS_ENDPOINT_URL", Some(endpoint.into())),
            ("AWS_ACCESS_KEY_ID", Some("testing".into())),
            ("AWS_SECRET_ACCESS_KEY", Some("testing".into())),
            ("AWS_EC2_METADATA_DISABLED", Some("true".into())),
            ("AWS_CONFIG_FILE", Some(aws_config.clone().into())),
            ("AWS_SHARED_CREDENTIALS_FILE", Some(aws_config.into())),
            ("AWS_PROFILE", None),
            ("AWS_REGION", None),
            ("AWS_DEFAULT_REGION", None),
            ("AWS_SESSION_TOKEN", None),
            ("SKIFF_AGENT_BINARY", None),
            ("SKIFF_AWS_ABORT_AFTER", None),
        ] {
            sandbox.set_env(key, value);
        }
        Self {
            sandbox,
            region: region.to_owned(),
            credentials: None,
        }
    }

    /// The same sandbox with `key` set to `value` for skiff.
    pub fn with_env(mut self, key: &str, value: &str) -> Self {
        self.sandbox.set_env(key, Some(value.into()));
        self
    }

    /// A project folder `name` with a devcontainer.json naming the base image.
    pub fn project(&self, name: &str) -> PathBuf {
        let folder = self.sandbox.root.path().join("projects").join(name);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join(".devcontainer.json"),
            r#"{ "image": "debian:bookworm" }"#,
        )
        .unwrap();
        folder
    }
}

/// A container standing in for the instance: Debian, no systemd, on the host's network (so its 127.0.0.1 is
/// the test's), with the host's docker CLI and socket, running the user-data as cloud-init would.
pub struct Instance {
    pub name: String,
}

impl Instance {
    pub fn boot(script: &str, folder: &Path) -> Self {
        Self::boot_with(script, folder, &[])
    }

    /// Boots with `extra` arguments for `docker run` (volumes, mostly).
    pub fn boot_with(script: &str, folder: &Path, extra: &[String]) -> Self {
        let path = folder.join("user-data.sh");
        std::fs::write(&path, script).unwrap();
        let name = format!(
            "skiff-user-data-{}-{}",
            std::process::id(),
            crate::free_port()
        );
        let docker = which("docker");
        let output = Command::new("docker")
            .args(["run", "-d", "--name", &name, "--network", "host"])
            .args(["-v", &format!("{}:/user-data.sh:ro", path.display())])
            .args([
                "-v",
                &format!("{}:/usr/local/bin/docker:ro", docker.display()),
            ])
            .args(["-v", "/var/run/docker.sock:/var/run/docker.sock"])
            .args(extra)
            .args([
                BASE_IMAGE,
                "bash",
                "-c",
                "bash /user-data.sh >/boot.log 2>&1; echo $? >/exit-code; sleep infinity",
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Self { name }
    }

    pub fn exec(&self, command: &str) -> String {
        let output = Command::new("docker")
            .args(["exec", &self.name, "sh", "-c", command])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits for user-data to end; its exit code and log.
    pub fn finish(&self) -> (i32, String) {
        let done = wait_until(Duration::from_secs(120), || {
            !self.exec("cat /exit-code 2>/dev/null").is_empty()
        });
        let log = self.exec("cat /boot.log");
        assert!(
            done.is_some(),
            "user-data did not finish in 2 minutes:\n{log}"
        );
        (self.exec("cat /exit-code").trim().parse().unwrap(), log)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.name])
            .output();
    }
}

fn which(program: &str) -> PathBuf {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}
