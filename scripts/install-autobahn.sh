#!/usr/bin/env bash
# Installs Autobahn|Testsuite (wstest) into .work/autobahn/venv27, idempotently.
#
# autobahntestsuite 25.10.1 is Python-2-only, so it runs under pyenv's Python 2.7.18
# in a virtualenv made by virtualenv<20.22 (Python 2.7 has no `venv` module).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
W="$ROOT/.work/autobahn"
VENV="$W/venv27"
VTOOL="$W/vtool"
AUTOBAHN_VERSION="25.10.1"
PY27_VERSION="2.7.18"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
PY27="$PYENV_ROOT/versions/$PY27_VERSION/bin/python2.7"

log() { echo "install-autobahn: $*"; }
die() { echo "install-autobahn: ERROR: $*" >&2; exit 1; }

wstest_works() {
    [ -x "$VENV/bin/wstest" ] || return 1
    # `wstest --help` imports the whole package; a broken install fails here.
    "$VENV/bin/wstest" --help >/dev/null 2>&1 || return 1
    "$VENV/bin/python" -c "import autobahntestsuite" >/dev/null 2>&1
}

if wstest_works; then
    log "wstest already installed at ${VENV#"$ROOT"/}/bin/wstest"
    exit 0
fi

mkdir -p "$W"

# 1. Python 2.7.18 from pyenv.
if [ ! -x "$PY27" ]; then
    if command -v pyenv >/dev/null 2>&1; then
        log "Python $PY27_VERSION not found under $PYENV_ROOT; running 'pyenv install $PY27_VERSION'"
        pyenv install --skip-existing "$PY27_VERSION"
    elif [ -x "$PYENV_ROOT/bin/pyenv" ]; then
        log "Python $PY27_VERSION not found; running '$PYENV_ROOT/bin/pyenv install $PY27_VERSION'"
        "$PYENV_ROOT/bin/pyenv" install --skip-existing "$PY27_VERSION"
    else
        die "Python $PY27_VERSION is required for autobahntestsuite (Python 2 only), expected at
  $PY27
but it is missing and pyenv is not installed. Install pyenv and run 'pyenv install $PY27_VERSION',
or set PYENV_ROOT to a pyenv root that has it."
    fi
    [ -x "$PY27" ] || die "pyenv install finished but $PY27 does not exist"
fi

# 2. A Python 3 virtualenv holding virtualenv<20.22 (the last line that creates Python 2.7 envs).
PY3="${PYTHON3:-python3}"
command -v "$PY3" >/dev/null 2>&1 || die "python3 not found (needed to bootstrap virtualenv)"
if ! "$VTOOL/bin/virtualenv" --version >/dev/null 2>&1; then
    log "creating bootstrap venv with virtualenv<20.22"
    rm -rf "$VTOOL"
    "$PY3" -m venv "$VTOOL"
    "$VTOOL/bin/pip" install --disable-pip-version-check -q 'virtualenv<20.22'
fi

# 3. The Python 2.7 virtualenv with autobahntestsuite.
log "creating Python $PY27_VERSION virtualenv at ${VENV#"$ROOT"/}"
rm -rf "$VENV"
"$VTOOL/bin/virtualenv" -q -p "$PY27" "$VENV"
log "pip install autobahntestsuite==$AUTOBAHN_VERSION (about 40 s)"
"$VENV/bin/pip" install --disable-pip-version-check -q "autobahntestsuite==$AUTOBAHN_VERSION"

wstest_works || die "autobahntestsuite installed but '$VENV/bin/wstest --help' fails"
log "installed wstest at ${VENV#"$ROOT"/}/bin/wstest"
