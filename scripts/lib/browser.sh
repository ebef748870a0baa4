# shellcheck shell=bash
# What the browser tests (tests/browser) need on a fresh machine of this kind: Debian's Chromium
# and the Python `playwright` package (requirements/dev.txt, in .venv). Playwright's
# own browser download is not used (it cannot reach its servers here): the tests launch
# /usr/bin/chromium. Sourced by scripts/test after venv.sh.
#
#   browser_ensure   install chromium with apt when missing, and playwright in .venv when missing

BROWSER_CHROMIUM=/usr/bin/chromium

browser_ensure() {
    local top
    top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [[ ! -x "$BROWSER_CHROMIUM" ]]; then
        echo "browser: installing Debian's chromium" >&2
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; then
            apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 || return 1
        fi
    fi
    "$BROWSER_CHROMIUM" --version >/dev/null 2>&1 \
        || { echo "error: $BROWSER_CHROMIUM does not run" >&2; return 1; }
    if ! "$top/.venv/bin/python" -c 'import playwright.async_api' 2>/dev/null; then
        echo "browser: installing the dev requirements (playwright) into .venv" >&2
        "$top/.venv/bin/python" -m pip install --quiet -r "$top/requirements/dev.txt" 2>&1 \
            | grep -v '^WARNING: Location' >&2 || true
        "$top/.venv/bin/python" -c 'import playwright.async_api' || return 1
    fi
}
