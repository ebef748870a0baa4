# shellcheck shell=bash
# What the reverse-proxy tests (tests/aggregator/test_reverse_proxy.py) need on a fresh machine of
# this kind: Debian's nginx and caddy, which run the configurations in docs/deploy/ in front of
# the real aggregator. Sourced by scripts/test. The tests start their own instances on free
# ports; the packages' system services are not used (Debian's policy-rc.d on these machines
# keeps apt from starting them; if one was started, it is stopped again).
#
#   proxy_ensure   install nginx and caddy with apt when missing

proxy_ensure() {
    local program missing=()
    for program in nginx caddy; do
        command -v "$program" >/dev/null 2>&1 || missing+=("$program")
    done
    ((${#missing[@]})) || return 0
    echo "proxy: installing Debian's ${missing[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; then
        apt-get update -q >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 || return 1
    fi
    for program in "${missing[@]}"; do
        if [[ -x "/etc/init.d/$program" ]]; then
            "/etc/init.d/$program" stop >/dev/null 2>&1 || true
        fi
    done
}
