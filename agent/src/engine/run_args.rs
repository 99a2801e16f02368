//! `runArgs` and `build.options`: the raw `docker run` and `docker build` flags a devcontainer.json may carry, parsed into
//! the container and build options the engine gives Docker.
//!
//! The reference CLI appends `runArgs` to its own `docker run` command line, so anything the Docker CLI takes works there.
//! Without a Docker CLI we parse the common flags (NOTES §1a) and refuse any other flag with an error that names it,
//! rather than dropping it silently.

use crate::docker::{BuildExtras, HostExtras, Mount};

/// What `runArgs` asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunArgs {
    /// `-e`/`--env`, `KEY=VALUE` (a bare `KEY` takes the agent's own value, as `docker run` does).
    pub env: Vec<String>,
    /// `--env-file` paths, as written (relative ones are relative to the workspace folder).
    pub env_files: Vec<String>,
    /// `-l`/`--label`.
    pub labels: Vec<(String, String)>,
    /// `-v`/`--volume` and `--mount`.
    pub mounts: Vec<Mount>,
    /// `-p`/`--publish`: container port (`8080/tcp`), host address, host port.
    pub published_ports: Vec<(String, String, String)>,
    /// `-u`/`--user`.
    pub user: Option<String>,
    /// `--name`.
    pub name: Option<String>,
    /// `--cap-add`.
    pub cap_add: Vec<String>,
    /// `--security-opt`.
    pub security_opt: Vec<String>,
    /// `--init`.
    pub init: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `--entrypoint`.
    pub entrypoint: Option<String>,
    /// Everything that goes to the host configuration.
    pub host: HostExtras,
}

/// A `runArgs` or `build.options` entry the agent cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag}: {message}")]
pub struct FlagError {
    /// The flag as written.
    pub flag: String,
    pub message: String,
}

fn error(flag: &str, message: impl Into<String>) -> FlagError {
    FlagError {
        flag: flag.to_owned(),
        message: message.into(),
    }
}

/// Flags of `docker run` that take no value.
const RUN_SWITCHES: &[&str] = &[
    "--init",
    "--privileged",
    "--rm",
    "-d",
    "--detach",
    "-i",
    "--interactive",
    "-t",
    "--tty",
    "-it",
    "-ti",
    "--read-only",
    "--sig-proxy",
];

/// Flags of `docker run` that take a value, and that this agent applies.
const RUN_VALUED: &[&str] = &[
    "-e",
    "--env",
    "--env-file",
    "-l",
    "--label",
    "-v",
    "--volume",
    "--mount",
    "-p",
    "--publish",
    "-u",
    "--user",
    "--name",
    "--cap-add",
    "--cap-drop",
    "--security-opt",
    "--network",
    "--net",
    "--add-host",
    "--device",
    "--gpus",
    "--shm-size",
    "--ipc",
    "--pid",
    "--uts",
    "--userns",
    "-h",
    "--hostname",
    "--platform",
    "-m",
    "--memory",
    "--cpus",
    "--dns",
    "--tmpfs",
    "--ulimit",
    "--sysctl",
    "--group-add",
    "-w",
    "--workdir",
    "--entrypoint",
];

/// Splits `runArgs` into (flag, value) pairs: `--flag=value`, `--flag value`, `-e VALUE`, `-eVALUE`.
fn flags<'a>(
    args: &'a [String],
    switches: &[&str],
    valued: &[&str],
) -> Result<Vec<(&'a str, Option<String>)>, FlagError> {
    let mut pairs = Vec::new();
    let mut index = 0;
    while index < args.len() {
        let arg = args[index].as_str();
        index += 1;
        if !arg.starts_with('-') || arg == "-" {
            return Err(error(
                arg,
                "is not a flag; runArgs may only hold `docker run` flags (the image and command come from the config)",
            ));
        }
        if let Some((flag, value)) = arg.split_once('=')
            && flag.starts_with("--")
        {
            if switches.contains(&flag) {
                // `--init=true` style booleans.
                pairs.push((flag, Some(value.to_owned())));
                continue;
            }
            if valued.contains(&flag) {
                pairs.push((flag, Some(value.to_owned())));
                continue;
            }
            return Err(error(flag, "is not supported by skiff"));
        }
        if switches.contains(&arg) {
            pairs.push((arg, None));
            continue;
        }
        if valued.contains(&arg) {
            let value = args.get(index).ok_or_else(|| error(arg, "needs a value"))?;
            index += 1;
            pairs.push((arg, Some(value.clone())));
            continue;
        }
        // Short flags with the value attached (`-eKEY=VALUE`, `-p8080:80`).
        if !arg.starts_with("--") && arg.len() > 2 {
            let short = &arg[..2];
            if valued.contains(&short) {
                pairs.push((short, Some(arg[2..].to_owned())));
                continue;
            }
        }
        return Err(error(arg, "is not supported by skiff"));
    }
    Ok(pairs)
}

/// Parses `runArgs`.
pub fn parse_run_args(args: &[String]) -> Result<RunArgs, FlagError> {
    let mut parsed = RunArgs::default();
    for (flag, value) in flags(args, RUN_SWITCHES, RUN_VALUED)? {
        let switch_on = || {
            value
                .as_deref()
                .is_none_or(|value| value.is_empty() || value == "true" || value == "1")
        };
        let value_text = value.clone().unwrap_or_default();
        match flag {
            "--init" => parsed.init = switch_on(),
            "--privileged" => parsed.privileged = switch_on(),
            "--read-only" => parsed.host.read_only = switch_on(),
            // The agent runs the container detached and talks to it through exec, so these change nothing.
            "--rm" | "-d" | "--detach" | "-i" | "--interactive" | "-t" | "--tty" | "-it"
            | "-ti" | "--sig-proxy" => {
                if flag == "--rm" && switch_on() {
                    return Err(error(
                        flag,
                        "would delete the dev container when it stops, losing its state; remove it from runArgs",
                    ));
                }
            }
            "-e" | "--env" => {
                if value_text.contains('=') {
                    parsed.env.push(value_text);
                } else if let Ok(own) = std::env::var(&value_text) {
                    parsed.env.push(format!("{value_text}={own}"));
                }
            }
            "--env-file" => parsed.env_files.push(value_text),
            "-l" | "--label" => {
                let (key, label) = value_text
                    .split_once('=')
                    .unwrap_or((value_text.as_str(), ""));
                parsed.labels.push((key.to_owned(), label.to_owned()));
            }
            "-v" | "--volume" => parsed
                .mounts
                .push(parse_volume(&value_text).map_err(|message| error(flag, message))?),
            "--mount" => parsed
                .mounts
                .push(super::parse_mount(&value_text).map_err(|message| error(flag, message))?),
            "-p" | "--publish" => parsed
                .published_ports
                .push(parse_publish(&value_text).map_err(|message| error(flag, message))?),
            "-u" | "--user" => parsed.user = Some(value_text),
            "--name" => parsed.name = Some(value_text),
            "--cap-add" => parsed.cap_add.push(value_text),
            "--cap-drop" => parsed.host.cap_drop.push(value_text),
            "--security-opt" => parsed.security_opt.push(value_text),
            "--network" | "--net" => parsed.host.network_mode = Some(value_text),
            "--add-host" => parsed
                .host
                .extra_hosts
                .push(value_text.replacen('=', ":", 1)),
            "--device" => parsed.host.devices.push(value_text),
            "--gpus" => parsed.host.gpus = Some(value_text),
            "--shm-size" => {
                parsed.host.shm_size =
                    Some(parse_bytes(&value_text).map_err(|message| error(flag, message))?);
            }
            "-m" | "--memory" => {
                parsed.host.memory =
                    Some(parse_bytes(&value_text).map_err(|message| error(flag, message))?);
            }
            "--cpus" => {
                let cpus: f64 = value_text
                    .parse()
                    .map_err(|_| error(flag, format!("{value_text:?} is not a number of CPUs")))?;
                #[expect(
                    clippy::cast_possible_truncation,
                    reason = "a CPU count times 1e9 fits i64"
                )]
                let nano = (cpus * 1e9) as i64;
                parsed.host.nano_cpus = Some(nano);
            }
            "--ipc" => parsed.host.ipc_mode = Some(value_text),
            "--pid" => parsed.host.pid_mode = Some(value_text),
            "--uts" => parsed.host.uts_mode = Some(value_text),
            "--userns" => parsed.host.userns_mode = Some(value_text),
            "-h" | "--hostname" => parsed.host.hostname = Some(value_text),
            "--platform" => parsed.host.platform = Some(value_text),
            "--dns" => parsed.host.dns.push(value_text),
            "--tmpfs" => {
                let (path, options) = value_text
                    .split_once(':')
                    .unwrap_or((value_text.as_str(), ""));
                parsed
                    .host
                    .tmpfs
                    .push((path.to_owned(), options.to_owned()));
            }
            "--ulimit" => {
                let (name, limits) = value_text.split_once('=').ok_or_else(|| {
                    error(flag, format!("{value_text:?} is not NAME=SOFT[:HARD]"))
                })?;
                let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
                let number = |text: &str| {
                    text.parse::<i64>()
                        .map_err(|_| error(flag, format!("{value_text:?} is not NAME=SOFT[:HARD]")))
                };
                parsed
                    .host
                    .ulimits
                    .push((name.to_owned(), number(soft)?, number(hard)?));
            }
            "--sysctl" => {
                let (key, setting) = value_text
                    .split_once('=')
                    .ok_or_else(|| error(flag, format!("{value_text:?} is not KEY=VALUE")))?;
                parsed
                    .host
                    .sysctls
                    .push((key.to_owned(), setting.to_owned()));
            }
            "--group-add" => parsed.host.group_add.push(value_text),
            "-w" | "--workdir" => parsed.host.working_dir = Some(value_text),
            "--entrypoint" => parsed.entrypoint = Some(value_text),
            other => return Err(error(other, "is not supported by skiff")),
        }
    }
    Ok(parsed)
}

/// Parses `build.options`; the flags `docker build` takes that the Engine API's classic builder can honour.
pub fn parse_build_options(options: &[String]) -> Result<BuildOptions, FlagError> {
    let mut parsed = BuildOptions::default();
    let switches = [
        "--no-cache",
        "--pull",
        "-q",
        "--quiet",
        "--rm",
        "--force-rm",
        "--load",
    ];
    let valued = [
        "--platform",
        "--add-host",
        "--network",
        "--label",
        "--build-arg",
        "--target",
        "--cache-from",
        "--progress",
    ];
    for (flag, value) in flags(options, &switches, &valued)? {
        let value_text = value.clone().unwrap_or_default();
        match flag {
            "--no-cache" => parsed.no_cache = true,
            // Pulling is impossible without a registry and the rest only shape the CLI's output.
            "--pull" | "-q" | "--quiet" | "--rm" | "--force-rm" | "--load" | "--progress" => {}
            "--platform" => parsed.extras.platform = Some(value_text),
            "--add-host" => parsed
                .extras
                .extra_hosts
                .push(value_text.replacen('=', ":", 1)),
            "--network" => parsed.extras.network_mode = Some(value_text),
            "--label" => {
                let (key, label) = value_text
                    .split_once('=')
                    .unwrap_or((value_text.as_str(), ""));
                parsed.labels.push((key.to_owned(), label.to_owned()));
            }
            "--build-arg" => {
                let (key, arg) = value_text
                    .split_once('=')
                    .unwrap_or((value_text.as_str(), ""));
                parsed.args.push((key.to_owned(), arg.to_owned()));
            }
            "--target" => parsed.target = Some(value_text),
            "--cache-from" => parsed.cache_from.push(value_text),
            other => return Err(error(other, "is not supported by skiff")),
        }
    }
    Ok(parsed)
}

/// What `build.options` asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    pub extras: BuildExtras,
    pub labels: Vec<(String, String)>,
    pub args: Vec<(String, String)>,
    pub target: Option<String>,
    pub cache_from: Vec<String>,
    pub no_cache: bool,
}

/// `-v SOURCE:TARGET[:OPTIONS]` or `-v TARGET` (an anonymous volume).
fn parse_volume(text: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, ""),
        [source, target] => (Some(*source), *target, ""),
        [source, target, options] => (Some(*source), *target, *options),
        _ => return Err(format!("{text:?} is not SOURCE:TARGET[:OPTIONS]")),
    };
    if target.is_empty() {
        return Err(format!("{text:?} has no target"));
    }
    let read_only = options.split(',').any(|option| option == "ro");
    Ok(match source {
        Some(source) if source.starts_with('/') || source.starts_with('.') => Mount::Bind {
            source: source.to_owned(),
            target: target.to_owned(),
            read_only,
        },
        Some(source) => Mount::Volume {
            source: Some(source.to_owned()),
            target: target.to_owned(),
        },
        None => Mount::Volume {
            source: None,
            target: target.to_owned(),
        },
    })
}

/// `-p [IP:][HOST:]CONTAINER[/PROTOCOL]`.
fn parse_publish(text: &str) -> Result<(String, String, String), String> {
    let (address, protocol) = text.rsplit_once('/').unwrap_or((text, "tcp"));
    let parts: Vec<&str> = address.split(':').collect();
    let (ip, host, container) = match parts.as_slice() {
        [container] => ("", "", *container),
        [host, container] => ("", *host, *container),
        [ip, host, container] => (*ip, *host, *container),
        _ => return Err(format!("{text:?} is not [IP:][HOST:]CONTAINER[/PROTOCOL]")),
    };
    if container.is_empty()
        || !container
            .bytes()
            .all(|byte| byte.is_ascii_digit() || byte == b'-')
    {
        return Err(format!("{text:?} has no container port"));
    }
    Ok((
        format!("{container}/{protocol}"),
        ip.to_owned(),
        host.to_owned(),
    ))
}

/// `512m`, `2g`, `1024` (bytes) as `docker run` takes sizes.
fn parse_bytes(text: &str) -> Result<i64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (number, unit) = match lower
        .char_indices()
        .find(|(_, character)| character.is_alphabetic())
    {
        Some((index, _)) => lower.split_at(index),
        None => (lower, ""),
    };
    let multiplier: i64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(format!("{text:?} is not a size such as 512m or 2g")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 512m or 2g"))?;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        reason = "sizes are far below 2^53 bytes"
    )]
    Ok((value * multiplier as f64) as i64)
}

#[cfg(test)]
mod tests;
