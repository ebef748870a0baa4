# shellcheck shell=bash
# The host virtual environment (.venv) for the aggregator side: Python >= 3.12, the project
# installed editable with its aggregator and test extras. Sourced by scripts/test and scripts/demo.
#
#   venv_ensure [EXTRAS]   create .venv if missing and (re)install when pyproject.toml changed
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
    local extras="${1:-aggregator,test}" top stamp want python
    top="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    stamp="$top/.venv/.jeisson-install.sha256"
    want="$(cat "$top/pyproject.toml" <(echo "$extras") | sha256sum | cut -d' ' -f1)"
    if [[ ! -x "$top/.venv/bin/python" ]]; then
        python="$(_venv_python)" || return 1
        echo "venv: creating .venv with $python" >&2
        "$python" -m venv "$top/.venv"
    fi
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "venv: installing jeisson[$extras] (editable)" >&2
        "$top/.venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v '^WARNING: Location' >&2 || true
        "$top/.venv/bin/python" -m pip install --quiet -e "$top[$extras]" 2>&1 | grep -v '^WARNING: Location' >&2 || true
        "$top/.venv/bin/python" -c 'import aggregator, sqlalchemy, numpy, pytest' || return 1
        echo "$want" >"$stamp"
    fi
}
