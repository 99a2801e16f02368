#!/bin/bash
# skiff user-data: prepares this EC2 instance for one skiff workspace and starts its agent, skiffd.
# The skiff client wrote it for this instance. It carries no secret: the client certificate is public.
# Progress goes to the serial console, which `skiff logs NAME --boot` shows.
set -euo pipefail

# The values below are filled in by the client (see client/src/provider/aws/user_data.rs).
SKIFF_WORKSPACE='@WORKSPACE@'
SKIFF_IDLE_TIMEOUT='@IDLE_TIMEOUT@'
SKIFF_AGENT_LISTEN='@AGENT_LISTEN@'
SKIFF_AGENT_URL='@AGENT_URL@'
SKIFF_AGENT_SHA256='@AGENT_SHA256@'
SKIFF_RECEIVER_PORT='@RECEIVER_PORT@'
SKIFF_RECEIVER_TIMEOUT='@RECEIVER_TIMEOUT@'
SKIFF_CLIENT_CERTIFICATE='@CLIENT_CERTIFICATE@'
# The account's ECR registry of this region with `up --ecr` (its logins come from the instance role), else empty.
SKIFF_ECR_REGISTRY='@ECR_REGISTRY@'

SKIFFD=/usr/local/bin/skiffd
CONFIG_DIR=/etc/skiffd
STATE_DIR=/var/lib/skiffd
AGENT_LOG=/var/log/skiffd.log

# Every progress line goes to standard output (cloud-init's log) and to the serial console.
report() {
    local line="skiff-boot: $*"
    local console
    printf '%s\n' "$line"
    for console in /dev/console /dev/ttyS0; do
        if [ -c "$console" ] && [ -w "$console" ]; then
            printf '%s\n' "$line" >"$console" 2>/dev/null || true
            break
        fi
    done
}

fail() {
    report "FAILED: $*"
    exit 1
}

trap 'report "FAILED: the command on line $LINENO exited with $?"' ERR

has_systemd() {
    [ -d /run/systemd/system ]
}

install_docker() {
    if command -v docker >/dev/null 2>&1; then
        report "docker is installed"
    else
        report "installing docker and the compose plugin"
        if ! command -v apt-get >/dev/null 2>&1; then
            fail "docker is missing and this image has no apt-get; use an AMI that has Docker (--ami)"
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q ||
            fail "apt-get update failed: the subnet may have no internet route; use an AMI that has Docker (--ami)"
        apt-get install -y -q docker.io ||
            fail "installing docker.io failed; use an AMI that has Docker (--ami)"
        apt-get install -y -q docker-compose-v2 || apt-get install -y -q docker-compose-plugin ||
            report "no compose plugin package; configurations that use Docker Compose will not start"
    fi
    if has_systemd; then
        systemctl enable --now docker.service >/dev/null 2>&1 || report "could not enable docker.service"
    fi
}

ensure_ssm_agent() {
    local unit
    if has_systemd; then
        for unit in snap.amazon-ssm-agent.amazon-ssm-agent.service amazon-ssm-agent.service; do
            if systemctl cat "$unit" >/dev/null 2>&1 && systemctl enable --now "$unit" >/dev/null 2>&1; then
                report "the SSM agent runs ($unit)"
                return 0
            fi
        done
        if command -v snap >/dev/null 2>&1 && snap install amazon-ssm-agent --classic >/dev/null 2>&1; then
            systemctl enable --now snap.amazon-ssm-agent.amazon-ssm-agent.service >/dev/null 2>&1 || true
            report "installed the SSM agent from its snap"
            return 0
        fi
    fi
    if pgrep -x amazon-ssm-agent >/dev/null 2>&1; then
        report "the SSM agent runs"
        return 0
    fi
    report "WARNING: no SSM agent runs here; skiff reaches the instance only through Session Manager, so use an AMI with the SSM agent"
}

sha256_of() {
    sha256sum "$1" | cut -d ' ' -f 1
}

# Refuses (and removes) a skiffd whose SHA-256 is not the one the client put in this script.
check_agent() {
    local file=$1 from=$2 actual
    actual=$(sha256_of "$file")
    if [ "$actual" != "$SKIFF_AGENT_SHA256" ]; then
        rm -f "$file"
        fail "skiffd from $from has SHA-256 $actual, but the client expects $SKIFF_AGENT_SHA256; refusing to install it"
    fi
    report "skiffd from $from matches SHA-256 $SKIFF_AGENT_SHA256"
}

download_agent() {
    local target=$1
    report "downloading skiffd from $SKIFF_AGENT_URL"
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 5 --retry-delay 2 --connect-timeout 10 -o "$target" "$SKIFF_AGENT_URL" ||
            fail "downloading skiffd from $SKIFF_AGENT_URL failed; check that the subnet can reach it, or let the client push skiffd (leave out --agent-url)"
    elif command -v wget >/dev/null 2>&1; then
        wget -q -t 5 -T 10 -O "$target" "$SKIFF_AGENT_URL" ||
            fail "downloading skiffd from $SKIFF_AGENT_URL failed; check that the subnet can reach it, or let the client push skiffd (leave out --agent-url)"
    else
        fail "neither curl nor wget is installed to download skiffd; let the client push it (leave out --agent-url)"
    fi
}

# A one-shot receiver on 127.0.0.1 only: the client pushes skiffd through a Session Manager port forward,
# one connection carrying the whole file, and the SHA-256 check follows. perl is in every Debian and Ubuntu.
receive_agent() {
    local target=$1
    report "waiting up to ${SKIFF_RECEIVER_TIMEOUT}s for the client to push skiffd to 127.0.0.1:$SKIFF_RECEIVER_PORT"
    # shellcheck disable=SC2016 # the program is perl, with perl's own variables
    perl -MIO::Socket::INET -e '
        my ($port, $timeout, $target) = @ARGV;
        my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $port,
            Listen => 1, ReuseAddr => 1) or die "listening on 127.0.0.1:$port: $!\n";
        local $SIG{ALRM} = sub { die "nothing was pushed within $timeout seconds\n" };
        alarm $timeout;
        my $client = $server->accept or die "accepting on 127.0.0.1:$port: $!\n";
        close $server;
        open(my $out, ">", $target) or die "writing $target: $!\n";
        binmode $out;
        binmode $client;
        my ($buffer, $read);
        while ($read = sysread($client, $buffer, 65536)) {
            print {$out} $buffer or die "writing $target: $!\n";
        }
        die "reading the push: $!\n" unless defined $read;
        close $out or die "writing $target: $!\n";
        alarm 0;
    ' "$SKIFF_RECEIVER_PORT" "$SKIFF_RECEIVER_TIMEOUT" "$target" ||
        fail "receiving skiffd on 127.0.0.1:$SKIFF_RECEIVER_PORT failed"
}

install_agent() {
    local download="$STATE_DIR/skiffd.download" from
    install -d -m 0700 "$STATE_DIR"
    if [ -x "$SKIFFD" ] && [ "$(sha256_of "$SKIFFD")" = "$SKIFF_AGENT_SHA256" ]; then
        report "skiffd $SKIFF_AGENT_SHA256 is already installed"
        return 0
    fi
    if [ -n "$SKIFF_AGENT_URL" ]; then
        download_agent "$download"
        from=$SKIFF_AGENT_URL
    else
        receive_agent "$download"
        from="the client's push"
    fi
    check_agent "$download" "$from"
    install -m 0755 "$download" "$SKIFFD"
    rm -f "$download"
    report "installed skiffd at $SKIFFD"
}

install_ecr_helper() {
    [ -n "$SKIFF_ECR_REGISTRY" ] || return 0
    if command -v docker-credential-ecr-login >/dev/null 2>&1; then
        report "docker-credential-ecr-login is installed"
        return 0
    fi
    report "installing Amazon's ECR credential helper, for $SKIFF_ECR_REGISTRY"
    export DEBIAN_FRONTEND=noninteractive
    if command -v apt-get >/dev/null 2>&1 &&
        { apt-get install -y -q amazon-ecr-credential-helper ||
            { apt-get update -q && apt-get install -y -q amazon-ecr-credential-helper; }; }; then
        report "installed docker-credential-ecr-login"
    else
        # Not fatal: the workspace comes up, and a pull from ECR is refused with what is missing.
        report "could not install amazon-ecr-credential-helper; images from $SKIFF_ECR_REGISTRY will be pulled without a login"
    fi
}

write_config() {
    install -d -m 0755 "$CONFIG_DIR"
    (
        umask 077
        cat >"$CONFIG_DIR/skiffd.toml.new" <<EOF
# skiffd's configuration, written by skiff's user-data for workspace $SKIFF_WORKSPACE.
workspace = "$SKIFF_WORKSPACE"
listen = "$SKIFF_AGENT_LISTEN"
idle_timeout = "$SKIFF_IDLE_TIMEOUT"
idle_action = "poweroff"
state_dir = "$STATE_DIR"
client_certificate = '''
$SKIFF_CLIENT_CERTIFICATE
'''
EOF
        if [ -n "$SKIFF_ECR_REGISTRY" ]; then
            printf '\n[registry_helpers]\n"%s" = "ecr-login"\n' "$SKIFF_ECR_REGISTRY" >>"$CONFIG_DIR/skiffd.toml.new"
        fi
    )
    mv "$CONFIG_DIR/skiffd.toml.new" "$CONFIG_DIR/skiffd.toml"
    report "wrote $CONFIG_DIR/skiffd.toml (idle timeout $SKIFF_IDLE_TIMEOUT, then power off)"
}

start_agent() {
    rm -f "$STATE_DIR/listen-address"
    if has_systemd; then
        cat >/etc/systemd/system/skiffd.service <<EOF
[Unit]
Description=skiff agent for workspace $SKIFF_WORKSPACE
Wants=network-online.target docker.service
After=network-online.target docker.service

[Service]
ExecStart=$SKIFFD --config $CONFIG_DIR/skiffd.toml
Restart=on-failure
RestartSec=2

[Install]
WantedBy=multi-user.target
EOF
        systemctl daemon-reload
        systemctl enable skiffd.service >/dev/null 2>&1
        systemctl restart skiffd.service
        report "started skiffd.service"
    else
        # No systemd (a container standing in for an instance): run it in the background, in its own session.
        setsid nohup "$SKIFFD" --config "$CONFIG_DIR/skiffd.toml" >>"$AGENT_LOG" 2>&1 </dev/null &
        report "started skiffd without systemd (log: $AGENT_LOG)"
    fi
    local waited=0
    while [ ! -s "$STATE_DIR/listen-address" ]; do
        if [ "$waited" -ge 60 ]; then
            fail "skiffd did not start listening within 60 seconds; see $AGENT_LOG or \`journalctl -u skiffd\`"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    report "skiffd listens on $(cat "$STATE_DIR/listen-address")"
}

report "preparing workspace $SKIFF_WORKSPACE ($(uname -m))"
install_docker
ensure_ssm_agent
install_agent
install_ecr_helper
write_config
start_agent
report "done: workspace $SKIFF_WORKSPACE is ready"
