//! The end-to-end tests of skiff, one binary (the Session Manager tunnel's fault tests are a binary of their own,
//! `ssm_tunnel`, so their timed transfers never share the machine with this one's tests):
//!
//! - `local`: `skiff up`, `exec`, `ssh`, `stop`, `delete` on the real Docker engine through the local provider.
//! - `mtls`: the agent accepts only the workspace's client certificate, and binds only loopback.
//! - `interrupted`: the agent killed at each step of `up`, and two `up`s at once: the next `up` converges on one
//!   container.
//! - `idle`: idle auto-shutdown with a short timeout, each activity source alone.
//! - `poweroff`: the AWS idle path, skiffd in a container standing in for the instance.
//! - `upload`: workspace files arrive through `Upload`, and a hostile archive cannot escape.
//! - `files`: packing as git sees a folder, four connections landing the same tree as one, a part that never comes,
//!   `sync`, cloning a `file://` URL, the git state `delete` checks, and `skiff up GIT_URL` end to end.
//! - `docker_restart`: the Docker daemon restarted (a private one) during `exec` and `up`: clear errors, then the next
//!   command converges; status and the idle countdown after a restart.
//! - `exec`: signal deaths, signals, 100 MiB through stdin, 50 at once, terminal resizes.
//! - `forward`: HTTP through a forward, 100 connections at once, half-close, a busy port.
//! - `sshd`: the agent's SSH server through `skiff proxy` with the real OpenSSH client: commands, scp, `ssh -L`,
//!   a terminal's size, wrong and enrolled keys, the ssh-config block, `skiff code`, typing versus keep-alives.
//! - `ssh_agent`: the laptop's ssh-agent forwarded by `exec -A` and OpenSSH's `ForwardAgent`: keys listed, a commit
//!   SSH-signed, nothing without `-A`, and another user in the container refused.
//! - `start_on_connect`: `exec`, `skiff ssh`, OpenSSH through `skiff proxy`, `forward` and `logs -f` start a stopped
//!   workspace once however many connect at once; `--no-start` and `auto-start=off` leave it stopped.
//! - `architecture`: the invariants of ARCHITECTURE.md, checked against the source.
//! - `laptop`: values from images and repositories are data on the laptop: a label-injected `remoteUser` never
//!   reaches ssh's configuration, an untrusted repository runs nothing here until trusted.
//! - `living`: the laptop's git identity in the dev container, kept where the container has its own, and data;
//!   dotfiles installed once per container, linked without an install script, a bad URL a warning.
//! - `states`: every command on a workspace stopped, idle-stopped or with its agent killed works or says what to do,
//!   and `delete` removes everything in each.
//! - `bad_input`: broken configurations, unknown workspaces and an unreachable Docker give clear errors.
//! - `conformance`: a table of rows, each its own test: the reference CLI's Dev Container fixtures end to end, the
//!   lifecycle order oracle, bad devcontainer.json input; then Features from a registry and a tarball URL, `waitFor`.
//! - `aws_e2e`: the whole system: `skiff up --provider aws` against moto and the gateway, the instance a container
//!   running the user-data, then exec, ssh, forward, sync, status and delete through the warm tunnel.
//! - `aws`: the AWS provider against a moto server: the up/stop/up/delete cycle read back, client tokens, an
//!   interrupted up, enroll, 300 workspaces, bad input, the user-data run in a Debian container, and the attacks on
//!   ownership: another's pre-created instance, enrolling into a colleague's workspace, `up` without `aws-setup`.
//! - `ui`: `skiff ui` in a real headless Chromium (list, countdown, stop, keep-alive, logs, delete) and the requests it
//!   refuses: no token, another site's origin, another host name.
//! - `aws_policy`: the developer's and operator's IAM policies decided by an evaluator that honours conditions, under
//!   moto's IAM enforcement, and checked by cloudsplaining and parliament.

mod architecture;
mod aws;
mod aws_e2e;
mod aws_policy;
mod bad_input;
mod conformance;
mod docker_restart;
mod exec;
mod files;
mod forward;
mod idle;
mod interrupted;
mod laptop;
mod living;
mod local;
mod mtls;
mod poweroff;
mod ssh_agent;
mod sshd;
mod start_on_connect;
mod states;
mod ui;
mod upload;
