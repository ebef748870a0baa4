# shellcheck shell=bash
# The host virtual environment (.venv) for the aggregator side: Python >= 3.12, the project
# installed editable (jeisson and jeisson-aggregator) with the dev tools. Sourced by scripts/test, demo, bench.
#
#   venv_ensure [dev|run]   create .venv if missing and (re)install when a pyproject or requirements/dev.txt changed
#
# Python: JEISSON_PYTHON if set, else pyenv's 3.12 (this machine kind ships it), else python3.12 /
# python3.13 / python3 from PATH when it is >= 3.12.

_venv_python() {
    local candidate
    for candidate in "${JEISSON_PYTHON:-}" /root/.pyenv/versions/3.12.*/bin/python3.12 \
        python3.12 python3.13 python3.14 python3; do
        [[ -n "$candidate" ]] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: no Python >= 3.12 found; set JEISSON_PYTHON" >&2
    return 1
}

venv_ensure() {
    # The two distributions of this repository, editable: jeisson (the home-side library, `.`)
    # and jeisson-aggregator (`./aggregator`); "dev" adds requirements/dev.txt. An install for
    # "dev" also serves "run" (scripts/demo), so the two never take turns reinstalling.
    local what="${1:-dev}" top stamp project have python
    top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    stamp="$top/.venv/.jeisson-install"
    project="$(cat "$top/pyproject.toml" "$top/aggregator/pyproject.toml" "$top/requirements/dev.txt" |
        sha256sum | cut -d' ' -f1)"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [[ "$have" == "$project dev" || "$have" == "$project $what" ]]; then
        return 0
    fi
    if [[ ! -x "$top/.venv/bin/python" ]]; then
        python="$(_venv_python)" || return 1
        echo "venv: creating .venv with $python" >&2
        "$python" -m venv "$top/.venv"
    fi
    local args=(-e "$top" -e "$top/aggregator")
    [[ "$what" == dev ]] && args+=(-r "$top/requirements/dev.txt")
    echo "venv: installing jeisson and jeisson-aggregator (editable, $what)" >&2
    "$top/.venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$top/.venv/bin/python" -m pip install --quiet "${args[@]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
    "$top/.venv/bin/python" -c 'import jeisson, aggregator, sqlalchemy, numpy' || return 1
    echo "$project $what" >"$stamp"
}
