"""A client that leaves a stream while the CLI is silent takes every CLI process group of its request
with it at once, however long the keep-alive interval: every kind of stream (native NDJSON
prompt, parallel/compare NDJSON, OpenAI chat and Responses SSE, Anthropic SSE), under `clinvk serve`, under
`gunicorn -c deploy/gunicorn.conf.py` and through nginx with deploy/nginx.conf.

The fake CLIs print their first lines and hang (FAKE_HANG) with a child in their group
(FAKE_SPAWN_CHILD); the keep-alive interval is an hour, so nothing is written while they hang.
"""

from __future__ import annotations

import json
import socket
import uuid

import pytest

from tests.helpers import group_alive, wait_for, wait_groups_gone
from tests.server_process import ServerProcess
from tests.test_deploy import FakeLog, Gunicorn, Nginx, fake_env

pytestmark = pytest.mark.gunicorn

HOUR = 3600
# The target: every group gone within 1 s of the client's close (a bound, not a benchmark).
GONE_WITHIN = 1.0
HANG = "FAKE_HANG FAKE_SPAWN_CHILD"


def chat(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


# kind → (path, body for a prompt, how many CLIs the request starts)
STREAMS = {
    "native": ("/api/v1/prompt", lambda p: {"backend": "claude", "prompt": p, "output_format": "stream-json"}, 1),
    "parallel": ("/api/v1/parallel", lambda p: {"output_format": "stream-json", "tasks": [
        {"backend": "claude", "prompt": p}, {"backend": "codex", "prompt": p}]}, 2),
    "compare": ("/api/v1/compare", lambda p: {"prompt": p, "backends": ["gemini", "codex"],
                                              "output_format": "stream-json"}, 2),
    "openai": ("/openai/v1/chat/completions",
               lambda p: {"model": "codex", "stream": True, "messages": chat(p)}, 1),
    "responses": ("/openai/v1/responses", lambda p: {"model": "claude", "stream": True, "input": p}, 1),
    "anthropic": ("/anthropic/v1/messages",
                  lambda p: {"model": "gemini", "max_tokens": 10, "stream": True, "messages": chat(p)}, 1),
}


def open_stream(port: int, path: str, body: dict) -> socket.socket:
    """Send the request on a raw socket and read until the response's first bytes of body came."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    received = b""
    while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) == 0:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed early: {received!r}"
        received += chunk
    assert received.startswith(b"HTTP/1.1 200"), received[:500]
    return sock


def leave_while_silent(port: int, log: FakeLog, kind: str) -> None:
    path, body, count = STREAMS[kind]
    tag = "m" + uuid.uuid4().hex[:12]
    sock = open_stream(port, path, body(f"{HANG} {tag}"))
    try:
        calls = []

        def started() -> bool:
            calls[:] = [c for c in log.calls() if tag in (c.get("prompt") or "")]
            return len(calls) == count

        assert wait_for(started, within=30), f"expected {count} CLI runs, got {calls}"
        groups = [c["pgid"] for c in calls]
        assert all(group_alive(g) for g in groups), "the CLIs run while the client waits"
    finally:
        sock.close()  # the client leaves; the CLIs are silent, no keep-alive is due for an hour
    assert wait_groups_gone(*groups, within=GONE_WITHIN), \
        f"CLI groups {[g for g in groups if group_alive(g)]} still run after the client left"


@pytest.fixture(scope="module")
def serve(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    env, log = fake_env(tmp)
    config = {"server": {"keepalive_interval_secs": HOUR, "request_timeout_secs": 120}}
    with ServerProcess(tmp, config=config, env=env) as server:
        yield server, log


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory):
    """gunicorn with deploy/gunicorn.conf.py, and nginx with deploy/nginx.conf in front of it."""
    tmp = tmp_path_factory.mktemp("nginx-stack")
    env, log = fake_env(tmp)
    gunicorn = Gunicorn(tmp / "gunicorn", env)
    gunicorn.env["CLINVK_SERVER__KEEPALIVE_INTERVAL_SECS"] = str(HOUR)
    nginx = Nginx(tmp / "nginx", gunicorn.port)
    try:
        gunicorn.start()
        nginx.start()
        yield gunicorn, nginx, log
    finally:
        nginx.stop()
        gunicorn.stop()


@pytest.mark.parametrize("kind", list(STREAMS))
def test_clinvk_serve(serve, kind):
    server, log = serve
    leave_while_silent(server.port, log, kind)
    assert server.post("/api/v1/prompt", {"backend": "claude", "prompt": "hi"}).json()["output"] == "echo: hi"


@pytest.mark.parametrize("kind", list(STREAMS))
def test_gunicorn_with_the_deploy_config(behind_nginx, kind):
    gunicorn, _, log = behind_nginx
    leave_while_silent(gunicorn.port, log, kind)


@pytest.mark.parametrize("kind", list(STREAMS))
def test_through_nginx(behind_nginx, kind):
    _, nginx, log = behind_nginx
    leave_while_silent(nginx.http_port, log, kind)
