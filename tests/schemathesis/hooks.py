"""Schemathesis hooks for tests/schemathesis/run.sh (loaded through SCHEMATHESIS_HOOKS).

1. Safety. The server runs commands and writes files for whoever holds the key. Right before any
   request goes out, whatever the generator produced:
   * bash command bodies (REST) get a harmless command (`echo`), whatever `cwd` and `timeout` say;
   * upload targets and conversation workspaces (created with mkdir -p) are moved into the run's
     scratch directory ($ST_SCRATCH), keeping a filesystem-safe form of the generated name.
   run.sh also runs the server as an unprivileged user when it is started as root.

2. Reach. Random ids only ever meet 404s. At load time this module creates fixtures (a
   conversation that ran to the end against a fake LLM on loopback, so it has events; a finished
   bash command; a file; a git repository; run.sh adds a static directory) and about two requests in three get their ids and paths instead of the generated
   ones (chosen by a hash of the generated value, so a seed replays the same run).

3. The reference's own answers. `filter_failure` drops exactly the findings where this server
   answers as the reference does and both documents are silent about it (API.md section numbers
   in REFERENCE_5XX); everything else fails the run.
"""

import http.server
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import zlib
from urllib.parse import quote

import schemathesis

SCRATCH = os.environ["ST_SCRATCH"]
BASE = os.environ["ST_BASE_URL"].rstrip("/")
KEY = os.environ["ST_KEY"]
BASH_OPS = {"/api/bash/start_bash_command", "/api/bash/execute_bash_command"}
SAFE_COMMAND = "echo schemathesis"


# ------------------------------------------------------------------------------------- fixtures
class _FakeLlm(http.server.BaseHTTPRequestHandler):
    """An OpenAI-style endpoint on loopback that answers every completion with a plain text
    message: runs end `finished` at once, titles and answers come back, no tool ever runs."""

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({
            "id": "chatcmpl-st", "object": "chat.completion", "created": 0, "model": "st",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "done"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _start_fake_llm() -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeLlm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def _call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("X-Session-API-Key", KEY)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def _fixtures():
    conv = _call("POST", "/api/conversations", {
        "agent": {
            "kind": "Agent",
            "tools": [{"name": "terminal"}],
            "llm": {"model": "openai/st", "base_url": _start_fake_llm(), "api_key": "sk-st",
                    "usage_id": "agent", "num_retries": 0},
        },
        "workspace": {"working_dir": f"{SCRATCH}/ws/fixture"},
        "initial_message": {"role": "user", "content": [{"type": "text", "text": "hello"}]},
    })
    cid = conv["id"]
    deadline = time.time() + 30
    while _call("GET", f"/api/conversations/{cid}")["execution_status"] != "finished":
        if time.time() > deadline:
            raise SystemExit("schemathesis fixtures: the fixture conversation did not settle")
        time.sleep(0.1)
    events = _call("GET", f"/api/conversations/{cid}/events/search?limit=100")["items"]
    cmd = _call("POST", "/api/bash/execute_bash_command", {"command": "echo fixture"})
    bash = _call("GET", "/api/bash/bash_events/search?limit=100")["items"]
    os.makedirs(f"{SCRATCH}/files", exist_ok=True)
    with open(f"{SCRATCH}/files/hello.txt", "w") as f:
        f.write("hello\n")
    repo = f"{SCRATCH}/repo"
    os.makedirs(repo, exist_ok=True)
    with open(f"{repo}/a.txt", "w") as f:
        f.write("one\n")
    git = ["git", "-C", repo, "-c", "user.name=st", "-c", "user.email=st@example.invalid"]
    try:
        subprocess.run(git[:3] + ["init", "-q"], check=True)
        subprocess.run(git + ["add", "a.txt"], check=True)
        subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
        with open(f"{repo}/a.txt", "a") as f:
            f.write("two\n")
    except (OSError, subprocess.CalledProcessError):
        pass  # without git, the git routes see a plain directory
    owner = os.environ.get("ST_SERVER_OWNER", ":")
    if owner != ":":
        # the server runs as another user: it must own the repository (git's ownership check)
        subprocess.run(["chown", "-R", owner, f"{SCRATCH}/files", repo], check=True)
    return {
        "conversation_id": cid,
        "event_ids": [e["id"] for e in events],
        "bash_ids": [e["id"] for e in bash] or [cmd["id"]],
        "file": f"{SCRATCH}/files/hello.txt",
        "repo": repo,
    }


FIX = _fixtures()


def _bash_ids():
    """The fixture command's event ids; made again when a generated DELETE /api/bash/bash_events
    has cleared them."""
    try:
        _call("GET", f"/api/bash/bash_events/{FIX['bash_ids'][0]}")
    except urllib.error.HTTPError:
        cmd = _call("POST", "/api/bash/execute_bash_command", {"command": "echo fixture"})
        FIX["bash_ids"] = [cmd["command_id"], cmd["id"]]
    return FIX["bash_ids"]


def _q(value: str) -> str:
    """A path parameter as the generator leaves it: percent-encoded, `/` included (so an absolute
    path keeps its leading slash as `%2F`, which the server decodes)."""
    return quote(value, safe="")


def _pick(value, choices):
    """A fixture value for about two generated values in three; the generated one otherwise."""
    h = zlib.crc32(repr(value).encode())
    if h % 3 == 0 or not choices:
        return value
    return choices[h % len(choices)]


# --------------------------------------------------------------------------------------- safety
def _safe_name(value) -> str:
    """A single path component derived from a generated value: no `/`, no `..`, not empty."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = re.sub(r"[/\\\x00]", "_", text).replace("..", "__")[:60]
    return "p_" + text


def _decoded(body):
    if isinstance(body, (bytes, bytearray)):
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return body
    return body


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    path = case.operation.path
    method = case.method.upper()
    params = dict(case.path_parameters or {})
    # safety
    if path in BASH_OPS:
        body = _decoded(case.body)
        if isinstance(body, dict):
            body = dict(body)
            if isinstance(body.get("command"), str):
                body["command"] = SAFE_COMMAND
            case.body = body
        elif isinstance(case.body, (bytes, bytearray)):
            case.body = b"{}"
    elif path == "/api/file/upload/{path}":
        params["path"] = _q(f"{SCRATCH}/upload/{_safe_name(params.get('path', ''))}")
    elif path == "/api/conversations" and method == "POST":
        body = _decoded(case.body)
        if isinstance(body, dict) and isinstance(body.get("workspace"), dict):
            body = dict(body)
            ws = dict(body["workspace"])
            if "working_dir" in ws:
                ws["working_dir"] = f"{SCRATCH}/ws/{_safe_name(ws['working_dir'])}"
            body["workspace"] = ws
            case.body = body
        elif isinstance(case.body, (bytes, bytearray)):
            case.body = b"{}"
    # reach (never DELETE the fixture conversation: everything after would be a 404 again)
    if "conversation_id" in params and not (method == "DELETE" and path.endswith("{conversation_id}")):
        params["conversation_id"] = _pick(params["conversation_id"], [FIX["conversation_id"]])
    if "event_id" in params:
        if path.startswith("/api/bash/"):
            picked = _pick(params["event_id"], ["bash"])
            params["event_id"] = _bash_ids()[0] if picked == "bash" else picked
        else:
            params["event_id"] = _pick(params["event_id"], FIX["event_ids"])
    if path == "/api/file/download/{path}" and "path" in params:
        params["path"] = _pick(params["path"], [_q(FIX["file"]), _q(f"{SCRATCH}/files")])
    if path.startswith("/api/git/") and "path" in params:
        target = FIX["repo"] if "/changes/" in path else f"{FIX['repo']}/a.txt"
        params["path"] = _pick(params["path"], [_q(target)])
    if path == "/static/{path}" and "path" in params:
        params["path"] = _pick(params["path"], ["index.html"])
    if params:
        case.path_parameters = params
    # the sockets take the key from the query only
    if path.startswith("/sockets/") and isinstance(case.query or {}, dict):
        query = dict(case.query or {})
        query["session_api_key"] = _pick(query.get("session_api_key"), [KEY])
        case.query = query


# -------------------------------------------------------------------- the reference's own answers
# (method, path template, status, pattern the `exception` text must match): the 5xx the reference
# itself answers (API.md). Neither document lists them (FastAPI does not document 500s).
REFERENCE_5XX = [
    # §2.1: an unregistered tool name
    ("POST", "/api/conversations", 500, r"^\"ToolDefinition '.*' is not registered\"$"),
    # EVENTS.md §1.1: `kind` missing on a union of several classes (a KeyError), in any body
    # that holds one (policies, secret sources, condensers)
    ("POST", "/api/conversations", 500, r"^'kind'$"),
    ("POST", "/api/conversations/{conversation_id}/confirmation_policy", 500, r"^'kind'$"),
    ("POST", "/api/conversations/{conversation_id}/secrets", 500, r"^'kind'$"),
    # §2.5: 100 ids or more (an assert)
    ("GET", "/api/conversations", 500, r"^$"),
    # §2.8, §3.6: the loop raised (e.g. a generated LLM configuration that cannot work)
    ("POST", "/api/conversations/{conversation_id}/run", 500, r"^Conversation run failed"),
    ("POST", "/api/conversations/{conversation_id}/events/respond_to_confirmation", 500,
     r"^Conversation run failed"),
    # §2.13: no user message, unknown conversation
    ("POST", "/api/conversations/{conversation_id}/generate_title", 500,
     r"^No user messages found in conversation events$|^500: Internal Server Error$"),
    # §2.14: unknown conversation, LLM errors
    ("POST", "/api/conversations/{conversation_id}/ask_agent", 500, r""),
    # §3.3, §3.4: unknown event id
    ("GET", "/api/conversations/{conversation_id}/events/{event_id}", 500, r"^'Unknown event_id: "),
    ("GET", "/api/conversations/{conversation_id}/events", 500, r"^'Unknown event_id: "),
    # §3.5: a role other than user
    ("POST", "/api/conversations/{conversation_id}/events", 500,
     r"^Only user messages are allowed to be sent to the agent\.$"),
    # §5.1: relative path, I/O error
    ("POST", "/api/file/upload/{path}", 500, r"^500: Failed to upload file: "),
    # §5.3: unknown conversation
    ("GET", "/api/file/download-trajectory/{conversation_id}", 500, r"^File at path .* does not exist\.$"),
    # §6
    ("GET", "/api/git/changes/{path}", 500,
     r"^(Directory does not exist|Not a git repository|File does not exist|File is not in a git repository): "),
    ("GET", "/api/git/diff/{path}", 500,
     r"^(Directory does not exist|Not a git repository|File does not exist|File is not in a git repository): "),
    # §8: VS Code and the desktop are off in this run
    ("GET", "/api/vscode/url", 503, r"^503: VSCode is disabled in configuration\."),
    ("GET", "/api/desktop/url", 503, r"^503: Desktop is disabled in configuration\."),
]

SERVER_ERROR_CODES = {"ST101", "ST103"}  # server error; undocumented status code


def _reference_5xx(case, response) -> bool:
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    if not isinstance(body, dict) or body.get("detail") != "Internal Server Error":
        return False
    exception = body.get("exception")
    if not isinstance(exception, str):
        return False
    method, path = case.method.upper(), case.operation.path
    return any(
        m == method and p == path and s == response.status_code and re.search(rx, exception)
        for m, p, s, rx in REFERENCE_5XX
    )


def _sent_without_the_key(response) -> bool:
    return response.request.headers.get("X-Session-API-Key") != KEY


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """False drops the failure (see the module docstring); the reasons are in README's Reliability."""
    code = getattr(failure, "code", None)
    if response is None or code not in SERVER_ERROR_CODES:
        return True
    if response.status_code >= 500:
        return not _reference_5xx(case, response)
    # The auth gate: a request sent without the key (the coverage phase drops the declared
    # security header) is refused with 401, as the reference does; neither document lists 401.
    if code == "ST103" and response.status_code == 401 and _sent_without_the_key(response):
        return False
    return True
