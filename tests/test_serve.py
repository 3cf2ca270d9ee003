"""`clinvk serve` and `clinvk version` as real subprocesses on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.server_process import FAKE_KNOBS_ENV

pytestmark = pytest.mark.gunicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clinvk(*args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clinvk.cli", *args], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_http(url: str, within: float = 20.0) -> dict:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def env(tmp_path, fake_clis):
    # Not sandboxed: the fake CLIs log to the test's directory, which the sandbox hides.
    return {**os.environ, "CLINVK_HOME": str(tmp_path / "home"), "CLINVK_RUN__SANDBOX": "off", **FAKE_KNOBS_ENV}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_banner_serves_and_exits_0_on_signal(env, sig):
    port = free_port()
    server = clinvk("serve", "--port", str(port), "--workers", "2", env=env)
    try:
        health = wait_http(f"http://127.0.0.1:{port}/health")
        assert health["status"] == "ok"
        prompt = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/prompt", method="POST",
                                        data=json.dumps({"backend": "codex", "prompt": "hi"}).encode(),
                                        headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(prompt, timeout=30) as response:
            assert json.load(response)["output"] == "echo: hi"
    finally:
        server.send_signal(sig)
        out, err = server.communicate(timeout=40)
    assert server.returncode == 0, err
    assert out.startswith(f"clinvk API server starting on http://127.0.0.1:{port}\n")
    assert "Press Ctrl+C to stop" in out
    assert "CLI runs: not sandboxed (run.sandbox is off)" in out


def test_serve_port_in_use_exits_1_with_one_line(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = clinvk("serve", "--port", str(port), env=env)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 1
    assert err.strip() == f"Error: cannot listen on 127.0.0.1:{port}: address already in use"


def test_serve_bad_config_names_the_key(env, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  prot: 9000\n")
    server = clinvk("serve", "--config", str(config), env=env)
    out, err = server.communicate(timeout=20)
    assert server.returncode == 1
    assert "server.prot" in err and "server.port" in err and len(err.strip().splitlines()) == 1


def test_serve_sigterm_during_runs_leaves_no_cli_behind(env, fake_clis):
    port = free_port()
    server = clinvk("serve", "--port", str(port), env={**env, "FAKE_SPAWN_CHILD": "1"})
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        body = json.dumps({"backend": "claude", "prompt": "FAKE_HANG", "output_format": "stream-json"}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            received = b""
            while b'"init"' not in received:
                received += sock.recv(4096)
            call = fake_clis.last()
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=40)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0
    for pid in (call["pid"], call["child_pid"]):
        assert not os.path.exists(f"/proc/{pid}") or "State:\tZ" in open(f"/proc/{pid}/status").read()


def test_version(env):
    proc = clinvk("version", env=env)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out.startswith("clinvk ")


def test_start_banner_lists_every_endpoint_of_the_three_apis(app):
    import re

    from clinvk.serve import BANNER
    listed = set(re.findall(r"(?<![:/\w])/[\w/.]+", BANNER))  # paths, not the URL in the first line
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    assert listed <= rules, listed - rules  # nothing listed that does not exist
    # Every endpoint of the three API styles without a path parameter is listed (not the aliases).
    main = {r for r in rules if r.startswith(("/api/v1/", "/openai/v1/", "/anthropic/v1/"))
            and "<" not in r and r != "/anthropic/v1/v1/messages"}
    assert main <= listed, main - listed
