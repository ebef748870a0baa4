# shellcheck shell=bash
# Local servers the tests need. This machine kind starts them at boot; start any that stopped.
#
#   services_ensure   make sure PostgreSQL answers on 127.0.0.1:5432 and NATS (JetStream on) on
#                     127.0.0.1:4222, starting them when they are not running (fails loudly otherwise)

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

_wait_port() {
    local _
    for _ in $(seq 1 30); do _port_open "$1" && return 0; sleep 1; done
    return 1
}

services_ensure() {
    if ! _port_open 5432; then
        echo "services: starting PostgreSQL" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
        _wait_port 5432 || true
    fi
    _port_open 5432 || { echo "error: PostgreSQL is not answering on 127.0.0.1:5432" >&2; return 1; }
    if ! _port_open 4222; then
        echo "services: starting NATS (JetStream on)" >&2
        if ! command -v nats-server >/dev/null 2>&1 && [[ ! -x /usr/sbin/nats-server ]]; then
            apt-get install -y -q nats-server >/dev/null 2>&1 ||
                { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q nats-server >/dev/null 2>&1; } || true
        fi
        mkdir -p /var/lib/nats-server
        start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
            -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
        _wait_port 4222 || true
    fi
    _port_open 4222 || { echo "error: NATS is not answering on 127.0.0.1:4222" >&2; return 1; }
}
