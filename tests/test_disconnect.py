"""A client that hangs up on a non-streaming request ends its CLI run (under gunicorn), instead of
the run going on until request_timeout_secs."""

from __future__ import annotations

import json

import pytest

from tests.helpers import alive, wait_for
from tests.server_process import ServerProcess

pytestmark = pytest.mark.gunicorn

REQUESTS = {
    "native": ("/api/v1/prompt", {"backend": "claude", "prompt": "FAKE_HANG"}),
    "openai": ("/openai/v1/chat/completions", {"model": "codex",
                                               "messages": [{"role": "user", "content": "FAKE_HANG"}]}),
    "anthropic": ("/anthropic/v1/messages", {"model": "gemini", "max_tokens": 10,
                                             "messages": [{"role": "user", "content": "FAKE_HANG"}]}),
}


@pytest.fixture
def server(tmp_path, fake_clis, monkeypatch):
    monkeypatch.setenv("FAKE_SPAWN_CHILD", "1")
    config = {"server": {"request_timeout_secs": 120}}
    with ServerProcess(tmp_path, config=config) as running:
        yield running


@pytest.mark.parametrize("api", sorted(REQUESTS))
def test_hang_up_ends_the_run(server, fake_clis, api):
    path, body = REQUESTS[api]
    data = json.dumps(body).encode()
    sock = server.connect()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    assert wait_for(lambda: fake_clis.calls(), within=30)
    call = fake_clis.last()
    assert alive(call["pid"])
    sock.close()
    # Far sooner than the 120 s run deadline: the hang-up itself ends the run.
    assert wait_for(lambda: not alive(call["pid"]) and not alive(call["child_pid"]), within=20)
    # The worker is fine and the run slot is free again.
    assert server.post("/api/v1/prompt", {"backend": "claude", "prompt": "hi"}).json()["output"] == "echo: hi"


def test_session_of_an_abandoned_run_ends_as_error(server, fake_clis):
    data = json.dumps({"backend": "claude", "prompt": "FAKE_HANG"}).encode()
    sock = server.connect()
    sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)
    assert wait_for(lambda: fake_clis.calls(), within=30)
    sock.close()

    def ended() -> bool:
        sessions = server.get("/api/v1/sessions").json()["sessions"]
        return bool(sessions) and sessions[0]["status"] == "error"

    assert wait_for(ended, within=20)
    session = server.get("/api/v1/sessions").json()["sessions"][0]
    assert "client disconnected" in session["error_message"]


def test_requests_that_finish_are_not_cancelled(server, fake_clis):
    for _ in range(20):
        body = server.post("/api/v1/prompt", {"backend": "codex", "prompt": "FAKE_DELAY=0.05 hi"}).json()
        assert body["exit_code"] == 0 and body["output"] == "echo: FAKE_DELAY=0.05 hi"
