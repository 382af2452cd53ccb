#!/usr/bin/env bash
# Drop-in proof: drives a server ONLY through the official Python client (openhands-sdk 1.4.1:
# RemoteConversation and RemoteWorkspace), with a scripted fake LLM on loopback.
#
#   bash tests/client/run.sh [BINARY]       # default: target/release/agent-server
#   bash tests/client/run.sh --reference    # the reference Python server (see below)
#   bash tests/client/run.sh BINARY -k pause,workspace_files   # a subset of the tests
#
# Needs Python 3.12 (`python3.12`, or $PYTHON312). The client's virtual environment is cached
# outside the repository, keyed by a hash of the pins:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/agent-server-client-venv/<hash>
# The fake LLM is ../shared/conformance/ohconf/fakellm.py ($SHARED overrides ../shared), loaded
# by path. --reference runs the reference server from $REF_VENV (default
# ~/.cache/oh-reference-venv, installed by ../shared/reference/run-reference.sh); differences that
# ../shared/reference/DEVIATIONS.md lists are then reported as known deviations, not failures.
#
# The last line is `N passed, N failed`; the exit code is non-zero when anything failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}

target=server
server=""
if [ "${1:-}" = "--reference" ]; then
  target=reference
  shift
  ref_py="${REF_VENV:-$HOME/.cache/oh-reference-venv}/bin/python"
  if [ ! -x "$ref_py" ]; then
    echo "client suite: the reference is not installed at $ref_py (run ../shared/reference/run-reference.sh once)" >&2
    exit 2
  fi
  server="$ref_py -m openhands.agent_server"
else
  if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    server=$1
    shift
  else
    server=$ROOT/target/release/agent-server
  fi
  case "$server" in /*) ;; *) server=$(pwd)/$server ;; esac
  if [ ! -x "$server" ]; then
    echo "client suite: server binary not found or not executable: $server (cargo build --release)" >&2
    exit 2
  fi
  server=$(printf '%q' "$server")
fi

fakellm=$SHARED/conformance/ohconf/fakellm.py
if [ ! -f "$fakellm" ]; then
  echo "client suite: fake LLM not found at $fakellm (set SHARED to the shared folder)" >&2
  exit 2
fi

# ---------------------------------------------------------------- Python 3.12
find_python312() {
  local cand
  # PATH first, then where pyenv and the usual packages put it (CI may not have pyenv's shims)
  for cand in "${PYTHON312:-}" python3.12 python3 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 \
      /usr/local/bin/python3.12 /usr/bin/python3.12; do
    [ -n "$cand" ] || continue
    command -v "$cand" >/dev/null 2>&1 || continue
    # pyenv shims need a version; 3.12.1 is the one installed on the project's machines
    if PYENV_VERSION="${PYENV_VERSION:-3.12.1}" "$cand" -c \
        'import sys; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' >/dev/null 2>&1; then
      echo "$cand"
      return 0
    fi
  done
  # another pyenv 3.12.x
  if command -v pyenv >/dev/null 2>&1; then
    local v
    v=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | tail -n 1 || true)
    if [ -n "$v" ] && PYENV_VERSION=$v python3.12 -c 'import sys' >/dev/null 2>&1; then
      export PYENV_VERSION=$v
      echo python3.12
      return 0
    fi
  fi
  return 1
}
if ! py=$(find_python312); then
  echo "client suite: FAILED: Python 3.12 not found (the official client openhands-sdk 1.4.1 needs" >&2
  echo "Python >= 3.12). Install it (e.g. pyenv install 3.12.1, or apt-get install python3.12) or" >&2
  echo "point PYTHON312 at an interpreter." >&2
  echo "0 passed, 1 failed"
  exit 2
fi
export PYENV_VERSION=${PYENV_VERSION:-3.12.1}

# ---------------------------------------------------------------- cached venv
PINS=(
  openhands-sdk==1.4.1 openhands-workspace==1.4.1
  fastapi==0.119.0 starlette==0.48.0 pydantic==2.12.2 litellm==1.80.7 openai==2.8.1
  websockets==15.0.1 httpx==0.28.1 bashlex==0.18 binaryornot==0.6.0 cachetools==8.0.2
  libtmux==0.62.0 func-timeout==4.3.5
)
NODEPS=(openhands-tools==1.4.1)
key=$(printf '%s\n' "${PINS[@]}" -- "${NODEPS[@]}" "$("$py" -c 'import sys; print(sys.version)')" \
  | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/agent-server-client-venv
venv=$cache/$key
mkdir -p "$cache"
(
  # one installer at a time; a half-built venv (no stamp) is rebuilt
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    echo "client suite: creating the client venv in $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps "${NODEPS[@]}"
    touch "$venv/.complete"
  fi
) 9>"$cache/.lock"

exec "$venv/bin/python" "$HERE/client_suite.py" --target "$target" --server-cmd "$server" \
  --fakellm "$fakellm" "$@"
