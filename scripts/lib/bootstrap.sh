# Shared by scripts/demo and scripts/test: make the virtualenv and install the project into
# it, installing system packages with apt-get where they are missing. Sourced, not run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$ROOT/.venv"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf '\033[31mERROR: %s\033[0m\n' "$*" >&2; exit 2; }

apt_install() {
    # apt_install PKG...: install Debian packages if we can (root and apt-get present).
    command -v apt-get >/dev/null || die "missing system packages: $* (no apt-get here; install them yourself)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    say "installing system packages: $*"
    if [ -z "${YUANRAIL_APT_UPDATED:-}" ]; then
        $sudo apt-get update -qq >/dev/null || true
        export YUANRAIL_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null \
        || die "could not install system packages: $*"
}

find_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && "$candidate" -c \
            'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

ensure_venv() {
    # ensure_venv EXTRAS: the project installed editable with those extras, redone only
    # when pyproject.toml or the extras change.
    local extras="$1" python
    python="$(find_python)" || { apt_install python3 python3-venv python3-pip; python="$(find_python)"; } \
        || die "Python >= 3.11 is needed"
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating virtualenv in .venv"
        "$python" -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; "$python" -m venv "$VENV"; } \
            || die "could not create a virtualenv"
    fi
    local stamp="$VENV/.yuanrail-installed" want
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-$extras"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "installing yuanrail[$extras] into .venv"
        "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
        "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]" 2>&1 | grep -v -e '^WARNING: Location' -e 'WheelFile' -e '^\s*!!' -e '^\s*$' >&2 || true
        "$VENV/bin/python" -c "import central, bank, rail_protocol" || die "installing the project failed"
        echo "$want" > "$stamp"
    fi
    export PATH="$VENV/bin:$PATH"
}
