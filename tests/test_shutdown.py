"""SIGTERM with runs in flight: the server stops accepting at once, runs that finish within
server.shutdown_grace_secs answer normally, then every remaining CLI process group is ended, each
stream ends with an error event in its API's format and its terminal marker, each waiting plain
request gets a 503 in its API's error shape, and the process exits 0 within grace + 5 s. SIGINT
ends the runs at once."""

from __future__ import annotations

import http.client
import json
import signal
import uuid

import pytest
import requests

from tests.helpers import wait_for, wait_groups_gone
from tests.server_process import ServerProcess

pytestmark = pytest.mark.gunicorn

GRACE = 2
HANG = "FAKE_HANG FAKE_SPAWN_CHILD"


def chat(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


RUNS = {  # name → (path, body for a prompt, CLI runs it starts)
    "native-stream": ("/api/v1/prompt", lambda p: {"backend": "claude", "prompt": p, "output_format": "stream-json"}, 1),
    "parallel-stream": ("/api/v1/parallel", lambda p: {"output_format": "stream-json", "tasks": [
        {"backend": "claude", "prompt": p}, {"backend": "codex", "prompt": p}]}, 2),
    "openai-stream": ("/openai/v1/chat/completions",
                      lambda p: {"model": "codex", "stream": True, "messages": chat(p)}, 1),
    "anthropic-stream": ("/anthropic/v1/messages",
                         lambda p: {"model": "gemini", "max_tokens": 9, "stream": True, "messages": chat(p)}, 1),
    "native": ("/api/v1/prompt", lambda p: {"backend": "claude", "prompt": p}, 1),
    "parallel": ("/api/v1/parallel", lambda p: {"tasks": [{"backend": "gemini", "prompt": p}]}, 1),
    "openai": ("/openai/v1/chat/completions", lambda p: {"model": "codex", "messages": chat(p)}, 1),
    "anthropic": ("/anthropic/v1/messages", lambda p: {"model": "gemini", "max_tokens": 9, "messages": chat(p)}, 1),
}


def send(server: ServerProcess, path: str, body: dict) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=GRACE + 30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    return conn


def sse_frames(text: str) -> list[tuple[str | None, str]]:
    frames = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line and not line.startswith(":")]
        if lines:
            fields = dict(line.split(": ", 1) for line in lines)
            frames.append((fields.get("event"), fields["data"]))
    return frames


def check_answer(name: str, status: int, text: str) -> None:
    """The run was ended by the shutdown: each API says so in its own format."""
    if name.endswith("-stream"):
        assert status == 200, text
    if name == "native-stream":
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert [e["type"] for e in events[-2:]] == ["error", "done"], events
        assert events[-2]["content"]["code"] == "shutting_down" and events[-1]["content"]["exit_code"] == -1
    elif name == "parallel-stream":
        events = [json.loads(line) for line in text.splitlines() if line.strip()]
        for task in (0, 1):
            mine = [e["type"] for e in events if e.get("task") == task]
            assert mine[-2:] == ["error", "done"], events
        assert events[-1]["type"] == "done" and "task" not in events[-1], "the batch's summary ends it"
    elif name == "openai-stream":
        frames = [data for _, data in sse_frames(text)]
        assert frames[-1] == "[DONE]", frames
        assert json.loads(frames[-2])["error"]["code"] == "shutting_down", frames
    elif name == "anthropic-stream":
        event, data = sse_frames(text)[-1]
        assert event == "error" and json.loads(data)["type"] == "error", text
    else:
        assert status == 503, (name, status, text)
        body = json.loads(text)
        if name in ("native", "parallel"):
            assert body["status"] == 503 and body["error"] == "shutting_down", body
        elif name == "openai":
            assert body["error"]["code"] == "shutting_down", body
        else:
            assert body["type"] == "error" and body["error"]["message"], body


def refused(server: ServerProcess) -> bool:
    """A new connection is not served (refused, reset, or never answered)."""
    try:
        requests.post(server.url + "/api/v1/prompt", json={"backend": "codex", "prompt": "late"}, timeout=0.5)
    except requests.RequestException:
        return True
    return False


def test_sigterm_drains_then_ends_the_runs(tmp_path, fake_clis):
    config = {"server": {"shutdown_grace_secs": GRACE, "request_timeout_secs": 120, "keepalive_interval_secs": 3600}}
    server = ServerProcess(tmp_path, config=config).start()
    try:
        tag = "m" + uuid.uuid4().hex[:10]
        conns = {name: send(server, path, body(f"{HANG} {tag} {name}")) for name, (path, body, _) in RUNS.items()}
        quick = send(server, "/api/v1/prompt", {"backend": "codex", "prompt": f"FAKE_DELAY=1 {tag} quick"})
        expected = sum(count for _, _, count in RUNS.values()) + 1
        assert wait_for(lambda: len([c for c in fake_clis.calls() if tag in (c.get("prompt") or "")]) == expected,
                        within=30), fake_clis.calls()
        groups = [c["pgid"] for c in fake_clis.calls() if tag in (c.get("prompt") or "")]

        server.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: refused(server), within=5), "a new connection is still served after SIGTERM"
        answer = quick.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["output"].endswith("quick"), \
            "a run that finishes within the grace answers normally"
        for name, conn in conns.items():
            response = conn.getresponse()
            check_answer(name, response.status, response.read().decode())
        assert server.proc.wait(GRACE + 5) == 0, server.stderr_text()
    finally:
        server.stop()
    assert wait_groups_gone(*groups, within=1), "CLI process groups outlived the server"


def test_sigint_ends_the_runs_at_once(tmp_path, fake_clis):
    server = ServerProcess(tmp_path, config={"server": {"shutdown_grace_secs": 600}}).start()
    try:
        conn = send(server, "/api/v1/prompt", {"backend": "claude", "prompt": HANG, "output_format": "stream-json"})
        assert wait_for(lambda: fake_clis.calls(), within=30)
        group = fake_clis.last()["pgid"]
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(20) == 0, "far sooner than the 600 s grace"
        conn.close()
    finally:
        server.stop()
    assert wait_groups_gone(group, within=1)
