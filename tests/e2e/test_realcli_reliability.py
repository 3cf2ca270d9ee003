"""Nothing left running, with the genuine CLIs behind `clinvk serve`: a client that leaves a stream
while the vendor API (a loopback stub in hang mode) never answers takes the CLI's process group with
it, and SIGTERM with a hung run ends it within the shutdown grace, answers the client with an error
and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid

import pytest

from tests.helpers import process_groups_under, wait_for, wait_groups_gone
from tests.server_process import ServerProcess

pytestmark = [pytest.mark.realcli, pytest.mark.gunicorn]

BACKENDS = ["claude", "codex", "gemini"]
GONE_WITHIN = 1.0  # the target: the group is gone within 1 s of the client's close
GRACE = 2


def start_run(server: ServerProcess, backend: str, prompt: str, stream: bool) -> socket.socket:
    body = {"backend": backend, "prompt": prompt, "ephemeral": True}
    if stream:
        body["output_format"] = "stream-json"
    data = json.dumps(body).encode()
    sock = server.connect(timeout=60)
    sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return sock


def waiting_on_the_stub(stub, tag: str) -> bool:
    """The CLI sent its model request (the stub holds it and never answers)."""
    return wait_for(lambda: any(tag in (r.get("user_text") or "") for r in stub.requests), within=60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_client_leaves_while_the_vendor_is_silent(realcli_config, stubs, tmp_path, backend):
    stubs[backend].set_mode("hang")
    # No warm pool: its standby CLI for the next request would rightly outlive this one's.
    config = {**realcli_config, "server": {"request_timeout_secs": 120, "keepalive_interval_secs": 3600},
              "run": {"warm_pool": {"enabled": False}}}
    with ServerProcess(tmp_path, config=config) as server:
        tag = "m" + uuid.uuid4().hex[:10]
        sock = start_run(server, backend, f"think about {tag}", stream=True)
        try:
            assert waiting_on_the_stub(stubs[backend], tag), stubs[backend].requests
            groups = process_groups_under(server.proc.pid)  # the CLI's, and any a helper of it made
            assert groups
            print(f"{backend}: groups {groups}: " + ", ".join(
                open(f"/proc/{g}/cmdline", "rb").read().replace(b"\0", b" ")[:80].decode(errors="replace")
                for g in groups if os.path.exists(f"/proc/{g}")))
        finally:
            sock.close()
        closed = time.monotonic()
        assert wait_groups_gone(*groups, within=GONE_WITHIN), f"{backend} still runs after the client left"
        print(f"{backend}: group gone {time.monotonic() - closed:.3f} s after the close")


def test_sigterm_with_a_hung_codex_run(realcli_config, stubs, tmp_path):
    stubs["codex"].set_mode("hang")
    config = {**realcli_config, "server": {"request_timeout_secs": 120, "shutdown_grace_secs": GRACE}}
    server = ServerProcess(tmp_path, config=config).start()
    try:
        tag = "m" + uuid.uuid4().hex[:10]
        sock = start_run(server, "codex", f"think about {tag}", stream=False)
        assert waiting_on_the_stub(stubs["codex"], tag)
        groups = process_groups_under(server.proc.pid)  # the run's, and the warm pool's standby
        assert groups
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        response = b""
        sock.settimeout(GRACE + 10)
        while chunk := sock.recv(65536):
            response += chunk
        assert server.proc.wait(GRACE + 5) == 0, server.stderr_text()
        print(f"codex: SIGTERM → exit {time.monotonic() - signalled:.3f} s (grace {GRACE} s)")
    finally:
        server.stop()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), response[:500]
    problem = json.loads(body)
    assert problem["status"] == 503 and problem["error"] == "shutting_down", problem
    assert wait_groups_gone(*groups, within=1), "the CLI outlived the server"
