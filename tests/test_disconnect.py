"""A client that hangs up on a non-streaming request ends its CLI run (under gunicorn), instead of
the run going on until request_timeout_secs."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from clinvk.server.http.disconnect import DisconnectWatcher
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


def _post(sock, body: dict) -> None:
    data = json.dumps(body).encode()
    sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(data)).encode() + b"\r\n\r\n" + data)


def test_hang_up_on_a_kept_alive_connection_ends_its_later_run(server, fake_clis):
    """The connection is watched from its first request on; a later request's run still ends when
    the client leaves."""
    sock = server.connect()
    _post(sock, {"backend": "claude", "prompt": "hi"})
    reply = b""
    while b"echo: hi" not in reply:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the kept-alive connection"
        reply += chunk
    _post(sock, {"backend": "claude", "prompt": "FAKE_HANG"})
    assert wait_for(lambda: len(fake_clis.calls()) == 2, within=30)
    call = fake_clis.last()
    assert alive(call["pid"])
    sock.close()
    assert wait_for(lambda: not alive(call["pid"]) and not alive(call["child_pid"]), within=20)


@pytest.mark.parametrize("reused_fd", [False, True])
def test_a_hang_up_between_two_requests_cancels_the_next_one(reused_fd):
    """A registered connection's edge-triggered hang-up event fires once: when it comes while no
    request is watched, the next request on the connection learns it at once. A new socket on a
    closed socket's fd number is watched afresh."""
    watcher = DisconnectWatcher()
    ours, peer = socket.socketpair()
    try:
        watcher.add(ours, lambda reason: None)()  # a first request, finished: the socket stays registered
        if reused_fd:
            number = ours.fileno()
            ours.close()
            peer.close()
            ours, peer = socket.socketpair()
            assert number in (ours.fileno(), peer.fileno())
            if ours.fileno() != number:
                ours, peer = peer, ours
        peer.shutdown(socket.SHUT_WR)
        if not reused_fd:
            assert wait_for(lambda: ours.fileno() in watcher._signalled, within=5)
        cancelled = threading.Event()
        forget = watcher.add(ours, lambda reason: cancelled.set())
        assert cancelled.wait(5)
        forget()
    finally:
        ours.close()
        peer.close()
