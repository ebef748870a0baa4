# shellcheck shell=bash
# Local servers the tests need. This machine kind starts them at boot; start any that stopped.
#
#   services_ensure   make sure PostgreSQL answers on 127.0.0.1:5432 (fails loudly otherwise)

_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

services_ensure() {
    if ! _port_open 5432; then
        echo "services: starting PostgreSQL" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
        for _ in $(seq 1 30); do _port_open 5432 && break; sleep 1; done
    fi
    _port_open 5432 || { echo "error: PostgreSQL is not answering on 127.0.0.1:5432" >&2; return 1; }
}
