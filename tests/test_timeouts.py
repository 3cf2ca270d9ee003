"""The four server timeouts, each where it acts:

- request_timeout_secs: the runner's deadline for a CLI run (the whole process group is killed);
- idle_timeout_secs: gunicorn's keep-alive — an idle kept-alive connection is closed;
- read_timeout_secs: SO_RCVTIMEO on the listening socket — a client that stops sending its request
  line, headers or body is cut off (408 for a body the app was reading);
- write_timeout_secs: SO_SNDTIMEO — a client that stops reading is cut off, and its stream's CLI
  is killed.

No assertion is about speed: each waits (bounded) for the outcome, never measures how long it took.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from clinvk.config import load_config
from clinvk.serve import gunicorn_options

try:
    from tests.helpers import alive, wait_for
    from tests.server_process import ServerProcess, read_response
except ImportError:  # pragma: no cover
    from helpers import alive, wait_for
    from server_process import ServerProcess, read_response


def test_gunicorn_gets_the_idle_timeout_and_the_socket_hooks(tmp_path):
    config = load_config(env={"CLINVK_HOME": str(tmp_path)},
                         overrides={"server": {"idle_timeout_secs": 7, "workers": 3, "threads": 5}})
    options = gunicorn_options(config)
    assert options["keepalive"] == 7
    assert options["worker_class"] == "gthread" and options["workers"] == 3 and options["threads"] == 5
    for hook in ("when_ready", "on_starting", "child_exit", "on_exit", "post_worker_init"):
        assert callable(options[hook])


# ------------------------------------------------------------------------------ request timeout

def test_request_timeout_kills_a_hung_cli(make_app, fake_clis):
    client = make_app(server={"request_timeout_secs": 1}).test_client()
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_HANG FAKE_SPAWN_CHILD"})
    body = response.get_json()
    assert body["exit_code"] == -1
    assert "timed out after 1 s" in body["error"]
    call = fake_clis.last()
    assert wait_for(lambda: not alive(call["pid"]) and not alive(call["child_pid"]), within=10)


def test_request_timeout_ends_a_stream_with_an_error_event(make_app, fake_clis):
    client = make_app(server={"request_timeout_secs": 1, "keepalive_interval_secs": 0.2}).test_client()
    response = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_HANG",
                                                    "output_format": "stream-json"})
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert events[-1]["type"] == "done" and events[-1]["content"]["exit_code"] == -1
    assert any(e["type"] == "error" and "timed out" in e["content"]["message"] for e in events)
    assert not alive(fake_clis.last()["pid"])


# --------------------------------------------------------------------------------- idle timeout

@pytest.mark.gunicorn
def test_idle_keep_alive_connection_is_closed_after_idle_timeout(fake_clis, tmp_path):
    with ServerProcess(tmp_path, config={"server": {"idle_timeout_secs": 1}}) as server:
        sock = server.connect()
        with sock:
            request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            sock.sendall(request)
            status, headers, _ = read_response(sock)
            assert status == 200 and headers["connection"] == "keep-alive"
            sock.sendall(request)  # kept alive: a second request on the same connection works
            assert read_response(sock)[0] == 200
            sock.settimeout(15)
            assert sock.recv(1) == b""  # then, idle, the server closes it (bounded wait, not timed)


@pytest.mark.gunicorn
def test_long_idle_timeout_keeps_the_connection(fake_clis, tmp_path):
    with ServerProcess(tmp_path, config={"server": {"idle_timeout_secs": 60}}) as server:
        sock = server.connect()
        with sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock)[0] == 200
            time.sleep(2.5)  # longer than the 1 s of the test above
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock)[0] == 200


# --------------------------------------------------------------------------------- read timeout

@pytest.fixture
def read_timeout_server(fake_clis, tmp_path):
    with ServerProcess(tmp_path, config={"server": {"read_timeout_secs": 1}}) as server:
        yield server


@pytest.mark.gunicorn
def test_a_body_that_stops_arriving_gets_408(read_timeout_server, fake_clis):
    sock = read_timeout_server.connect()
    with sock:
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"backend\": \"claude\",")
        status, headers, body = read_response(sock, timeout=20)
    assert status == 408
    assert "server.read_timeout_secs" in json.loads(body)["detail"]
    assert fake_clis.calls() == []
    assert read_timeout_server.get("/health").status_code == 200  # the server is fine


@pytest.mark.gunicorn
def test_a_chunked_body_that_stops_arriving_gets_408(read_timeout_server, fake_clis):
    sock = read_timeout_server.connect()
    with sock:
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n")
        status, _, _ = read_response(sock, timeout=20)
    assert status == 408
    assert fake_clis.calls() == []


@pytest.mark.gunicorn
def test_headers_that_stop_arriving_close_the_connection(read_timeout_server):
    sock = read_timeout_server.connect()
    with sock:
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and then nothing
        sock.settimeout(20)
        assert sock.recv(65536) == b""  # closed by the server, no thread held forever
    assert wait_for(lambda: "closed a connection: the client sent or accepted nothing" in
                    read_timeout_server.stderr_text(), within=10)
    assert "Traceback" not in read_timeout_server.stderr_text()  # a slow client is not a server error
    assert read_timeout_server.get("/health").status_code == 200


# -------------------------------------------------------------------------------- write timeout

@pytest.mark.gunicorn
def test_a_client_that_stops_reading_is_cut_off_and_its_cli_killed(fake_clis, tmp_path):
    config = {"server": {"write_timeout_secs": 1, "request_timeout_secs": 120}}
    with ServerProcess(tmp_path, config=config) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small, so the server's sends block soon
        sock.connect(("127.0.0.1", server.port))
        with sock:
            body = json.dumps({"backend": "claude", "output_format": "stream-json",
                               "prompt": "FAKE_BIG=40000000 FAKE_CHUNKS=4000 FAKE_CHUNK_DELAY=0.001 x"}).encode()
            sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert wait_for(lambda: len(fake_clis.calls()) == 1, within=20)
            pid = fake_clis.last()["pid"]
            # Never read: the server's writes stall, fail after write_timeout_secs, and the stream's
            # CLI (still producing 40 MB) is killed with its connection.
            assert wait_for(lambda: not alive(pid), within=60)
        assert wait_for(lambda: "closed a connection" in server.stderr_text(), within=10)
        assert server.get("/health").status_code == 200
    assert "Traceback" not in server.stderr_text()
