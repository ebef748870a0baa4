# shellcheck shell=bash
# Python 3.14 root for the Home Assistant side: build it, keep it current, run commands inside.
#
# Home Assistant 2026.10 needs Python >= 3.14.2 and wheels built for a newer glibc than Debian 12
# has, so the HA test stack runs in a debootstrapped Debian testing root (python3.14 from Debian's
# archive) that lives outside the checkout and is reused across runs.
#
# Source this file from bash, then call:
#   py314_root          print the root's path
#   py314_ensure        build the root if missing or half-built; recreate the venv when its
#                       requirements (JEISSON_HA below) changed, re-install the checkout
#                       (-e /src -e /src/aggregator) when only a pyproject.toml or
#                       requirements/dev.txt changed
#   py314_run CMD...    ensure, then run CMD inside the root (cwd /src = the checkout, venv on
#                       PATH); returns CMD's exit status
#   py314_exec CMD...   like py314_run but replaces the current shell (signals reach CMD directly)
#   py314_remove        delete the root (refuses while anything is mounted inside it)
#
# Environment:
#   JEISSON_PY314_ROOT          root directory (default /var/cache/jeisson/py314-root)
#   JEISSON_PY314_SUITE         Debian suite to bootstrap (default testing)
#   JEISSON_PY314_MIRROR        Debian mirror (default: the one the host's apt sources use)
#   JEISSON_PY314_LOCK_TIMEOUT  seconds to wait for the root's lock (default 3600)
#   JEISSON_CHECKOUT            checkout to mount at /src (default: the one holding this file)
#   JEISSON_HA                  Home Assistant release: 2026.10 (default; /opt/venv, HA 2026.10.4,
#                               requirements/ha-test.txt) or 2026.11 (/opt/venv-2026.11, HA
#                               2026.11.0, requirements/ha-test-2026.11*.txt); each has its own
#                               venv and stamp in the one root, and commands see JEISSON_HA too
#
# Mounts and concurrency: every command runs in its own private mount namespace (unshare
# --mount --propagation private). /proc, /sys (read-only), /dev (rbind, rslave) and the checkout
# (/src) are mounted only inside that namespace, so the host's mount table never changes and the
# kernel drops every mount when the namespace's last process ends -- on success, failure, signal
# or SIGKILL alike. Concurrent invocations therefore never share or fight over mounts. A lock
# file next to the root serialises changes to the root: builds/installs take it exclusively,
# commands hold it shared while they run, so the root is never rebuilt under a running command
# and any number of commands run side by side. (A process a command leaves running in the
# background keeps its namespace, and its share of the lock, until it exits.)

# shellcheck disable=SC2015  # `a && b || die` chains are meant: die when any step fails
# Sourcing twice is harmless.
[[ -n "${_PY314_LIB_FILE:-}" ]] && return 0

# Internal constants.
readonly _PY314_DEFAULT_ROOT=/var/cache/jeisson/py314-root
readonly _PY314_DEFAULT_SUITE=testing
readonly _PY314_DEBOOTSTRAP_SCRIPT=/usr/share/debootstrap/scripts/sid
readonly _PY314_DEFAULT_LOCK_TIMEOUT=3600
readonly _PY314_PYTHON=python3.14
readonly _PY314_APT_PACKAGES="python3.14 python3.14-venv ca-certificates git"
readonly _PY314_MOUNT_POINT=/src
readonly _PY314_COMPLETE_MARKER=.jeisson-root-complete
# The Home Assistant releases the suite runs on, one venv each in the same root (JEISSON_HA).
readonly _PY314_DEFAULT_HA=2026.10
readonly _PY314_HA_VERSIONS="2026.10 2026.11"
case "${JEISSON_HA:-$_PY314_DEFAULT_HA}" in
    2026.10)
        # pytest-homeassistant-custom-component's own pair: HA 2026.10.4, resolved as one.
        readonly _PY314_VENV=/opt/venv
        readonly _PY314_STAMP=.jeisson-requirements.sha256
        readonly _PY314_REQUIREMENTS=requirements/ha-test.txt
        readonly _PY314_NODEPS_REQUIREMENTS=""
        ;;
    2026.11)
        # HA 2026.11.0 resolved with the test plugin's other pins; the plugin (built for
        # 2026.10.4) then goes in with --no-deps. See requirements/ha-test-2026.11.txt.
        readonly _PY314_VENV=/opt/venv-2026.11
        readonly _PY314_STAMP=.jeisson-requirements-2026.11.sha256
        readonly _PY314_REQUIREMENTS=requirements/ha-test-2026.11.txt
        readonly _PY314_NODEPS_REQUIREMENTS=requirements/ha-test-2026.11-nodeps.txt
        ;;
    *)
        printf 'py314: JEISSON_HA=%s is not one of: %s\n' "$JEISSON_HA" "$_PY314_HA_VERSIONS" >&2
        return 2
        ;;
esac
readonly _PY314_PATH="${_PY314_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Inside the venv: `pip freeze` right after the HA stack went in; the project is installed
# against it, so its own dependencies can never move a package HA pins.
readonly _PY314_HA_CONSTRAINTS=$_PY314_VENV/ha-constraints.txt
# What `pip check` may report in a venv whose test plugin went in with --no-deps: exactly the
# two pins the plugin states for HA 2026.10.4 that HA 2026.11 replaces (any other line fails).
readonly _PY314_NODEPS_ACCEPTED='^pytest-homeassistant-custom-component [0-9.]+ has requirement (homeassistant==2026\.10\.4|aiohasupervisor==0\.6\.0), but you have (homeassistant 2026\.11\.0|aiohasupervisor 0\.8\.1)\.$'
# Bump when the install procedure changes, to force a venv reinstall on existing roots.
readonly _PY314_INSTALL_RECIPE=2
_PY314_LIB_FILE="$(readlink -f -- "${BASH_SOURCE[0]}")"
readonly _PY314_LIB_FILE

_py314_log() { printf 'py314 [+%ss]: %s\n' "$SECONDS" "$*" >&2; }
_py314_die() {
    _py314_log "error: $*"
    return 1
}

# The checkout: the directory that contains scripts/ (JEISSON_CHECKOUT overrides, for tests).
_py314_checkout() {
    if [[ -n "${JEISSON_CHECKOUT:-}" ]]; then
        readlink -f -- "$JEISSON_CHECKOUT"
    else
        readlink -f -- "$(dirname -- "$_PY314_LIB_FILE")/../.."
    fi
}

py314_root() {
    local root=${JEISSON_PY314_ROOT:-$_PY314_DEFAULT_ROOT}
    [[ "$root" == /* ]] || _py314_die "JEISSON_PY314_ROOT must be an absolute path: $root" || return
    readlink -m -- "$root"
}

# Refuse roots that would be dangerous to build in, mount into or delete.
_py314_check_root_path() {
    local root=$1 checkout
    checkout="$(_py314_checkout)"
    case "$root" in
        / | /bin | /boot | /dev | /etc | /home | /lib* | /opt | /proc | /root | /run | /sbin | /srv \
            | /sys | /tmp | /usr | /usr/* | /var | /var/cache | /var/lib | /work)
            _py314_die "refusing to use $root as the Python 3.14 root"
            return
            ;;
    esac
    if [[ "$root" == "$checkout" || "$root" == "$checkout"/* || "$checkout" == "$root"/* ]]; then
        _py314_die "the root ($root) must live outside the checkout ($checkout)"
        return
    fi
}

# Mount points at or under $1 in the host's mount table (/proc/mounts escapes spaces as \040).
_py314_mounts_under() {
    local root=$1
    awk -v r="$root" '{
        p = $2
        gsub(/\\040/, " ", p); gsub(/\\011/, "\t", p); gsub(/\\012/, "\n", p); gsub(/\\134/, "\\", p)
        if (p == r || index(p, r "/") == 1) print p
    }' /proc/mounts
}

# Delete a root, but never one with anything mounted inside it.
_py314_safe_remove() {
    local root=$1 mounts
    _py314_check_root_path "$root" || return
    [[ -e "$root" ]] || return 0
    mounts="$(_py314_mounts_under "$root")"
    if [[ -n "$mounts" ]]; then
        _py314_die "refusing to delete $root: still mounted inside it: $(tr '\n' ' ' <<<"$mounts")"
        return
    fi
    rm -rf --one-file-system -- "$root"
}

# The Debian mirror the host's apt sources use for its own release (not -security/-updates).
_py314_host_mirror() {
    if [[ -n "${JEISSON_PY314_MIRROR:-}" ]]; then
        printf '%s\n' "${JEISSON_PY314_MIRROR%/}"
        return
    fi
    local codename mirror="" f
    codename="$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")"
    [[ -n "$codename" ]] || _py314_die "no VERSION_CODENAME in /etc/os-release" || return
    # One-line format: deb [options] URI SUITE COMPONENTS...
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -f "$f" ]] || continue
        mirror="$(sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" \
            | awk -v c="$codename" '$1 == "deb" && $3 == c { print $2; exit }')"
        [[ -n "$mirror" ]] && break
    done
    # deb822 format: stanzas with Types/URIs/Suites/Enabled fields.
    if [[ -z "$mirror" ]]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f "$f" ]] || continue
            mirror="$(awk -v c="$codename" '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " c " "))
                        { split(uris, u, " "); print u[1]; found = 1 }
                    types = ""; uris = ""; suites = ""; enabled = ""
                }
                /^[[:space:]]*#/ { next }
                /^[[:space:]]*$/ { flush(); if (found) exit; next }
                {
                    key = tolower($1); sub(/:$/, "", key)
                    val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "enabled") enabled = tolower(val)
                }
                END { if (!found) flush() }' "$f")"
            [[ -n "$mirror" ]] && break
        done
    fi
    [[ -n "$mirror" ]] || _py314_die "no Debian mirror for '$codename' in /etc/apt/sources*" || return
    printf '%s\n' "${mirror%/}"
}

# The stamp the venv should carry: line 1 decides the venv (HA stack), line 2 the project.
_py314_expected_stamp() {
    local checkout=$1 venv project
    venv="$({
        printf 'recipe %s\n' "$_PY314_INSTALL_RECIPE"
        cat -- "$checkout/$_PY314_REQUIREMENTS"
        if [[ -n "$_PY314_NODEPS_REQUIREMENTS" ]]; then
            cat -- "$checkout/$_PY314_NODEPS_REQUIREMENTS"
        fi
    } | sha256sum | cut -d' ' -f1)" || return
    project="$(cat -- "$checkout/pyproject.toml" "$checkout/aggregator/pyproject.toml" \
        "$checkout/requirements/dev.txt" | sha256sum | cut -d' ' -f1)" || return
    printf 'venv %s\nproject %s\n' "$venv" "$project"
}

# Environment for commands in the root: a fixed base plus whichever of the pass-through
# variables are set. Prints NAME=VALUE lines (NUL-separated).
_py314_child_env() {
    local name
    printf '%s\0' "PATH=$_PY314_PATH" "HOME=/root" "LANG=C.UTF-8" "PYTHONDONTWRITEBYTECODE=1" \
        "JEISSON_HA=${JEISSON_HA:-$_PY314_DEFAULT_HA}"
    for name in TERM CI PIP_INDEX_URL PIP_EXTRA_INDEX_URL; do
        [[ -n "${!name+set}" ]] && printf '%s\0' "$name=${!name}"
    done
    while IFS= read -r name; do
        [[ "$name" == *_proxy || "$name" == *_PROXY ]] && printf '%s\0' "$name=${!name}"
    done < <(compgen -e)
    return 0
}

# Runs INSIDE a fresh private mount namespace (see _py314_enter): mount, chroot, exec.
# Arguments: ROOT CHECKOUT HOST_MNT_NS N_ENV ENV... CMD...
_py314_ns_main() {
    set -euo pipefail
    local root=$1 checkout=$2 host_ns=$3 nenv=$4
    shift 4
    local -a envs=("${@:1:nenv}")
    shift "$nenv"
    # Safety: never mount anything unless we really are in a namespace of our own.
    if [[ "$(readlink /proc/self/ns/mnt)" == "$host_ns" ]]; then
        _py314_die "not in a private mount namespace; refusing to mount"
        return
    fi
    mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
    mount --bind /sys "$root/sys"
    mount -o remount,bind,ro,nosuid,nodev,noexec "$root/sys"
    mount --rbind /dev "$root/dev"
    mount --make-rslave "$root/dev"
    if [[ -n "$checkout" ]]; then
        mkdir -p "$root$_PY314_MOUNT_POINT"
        mount --bind "$checkout" "$root$_PY314_MOUNT_POINT"
    fi
    local cwd=/
    [[ -n "$checkout" ]] && cwd=$_PY314_MOUNT_POINT
    exec chroot "$root" /usr/bin/env -i --chdir="$cwd" "${envs[@]}" "$@"
}

# Run CMD in the root inside a private mount namespace; replaces the calling (sub)shell.
# Arguments: ROOT CHECKOUT(or empty) N_EXTRA_ENV EXTRA_ENV... CMD...
_py314_enter() {
    local root=$1 checkout=$2 nextra=$3
    shift 3
    local -a envs extra=("${@:1:nextra}")
    shift "$nextra"
    mapfile -d '' -t envs < <(_py314_child_env)
    envs+=("${extra[@]}")
    # shellcheck disable=SC2016  # expanded by the inner bash
    exec unshare --mount --propagation private -- \
        bash -c 'source "$1" && shift && _py314_ns_main "$@"' py314-ns "$_PY314_LIB_FILE" \
        "$root" "$checkout" "$(readlink /proc/self/ns/mnt)" "${#envs[@]}" "${envs[@]}" "$@"
}

# Run a command in the root as part of building it (returns its status).
_py314_build_cmd() {
    local root=$1 checkout=$2
    shift 2
    (_py314_enter "$root" "$checkout" 3 DEBIAN_FRONTEND=noninteractive \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 "$@")
}

_py314_ensure_debootstrap() {
    if [[ ! -x /usr/sbin/debootstrap || ! -f "$_PY314_DEBOOTSTRAP_SCRIPT" ]]; then
        _py314_log "installing debootstrap on the host"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
}

# Copy a host file to a path inside the root without following symlinks there.
_py314_copy_in() {
    local src=$1 dest=$2
    rm -f -- "$dest"
    cp -L -- "$src" "$dest"
}

# Keep the root's CA certificates and resolver in step with the host's (cheap when unchanged).
_py314_sync_host_files() {
    local root=$1 dir=usr/local/share/ca-certificates changed=0 crt
    if ! cmp -s /etc/resolv.conf "$root/etc/resolv.conf"; then
        _py314_copy_in /etc/resolv.conf "$root/etc/resolv.conf"
    fi
    mkdir -p "$root/$dir"
    for crt in /"$dir"/*.crt; do
        [[ -f "$crt" ]] || continue
        if ! cmp -s "$crt" "$root/$dir/${crt##*/}"; then
            _py314_copy_in "$crt" "$root/$dir/${crt##*/}"
            changed=1
        fi
    done
    if ((changed)) && [[ -x "$root/usr/sbin/update-ca-certificates" ]]; then
        _py314_build_cmd "$root" "" update-ca-certificates --fresh >/dev/null
    fi
}

# debootstrap + apt + CA certificates; writes the completion marker last.
_py314_build_base() {
    local root=$1 mirror suite=${JEISSON_PY314_SUITE:-$_PY314_DEFAULT_SUITE}
    mirror="$(_py314_host_mirror)" || return
    _py314_ensure_debootstrap || return
    _py314_safe_remove "$root" || return
    mkdir -p "$root"
    _py314_log "debootstrap $suite from $mirror into $root"
    # In a namespace of its own, so the /proc and /sys debootstrap mounts die with it.
    unshare --mount --propagation private -- debootstrap --variant=minbase \
        "$suite" "$root" "$mirror" "$_PY314_DEBOOTSTRAP_SCRIPT" >"$root.debootstrap.log" 2>&1 || {
        tail -n 20 "$root.debootstrap.log" >&2
        _py314_die "debootstrap failed (log: $root.debootstrap.log)"
        return
    }
    cat >"$root/etc/apt/apt.conf.d/99jeisson" <<'EOF'
// The mirror's testing/sid Release files may be past their Valid-Until date.
Acquire::Check-Valid-Until "false";
Acquire::Retries "3";
APT::Install-Recommends "false";
EOF
    _py314_sync_host_files "$root" || return
    _py314_log "apt-get install $_PY314_APT_PACKAGES"
    # shellcheck disable=SC2086  # the package list is meant to split
    _py314_build_cmd "$root" "" apt-get update -qq &&
        _py314_build_cmd "$root" "" apt-get install -y -qq $_PY314_APT_PACKAGES >/dev/null &&
        _py314_build_cmd "$root" "" update-ca-certificates --fresh >/dev/null &&
        _py314_build_cmd "$root" "" apt-get clean || return
    touch "$root/$_PY314_COMPLETE_MARKER"
}

# Fresh venv with the HA test stack (the project is installed by the caller next).
_py314_install_venv() {
    local root=$1 checkout=$2
    rm -rf --one-file-system -- "${root:?}$_PY314_VENV"
    _py314_log "creating $_PY314_VENV and installing $_PY314_REQUIREMENTS"
    _py314_build_cmd "$root" "" "$_PY314_PYTHON" -m venv "$_PY314_VENV" &&
        _py314_build_cmd "$root" "$checkout" python -m pip install -q \
            -r "$_PY314_MOUNT_POINT/$_PY314_REQUIREMENTS" &&
        if [[ -n "$_PY314_NODEPS_REQUIREMENTS" ]]; then
            _py314_log "installing $_PY314_NODEPS_REQUIREMENTS with --no-deps"
            _py314_build_cmd "$root" "$checkout" python -m pip install -q --no-deps \
                -r "$_PY314_MOUNT_POINT/$_PY314_NODEPS_REQUIREMENTS"
        fi &&
        _py314_build_cmd "$root" "" sh -c \
            "python -m pip freeze --exclude-editable >$_PY314_HA_CONSTRAINTS" || {
        _py314_die "installing $_PY314_REQUIREMENTS failed; it will be retried on the next run"
        return
    }
}

# `pip check` in the venv; a venv with --no-deps requirements may differ only as accepted above.
_py314_pip_check() {
    local root=$1 checkout=$2 report status=0
    report="$(_py314_build_cmd "$root" "$checkout" python -m pip check)" || status=$?
    ((status == 0)) && return 0
    if [[ -n "$_PY314_NODEPS_REQUIREMENTS" ]] &&
        ! grep -Evq "$_PY314_NODEPS_ACCEPTED" <<<"$report"; then
        _py314_log "pip check: only the test plugin's own HA 2026.10.4 pins differ (expected)"
        return 0
    fi
    printf '%s\n' "$report" >&2
    return 1
}

# (Re)install the checkout's two distributions, editable -- jeisson (what the integration
# requires) and jeisson-aggregator (the HA end-to-end tests run a real aggregator server inside
# the root) -- with the dev tools, within the HA stack's versions.
_py314_install_project() {
    local root=$1 checkout=$2
    _py314_log "pip install -e /src -e /src/aggregator -r /src/requirements/dev.txt"
    _py314_build_cmd "$root" "$checkout" python -m pip install -q -c "$_PY314_HA_CONSTRAINTS" \
        -e "$_PY314_MOUNT_POINT" -e "$_PY314_MOUNT_POINT/aggregator" \
        -r "$_PY314_MOUNT_POINT/requirements/dev.txt" &&
        _py314_pip_check "$root" "$checkout" || {
        _py314_die "installing the project failed (see above); it will be retried on the next run"
        return
    }
}

# True when the root is complete and current: no build step needed. Reads only.
_py314_up_to_date() {
    local root=$1 checkout=$2 crt dir=usr/local/share/ca-certificates
    [[ -f "$root/$_PY314_COMPLETE_MARKER" && -f "$checkout/$_PY314_REQUIREMENTS" ]] || return 1
    [[ "$(cat -- "$root/$_PY314_STAMP" 2>/dev/null)" == "$(_py314_expected_stamp "$checkout")" ]] ||
        return 1
    cmp -s /etc/resolv.conf "$root/etc/resolv.conf" || return 1
    for crt in /"$dir"/*.crt; do
        [[ -f "$crt" ]] || continue
        cmp -s "$crt" "$root/$dir/${crt##*/}" || return 1
    done
}

# The work of py314_ensure; the caller holds the exclusive lock.
_py314_ensure_locked() {
    local root=$1 checkout=$2 expected current venv_line
    [[ -f "$checkout/$_PY314_REQUIREMENTS" ]] ||
        _py314_die "missing $checkout/$_PY314_REQUIREMENTS" || return
    if [[ ! -f "$root/$_PY314_COMPLETE_MARKER" ]]; then
        [[ -e "$root" ]] && _py314_log "$root is incomplete (interrupted build?); rebuilding"
        _py314_build_base "$root" || return
    else
        _py314_sync_host_files "$root" || return
    fi
    expected="$(_py314_expected_stamp "$checkout")" || return
    current="$(cat -- "$root/$_PY314_STAMP" 2>/dev/null || true)"
    [[ "$current" == "$expected" ]] && return 0
    venv_line="${expected%%$'\n'*}"
    # (bin/python is an absolute symlink into the root, so test a plain file instead.)
    if [[ "${current%%$'\n'*}" != "$venv_line" || ! -f "$root$_PY314_HA_CONSTRAINTS" ]]; then
        rm -f -- "$root/$_PY314_STAMP"
        _py314_install_venv "$root" "$checkout" || return
    fi
    # The HA stack is in place: a failed project install only redoes the project next time.
    printf '%s\nproject pending\n' "$venv_line" >"$root/$_PY314_STAMP"
    _py314_install_project "$root" "$checkout" || return
    printf '%s\n' "$expected" >"$root/$_PY314_STAMP"
}

# Take the lock open on fd $1 in mode $2 (-x exclusive, -s shared), waiting if need be.
_py314_lock() {
    local fd=$1 mode=$2 timeout=${JEISSON_PY314_LOCK_TIMEOUT:-$_PY314_DEFAULT_LOCK_TIMEOUT}
    if ! flock -n "$mode" "$fd"; then
        _py314_log "waiting for the lock on the root (another run is using or building it)"
        flock -w "$timeout" "$mode" "$fd" || _py314_die "timed out waiting for the root's lock"
    fi
}

_py314_prepare() {
    local root=$1
    _py314_check_root_path "$root" || return
    command -v unshare >/dev/null && command -v flock >/dev/null ||
        _py314_die "unshare and flock (util-linux) are required" || return
    [[ "$(id -u)" == 0 ]] || _py314_die "must run as root (chroot and mounts)" || return
    mkdir -p "$(dirname -- "$root")"
}

py314_ensure() (
    set -euo pipefail
    root="$(py314_root)"
    _py314_prepare "$root"
    exec {lockfd}>>"$root.lock"
    _py314_lock "$lockfd" -x
    _py314_ensure_locked "$root" "$(_py314_checkout)"
)

py314_remove() (
    set -euo pipefail
    root="$(py314_root)"
    _py314_prepare "$root"
    exec {lockfd}>>"$root.lock"
    _py314_lock "$lockfd" -x
    _py314_safe_remove "$root"
)

# Ensure the root, then replace this shell with CMD inside it. CMD holds the lock shared, so
# other commands run alongside it and a rebuild waits until it ends.
py314_exec() {
    local root checkout lockfd
    root="$(py314_root)" && checkout="$(_py314_checkout)" || return
    (($# > 0)) || _py314_die "usage: py314_exec COMMAND [ARGS...]" || return
    _py314_prepare "$root" || return
    exec {lockfd}>>"$root.lock" || return
    _py314_lock "$lockfd" -s || return
    if ! _py314_up_to_date "$root" "$checkout"; then
        # flock converts by dropping the shared lock first, so two upgraders cannot deadlock;
        # _py314_ensure_locked re-checks everything once it holds the lock exclusively.
        _py314_lock "$lockfd" -x || return
        (set -euo pipefail && _py314_ensure_locked "$root" "$checkout") || return
        _py314_lock "$lockfd" -s || return
    fi
    _py314_enter "$root" "$checkout" 0 "$@"
}

py314_run() {
    (py314_exec "$@")
}
