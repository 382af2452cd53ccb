"""Records this directory's data with the reference server (openhands-agent-server 1.4.1).

    REF_PY=~/.cache/oh-reference-venv/bin/python        # installed by run-reference.sh
    $REF_PY tests/data/reference-1.4.1/record.py --ref-python $REF_PY --shared ../shared

Runs the reference under /tmp/oh-ref-record (a fixed path, so the data names it and the compat
test can substitute it) with OH_SECRET_KEY=test-secret-key, a scripted fake LLM on the fixed
port 18099, and:
  * conversation "run": initial message with run=true, one terminal step then finish;
  * conversation "titled": a StaticSecret MY_SECRET in the start request, a second secret
    ADDED_SECRET added with POST /secrets, a title set with PATCH, no run;
  * one bash command (execute_bash_command).
Then it captures the REST answers into expected.json (the SystemPromptEvent's big fields as
sha256 digests), stops the reference with SIGTERM (meta.json is written at shutdown) and copies
conversations/ and bash_events/ here. Needs httpx (the reference venv has it).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path("/tmp/oh-ref-record")
LLM_PORT = 18099
SECRET_KEY = "test-secret-key"
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def digest_system_prompt(events: list) -> list:
    """The SystemPromptEvent's prompt and tool list are big: each is replaced by
    {"sha256": hex} of its canonical JSON (sorted keys, compact separators, non-ASCII unescaped)."""
    def digest(v):
        canon = json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return {"sha256": hashlib.sha256(canon.encode()).hexdigest()}

    out = []
    for e in events:
        if e.get("kind") == "SystemPromptEvent":
            e = dict(e, system_prompt=digest(e["system_prompt"]), tools=digest(e["tools"]))
        out.append(e)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref-python", required=True)
    ap.add_argument("--shared", required=True)
    a = ap.parse_args()

    spec = importlib.util.spec_from_file_location("fakellm", Path(a.shared) / "conformance/ohconf/fakellm.py")
    fakellm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fakellm)
    fake = fakellm.FakeLLM("127.0.0.1", LLM_PORT).start()
    fake.set_script("rec-run", [
        {"tool": "terminal", "args": {"command": "echo hello-from-reference", "security_risk": "LOW"},
         "content": "Running a command."},
        {"tool": "finish", "args": {"message": "Done."}},
    ])

    shutil.rmtree(ROOT, ignore_errors=True)
    for d in ("cwd", "conversations", "bash_events", "home", "tmux", "workspace/run", "workspace/titled"):
        (ROOT / d).mkdir(parents=True)
    port = free_port()
    env = dict(os.environ, OH_CONVERSATIONS_PATH=str(ROOT / "conversations"),
               OH_BASH_EVENTS_DIR=str(ROOT / "bash_events"), OH_SECRET_KEY=SECRET_KEY,
               OH_ENABLE_VSCODE="false", OH_ENABLE_VNC="false", TZ="UTC", HOME=str(ROOT / "home"),
               TMUX_TMPDIR=str(ROOT / "tmux"))
    for k in ("SESSION_API_KEY", "OH_SESSION_API_KEYS_0"):
        env.pop(k, None)
    log = open(ROOT / "server.log", "wb")
    proc = subprocess.Popen([a.ref_python, "-m", "openhands.agent_server", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT / "cwd", env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    c = httpx.Client(base_url=base, timeout=120)
    try:
        def healthy():
            try:
                return c.get("/health").status_code == 200
            except httpx.HTTPError:
                return False
        wait(healthy, 120, "the reference")

        def agent(key):
            return {"kind": "Agent", "tools": [{"name": "terminal"}],
                    "llm": {"model": "openai/fake-model", "base_url": f"http://127.0.0.1:{LLM_PORT}/v1",
                            "api_key": key, "usage_id": "agent", "num_retries": 0}}

        r = c.post("/api/conversations", json={
            "agent": agent("ohconf-rec-run"),
            "workspace": {"kind": "LocalWorkspace", "working_dir": str(ROOT / "workspace/run")},
            "initial_message": {"role": "user", "content": [{"type": "text", "text": "Say hello"}], "run": True},
        })
        r.raise_for_status()
        run_id = r.json()["id"]
        wait(lambda: c.get(f"/api/conversations/{run_id}").json()["execution_status"] == "finished", 120,
             "the run to finish")

        r = c.post("/api/conversations", json={
            "agent": agent("ohconf-rec-titled"),
            "workspace": {"kind": "LocalWorkspace", "working_dir": str(ROOT / "workspace/titled")},
            "secrets": {"MY_SECRET": {"kind": "StaticSecret", "value": "s3cr3t-from-start"}},
        })
        r.raise_for_status()
        titled_id = r.json()["id"]
        r = c.post(f"/api/conversations/{titled_id}/secrets",
                   json={"secrets": {"ADDED_SECRET": {"kind": "StaticSecret", "value": "added-later"}}})
        r.raise_for_status()
        r = c.patch(f"/api/conversations/{titled_id}", json={"title": "Reference data title"})
        r.raise_for_status()

        r = c.post("/api/bash/execute_bash_command", json={"command": "echo bash-from-reference"})
        r.raise_for_status()
        wait(lambda: any(i.get("exit_code") is not None for i in
                         c.get("/api/bash/bash_events/search", params={"kind__eq": "BashOutput"}).json()["items"]),
             60, "the bash output")
        time.sleep(1.0)  # let the reference settle its last stats updates before capturing

        expected = {
            "note": "REST answers of the reference at recording time (see README.md)",
            "conversations_search": c.get("/api/conversations/search", params={"limit": 100}).json(),
            "conversations_count": c.get("/api/conversations/count").json(),
            "events": {},
            "bash_events_search": c.get("/api/bash/bash_events/search",
                                        params={"sort_order": "TIMESTAMP", "limit": 100}).json(),
        }
        for cid in (run_id, titled_id):
            items = c.get(f"/api/conversations/{cid}/events/search", params={"limit": 100}).json()["items"]
            expected["events"][cid] = digest_system_prompt(items)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["tmux", "kill-server"], env=dict(os.environ, TMUX_TMPDIR=str(ROOT / "tmux")),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        fake.stop()

    for d in ("conversations", "bash_events"):
        shutil.rmtree(HERE / d, ignore_errors=True)
        shutil.copytree(ROOT / d, HERE / d)
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
    print(f"recorded: conversations {run_id} (run) and {titled_id} (titled)")


if __name__ == "__main__":
    main()
