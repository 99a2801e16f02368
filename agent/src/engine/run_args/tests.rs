//! Tests of `runArgs` and `build.options` parsing.

use super::*;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

#[test]
fn common_run_flags_are_applied() {
    let parsed = parse_run_args(&args(&[
        "-e",
        "TEST_CE=TEST_VALUE3",
        "--env=B=2",
        "--cap-add=SYS_PTRACE",
        "--security-opt",
        "seccomp=unconfined",
        "--network=host",
        "--add-host",
        "db:10.0.0.1",
        "--device=/dev/fuse",
        "--gpus",
        "all",
        "--shm-size=1g",
        "--ipc=host",
        "--platform",
        "linux/amd64",
        "--name",
        "box",
        "-v",
        "cache:/cache",
        "-v",
        "/host:/in:ro",
        "--mount",
        "type=volume,target=/anon",
        "--userns=host",
        "--hostname",
        "dev",
        "--init",
        "--privileged",
        "-u",
        "node",
        "-p",
        "127.0.0.1:8080:80",
        "--ulimit",
        "nofile=1024:2048",
    ]))
    .unwrap();
    assert_eq!(parsed.env, ["TEST_CE=TEST_VALUE3", "B=2"]);
    assert_eq!(parsed.cap_add, ["SYS_PTRACE"]);
    assert_eq!(parsed.security_opt, ["seccomp=unconfined"]);
    assert_eq!(parsed.host.network_mode.as_deref(), Some("host"));
    assert_eq!(parsed.host.extra_hosts, ["db:10.0.0.1"]);
    assert_eq!(parsed.host.devices, ["/dev/fuse"]);
    assert_eq!(parsed.host.gpus.as_deref(), Some("all"));
    assert_eq!(parsed.host.shm_size, Some(1 << 30));
    assert_eq!(parsed.host.ipc_mode.as_deref(), Some("host"));
    assert_eq!(parsed.host.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(parsed.name.as_deref(), Some("box"));
    assert_eq!(
        parsed.mounts,
        [
            Mount::Volume {
                source: Some("cache".into()),
                target: "/cache".into()
            },
            Mount::Bind {
                source: "/host".into(),
                target: "/in".into(),
                read_only: true
            },
            Mount::Volume {
                source: None,
                target: "/anon".into()
            },
        ]
    );
    assert_eq!(parsed.host.userns_mode.as_deref(), Some("host"));
    assert_eq!(parsed.host.hostname.as_deref(), Some("dev"));
    assert!(parsed.init && parsed.privileged);
    assert_eq!(parsed.user.as_deref(), Some("node"));
    assert_eq!(
        parsed.published_ports,
        [("80/tcp".into(), "127.0.0.1".into(), "8080".into())]
    );
    assert_eq!(parsed.host.ulimits, [("nofile".into(), 1024, 2048)]);
}

#[test]
fn attached_short_values_work() {
    let parsed = parse_run_args(&args(&["-eA=1", "-p3000:3000"])).unwrap();
    assert_eq!(parsed.env, ["A=1"]);
    assert_eq!(parsed.published_ports[0].0, "3000/tcp");
}

#[test]
fn unsupported_flag_is_named() {
    let error = parse_run_args(&args(&["--cgroup-parent=/x"])).unwrap_err();
    assert_eq!(error.flag, "--cgroup-parent");
    assert_eq!(
        error.to_string(),
        "--cgroup-parent: is not supported by skiff"
    );
    let error = parse_run_args(&args(&["--storage-opt", "size=1G"])).unwrap_err();
    assert_eq!(error.flag, "--storage-opt");
    let error = parse_run_args(&args(&["ubuntu"])).unwrap_err();
    assert!(error.message.contains("not a flag"), "{error}");
    let error = parse_run_args(&args(&["-e"])).unwrap_err();
    assert_eq!(error.to_string(), "-e: needs a value");
    let error = parse_run_args(&args(&["--rm"])).unwrap_err();
    assert!(
        error.message.contains("delete the dev container"),
        "{error}"
    );
}

#[test]
fn build_options() {
    let parsed = parse_build_options(&args(&[
        "--platform",
        "linux/amd64",
        "--label=a=b",
        "--add-host=h:1.2.3.4",
        "--no-cache",
        "--build-arg",
        "X=1",
    ]))
    .unwrap();
    assert_eq!(parsed.extras.platform.as_deref(), Some("linux/amd64"));
    assert_eq!(parsed.labels, [("a".into(), "b".into())]);
    assert_eq!(parsed.extras.extra_hosts, ["h:1.2.3.4"]);
    assert!(parsed.no_cache);
    assert_eq!(parsed.args, [("X".into(), "1".into())]);
    let error = parse_build_options(&args(&["--secret", "id=x"])).unwrap_err();
    assert_eq!(error.flag, "--secret");
}

#[test]
fn sizes() {
    assert_eq!(parse_bytes("512m"), Ok(512 << 20));
    assert_eq!(parse_bytes("2gb"), Ok(2 << 30));
    assert_eq!(parse_bytes("1024"), Ok(1024));
    assert!(parse_bytes("lots").is_err());
}
