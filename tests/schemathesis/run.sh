#!/usr/bin/env bash
# Schemathesis against the server's own /openapi.json: every operation, a fixed number of
# generated cases per operation and a fixed seed, checked for server errors, undocumented status
# codes, content types and response bodies that do not match the served schema.
#
#   bash tests/schemathesis/run.sh [BINARY] [st run options...]   # default: target/release/agent-server
#   ST_EXAMPLES=200 ST_SEED=7 bash tests/schemathesis/run.sh target/debug/agent-server
#   ST_REPORT=/tmp/st bash tests/schemathesis/run.sh   # keeps the NDJSON report and the server log
#
# Safety: the server runs in a scratch directory, as the unprivileged user `nobody` when this
# script runs as root (with setpriv), and hooks.py rewrites every generated bash command to
# `echo` and every upload target and workspace directory into the scratch directory.
# hooks.py also creates fixtures (a conversation with events, a bash command, a file, a git
# repository) that requests use instead of random ids, and drops exactly the findings where the
# server answers as the reference does (its documented 500s, the auth gate's 401).
#
# The tool's virtual environment is cached outside the repository, keyed by a hash of the pins:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/agent-server-schemathesis-venv/<hash>
# The last line is `schemathesis: N passed, N failed` (operations); the exit code is non-zero on
# any finding, on a panic in the server's log, or when the run exceeds its time limit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

server=$ROOT/target/release/agent-server
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
  server=$1
  shift
fi
case "$server" in /*) ;; *) server=$(pwd)/$server ;; esac
if [ ! -x "$server" ]; then
  echo "schemathesis: server binary not found or not executable: $server (cargo build --release)" >&2
  exit 2
fi
EXAMPLES=${ST_EXAMPLES:-50}
SEED=${ST_SEED:-20261129}
LIMIT=${ST_TIME_LIMIT:-420}   # seconds for the whole schemathesis run

# ---------------------------------------------------------------- cached venv
py=${PYTHON:-python3}
if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "schemathesis: FAILED: needs Python >= 3.10 (set PYTHON)" >&2
  echo "0 passed, 1 failed"
  exit 2
fi
PINS=(schemathesis==4.32.5)
key=$(printf '%s\n' "${PINS[@]}" "$("$py" -c 'import sys; print(sys.version)')" | sha256sum | cut -c1-16)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/agent-server-schemathesis-venv
venv=$cache/$key
mkdir -p "$cache"
(
  # one installer at a time; a half-built venv (no stamp) is rebuilt
  flock 9
  if [ ! -f "$venv/.complete" ]; then
    echo "schemathesis: creating the venv in $venv" >&2
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "${PINS[@]}"
    touch "$venv/.complete"
  fi
) 9>"$cache/.lock"

# ---------------------------------------------------------------- scratch and server
scratch=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
mkdir -p "$scratch/conv" "$scratch/bev" "$scratch/upload" "$scratch/ws" "$scratch/report" "$scratch/static"
echo '<p>static</p>' >"$scratch/static/index.html"
run_as=()
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 && id nobody >/dev/null 2>&1; then
  uid=$(id -u nobody)
  gid=$(id -g nobody)
  run_as=(setpriv --reuid="$uid" --regid="$gid" --clear-groups)
  chmod 755 "$scratch"
  chown -R "$uid:$gid" "$scratch"
  if ! "${run_as[@]}" test -x "$server"; then
    # the binary's directory is closed to nobody (e.g. under /root): run a copy
    cp "$server" "$scratch/agent-server"
    chmod 755 "$scratch/agent-server"
    server=$scratch/agent-server
  fi
fi
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(
  cd "$scratch"
  # HOME: a home the server's user can read (libgit2 refuses to open any repository when the
  # global git config is unreadable)
  exec env HOME="$scratch" OH_SESSION_API_KEYS_0=k OH_ENABLE_VSCODE=false OH_ENABLE_VNC=false \
    OH_CONVERSATIONS_PATH="$scratch/conv" OH_BASH_EVENTS_DIR="$scratch/bev" \
    OH_STATIC_FILES_PATH="$scratch/static" \
    "${run_as[@]}" "$server" --host 127.0.0.1 --port "$port"
) >"$scratch/server.log" 2>&1 &
pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 1 300); do
  if "$py" -c "import urllib.request,sys; urllib.request.urlopen('$base/health', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis: the server did not start:" >&2
    cat "$scratch/server.log" >&2
    exit 1
  fi
  sleep 0.1
done

# ---------------------------------------------------------------- the run
set +e
(
  cd "$scratch"
  ST_SCRATCH=$scratch ST_BASE_URL=$base ST_KEY=k ST_SERVER_OWNER="${uid:-}:${gid:-}" \
    SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$HERE" \
    timeout -k 10 "$LIMIT" "$venv/bin/st" run "$base/openapi.json" \
    -H "X-Session-API-Key: k" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples "$EXAMPLES" --seed "$SEED" --workers 1 \
    --request-timeout 30 --generation-database none --no-color \
    --report ndjson --report-ndjson-path "$scratch/report/run.ndjson" "$@"
) | tee "$scratch/report/run.txt"
status=${PIPESTATUS[0]}
set -e
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "schemathesis: the run exceeded ${LIMIT}s" >&2
fi
if ! kill -0 "$pid" 2>/dev/null; then
  echo "schemathesis: the server died during the run" >&2
  status=1
fi
if grep -q "panicked" "$scratch/server.log"; then
  echo "schemathesis: a panic in the server's log:" >&2
  grep -n -A3 "panicked" "$scratch/server.log" >&2
  status=1
fi
if [ -n "${ST_REPORT:-}" ]; then
  # keep the NDJSON report and the server's log
  mkdir -p "$ST_REPORT"
  cp "$scratch/report/run.ndjson" "$scratch/server.log" "$ST_REPORT/" 2>/dev/null || true
fi
"$py" - "$scratch/report/run.ndjson" "$scratch/report/run.txt" "$status" <<'PY'
import json, re, sys
# operations and cases from the NDJSON report; failing operations from the FAILURES section of
# the printed report (the NDJSON also lists the failures that hooks.py dropped)
ops, cases = set(), 0
try:
    lines = open(sys.argv[1]).read().splitlines()
except OSError:
    lines = []
for line in lines:
    ev = json.loads(line).get("ScenarioFinished")
    if not ev:
        continue
    rec = ev["recorder"]
    if ev.get("phase") != "stateful":
        ops.add(rec.get("label", ""))
    cases += len(rec.get("cases", {}))
try:
    text = open(sys.argv[2], errors="replace").read()
except OSError:
    text = ""
section = text.split(" FAILURES ", 1)[1] if " FAILURES " in text else ""
section = re.split(r"\n=+ [A-Z]", section, maxsplit=1)[0]
failed_ops = set(re.findall(r"^_+ (.+?) _+$", section, re.M))
failed = len(failed_ops) if sys.argv[3] == "0" or failed_ops else 1
print(f"schemathesis: {len(ops)} operations, {cases} cases")
print(f"schemathesis: {max(0, len(ops) - len(failed_ops))} passed, {failed} failed")
PY
exit "$status"
