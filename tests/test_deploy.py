"""deploy/: each file proven with the real thing where this machine has it.

- nginx (deploy/nginx.conf, TLS lines switched on with a throw-away certificate) in front of gunicorn
  (deploy/gunicorn.conf.py, two workers) and the fake CLIs: streams of all three API styles arrive
  while the CLI is still writing them, over plain HTTP and TLS; bodies over the limit get 413 in the
  API's own shape; a client that goes away takes its CLI (and the CLI's child) with it; request ids
  and forwarded addresses pass; prometheus multiprocess metrics add up over the workers.
- gunicorn: the config loads (--check-config) and takes clinvk's hooks; SIGTERM during runs (gunicorn
  started through deploy/entrypoint.sh, as in the container) ends the runs, leaves no CLI process
  behind and exits 0; gunicorn tells a systemd-style NOTIFY_SOCKET that it is ready.
- systemd: deploy/clinvk.service passes `systemd-analyze verify` and `security --offline`, its
  ExecStart line runs, its stop timeout is above gunicorn's graceful timeout.
- container: deploy/Containerfile passes hadolint (built and run by tests/test_container.py),
  pins the same CLI versions as scripts/install-clis.sh; deploy/entrypoint.sh passes shellcheck.
- launchd: deploy/com.clinvk.server.plist is a valid plist whose command starts the server.

The tools (nginx, systemd-analyze, hadolint, shellcheck, openssl) are installed by scripts/test.sh;
a missing tool fails these tests rather than skipping them.
"""

from __future__ import annotations

import configparser
import http.client
import json
import os
import plistlib
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.helpers import alive, wait_for
import requests

from clinvk.config import ServerConfig
from tests.server_process import FAKE_KNOBS_ENV, free_port

pytestmark = pytest.mark.gunicorn

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
FAKES = ROOT / "tests" / "fakes"
GUNICORN_CONF = DEPLOY / "gunicorn.conf.py"
DEFAULTS = ServerConfig()
# On SIGTERM the server exits within server.shutdown_grace_secs + 5 s: stop timeouts must exceed it.
STOP_WITHIN_DEFAULT = DEFAULTS.shutdown_grace_secs + 5


def tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    assert path, f"{name} is not installed: scripts/test.sh installs it (these tests must not skip)"
    return path


# -- processes and the fake CLIs' log ------------------------------------------------------------------

def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    assert wait_for(condition, within), f"not within {within} s: {what}"


class FakeLog:
    """The fake CLIs' invocation log (tests/fakes/README.md): one JSON line per run."""

    def __init__(self, path: Path):
        self.path = path

    def calls(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def find(self, marker: str, within: float = 30.0) -> dict:
        """The run whose prompt holds ``marker`` (each test marks its prompts)."""
        found: list[dict] = []

        def logged() -> bool:
            found[:] = [c for c in self.calls() if marker in (c.get("prompt") or "")]
            return bool(found)

        wait_until(logged, within, f"a fake CLI run with {marker!r} in its prompt")
        return found[-1]


def fake_env(tmp: Path) -> tuple[dict[str, str], FakeLog]:
    """The environment of tests/conftest.py's fake_clis fixture, for servers started here."""
    home = tmp / "fake-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FAKE_", "CLINVK_", "PROMETHEUS_MULTIPROC_DIR", "NOTIFY_SOCKET"))}
    env.update({"PATH": f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}", "FAKE_CLI_HOME": str(home),
                "FAKE_CLI_LOG": str(tmp / "fake-cli.log"), "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)})
    env.update(FAKE_KNOBS_ENV)  # the fakes' knobs pass the CLI environment allowlist
    return env, FakeLog(tmp / "fake-cli.log")


class Gunicorn:
    """gunicorn with deploy/gunicorn.conf.py as a subprocess, logs in files."""

    def __init__(self, tmp: Path, env: dict[str, str], argv: list[str] | None = None, workers: int = 2):
        self.dir = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tmp / "clinvk-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = {**env, "CLINVK_HOME": str(self.home), "CLINVK_BIND": f"127.0.0.1:{self.port}",
                    "CLINVK_WORKERS": str(workers), "CLINVK_THREADS": "8",
                    # the fake CLIs log to the test's directory, which the sandbox hides
                    "CLINVK_RUN__SANDBOX": "off",
                    # a client that went away is noticed by its socket, not at the next keep-alive
                    "CLINVK_SERVER__KEEPALIVE_INTERVAL_SECS": "3600"}
        self.argv = argv or [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "wsgi:app"]
        self.workers = workers
        self.stdout = tmp / "gunicorn.out"
        self.stderr = tmp / "gunicorn.err"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Gunicorn":
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"gunicorn exited {self.proc.returncode}:\n{self.log()}"
            try:
                if (requests.get(self.url + "/health", timeout=2).status_code == 200
                        and self.log().count("Booting worker") >= self.workers):
                    return self
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"gunicorn did not start:\n{self.log()}"
            time.sleep(0.1)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def access_log(self) -> str:
        return self.stdout.read_text(errors="replace") if self.stdout.exists() else ""

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


# -- nginx with deploy/nginx.conf ----------------------------------------------------------------------

def make_certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run([tool("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def substitute(text: str, old: str, new: str) -> str:
    assert old in text, f"deploy/nginx.conf no longer has {old!r}: update this test's rendering"
    return text.replace(old, new)


def render_site(upstream_port: int, http_port: int, tls_port: int, redirect_port: int,
                cert: Path, key: Path, logs: Path) -> str:
    """deploy/nginx.conf with the TLS lines switched on, as its header tells an operator to do,
    every listener on 127.0.0.1 and free ports, logs in the test's directory."""
    text = (DEPLOY / "nginx.conf").read_text()
    text = re.sub(r"^#tls ", "", text, flags=re.M)
    text = substitute(text, "server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream_port};")
    text = substitute(text, "listen 127.0.0.1:8088;", f"listen 127.0.0.1:{http_port};")
    text = substitute(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{tls_port} ssl http2;")
    text = substitute(text, "listen 80;", f"listen 127.0.0.1:{redirect_port};")
    text = substitute(text, "listen [::]:443 ssl http2;\n", "")
    text = substitute(text, "listen [::]:80;\n", "")
    text = substitute(text, "/etc/letsencrypt/live/clinvk.example.com/fullchain.pem", str(cert))
    text = substitute(text, "/etc/letsencrypt/live/clinvk.example.com/privkey.pem", str(key))
    text = substitute(text, "/var/log/nginx/", f"{logs}/")
    assert not re.search(r"^\s*listen\s+(?!127\.0\.0\.1:)", text, flags=re.M), "a listener off loopback"
    return text


class Nginx:
    def __init__(self, tmp: Path, upstream_port: int):
        self.dir = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.http_port, self.tls_port, self.redirect_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.tls_url = f"https://127.0.0.1:{self.tls_port}"
        self.cert, key = make_certificate(tmp)
        (tmp / "clinvk-site.conf").write_text(
            render_site(upstream_port, self.http_port, self.tls_port, self.redirect_port, self.cert, key, tmp))
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers must reach the pytest temp dir
        (tmp / "nginx.conf").write_text(f"""{user}worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/clinvk-site.conf;
}}
""")
        self.argv = [tool("nginx"), "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")]
        self.proc: subprocess.Popen | None = None

    def check(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv + ["-t"], capture_output=True, text=True)

    def start(self) -> "Nginx":
        checked = self.check()
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "nginx.stderr", "wb"))
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"nginx exited:\n{self.error_log()}"
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"nginx did not start:\n{self.error_log()}"
            time.sleep(0.1)

    def error_log(self) -> str:
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stack:
    def __init__(self, gunicorn: Gunicorn, nginx: Nginx, log: FakeLog):
        self.gunicorn, self.nginx, self.log = gunicorn, nginx, log

    def base(self, scheme: str) -> str:
        return self.nginx.tls_url if scheme == "https" else self.nginx.url


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """nginx (deploy/nginx.conf) → gunicorn (deploy/gunicorn.conf.py, 2 workers) → fake CLIs."""
    tmp = tmp_path_factory.mktemp("deploy-stack")
    env, log = fake_env(tmp)
    prom = tmp / "prometheus"
    prom.mkdir()
    (prom / "counter_999999.db").write_bytes(b"stale")  # a previous run's file: wiped at start
    env.update({"PROMETHEUS_MULTIPROC_DIR": str(prom), "CLINVK_SERVER__METRICS_ENABLED": "true",
                "CLINVK_SERVER__TRUSTED_PROXIES": "127.0.0.1"})
    gunicorn = Gunicorn(tmp / "gunicorn", env)
    nginx = Nginx(tmp / "nginx", gunicorn.port)
    try:
        gunicorn.start()
        nginx.start()
        yield Stack(gunicorn, nginx, log)
    finally:
        nginx.stop()
        gunicorn.stop()


def marker() -> str:
    return "m" + uuid.uuid4().hex[:12]


# -- streaming through nginx -------------------------------------------------------------------------------

def native_delta(line: str) -> bool:
    event = json.loads(line)
    return event["type"] == "message" and bool((event.get("content") or {}).get("text"))


def sse_json(line: str) -> dict | None:
    if not line.startswith("data: ") or line == "data: [DONE]":
        return None
    return json.loads(line[len("data: "):])


def openai_delta(line: str) -> bool:
    frame = sse_json(line)
    return bool(frame and frame.get("choices") and frame["choices"][0]["delta"].get("content"))


def anthropic_delta(line: str) -> bool:
    frame = sse_json(line)
    return bool(frame and frame.get("type") == "content_block_delta")


STREAMS = {
    "native-ndjson": ("/api/v1/prompt", lambda p: {"backend": "claude", "prompt": p, "output_format": "stream-json"},
                      native_delta, "application/x-ndjson"),
    "openai-sse": ("/openai/v1/chat/completions",
                   lambda p: {"model": "claude", "stream": True, "messages": [{"role": "user", "content": p}]},
                   openai_delta, "text/event-stream"),
    "anthropic-sse": ("/anthropic/v1/messages",
                      lambda p: {"model": "claude", "max_tokens": 100, "stream": True,
                                 "messages": [{"role": "user", "content": p}]},
                      anthropic_delta, "text/event-stream"),
}


@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("style", list(STREAMS))
def test_stream_arrives_through_nginx_while_the_cli_still_writes_it(stack, style, scheme):
    """Each text delta reaches the client through nginx while the CLI is still running: the fake
    writes 5 pieces 0.5 s apart, and when the first ones arrive its process must still be alive.
    (Checked by hand: with `proxy_buffering on` plus `proxy_ignore_headers X-Accel-Buffering` the
    TLS cases fail, every delta arriving after the CLI exited; plain HTTP happens to pass even then.)"""
    path, body, is_delta, content_type = STREAMS[style]
    tag = marker()
    prompt = f"FAKE_CHUNKS=5 FAKE_CHUNK_DELAY=0.5 the quick brown fox jumps over the lazy dog {tag}"
    cli_alive_at_delta: list[bool] = []
    pid = None
    with requests.post(stack.base(scheme) + path, json=body(prompt), stream=True, timeout=60,
                       verify=str(stack.nginx.cert)) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith(content_type)
        assert response.headers.get("X-Request-Id")
        for line in response.iter_lines(chunk_size=None, decode_unicode=True):
            if line and is_delta(line):
                pid = pid or stack.log.find(tag)["pid"]
                cli_alive_at_delta.append(alive(pid))
    assert len(cli_alive_at_delta) >= 5, f"expected 5 deltas, got {len(cli_alive_at_delta)}"
    # The first deltas came while the CLI was still producing the rest; the stream ended after it.
    assert cli_alive_at_delta[0] and cli_alive_at_delta[1], cli_alive_at_delta
    wait_until(lambda: not alive(pid), 10, "the CLI is gone after its stream ended")


def test_tls_redirect_server_sends_plain_http_to_https(stack):
    response = requests.get(f"http://127.0.0.1:{stack.nginx.redirect_port}/health",
                            headers={"Host": "clinvk.example.com"}, allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == "https://clinvk.example.com/health"


def test_client_abort_through_nginx_ends_the_cli_and_its_children(stack):
    tag = marker()
    body = json.dumps({"backend": "claude", "output_format": "stream-json",
                       "prompt": f"FAKE_HANG FAKE_SPAWN_CHILD {tag}"}).encode()
    sock = socket.create_connection(("127.0.0.1", stack.nginx.http_port), timeout=30)
    try:
        sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while b'"init"' not in received:  # the first NDJSON event: the CLI runs and hangs
            chunk = sock.recv(65536)
            assert chunk, f"connection closed early: {received!r}"
            received += chunk
            if b"\r\n\r\n" in received:
                assert received.startswith(b"HTTP/1.1 200"), received[:500]
        call = stack.log.find(tag)
        pids = [call["pid"], call["child_pid"]]
        assert all(alive(p) for p in pids), "the CLI and its child run while the client waits"
    finally:
        sock.close()  # the client goes away
    wait_until(lambda: not any(alive(p) for p in pids), 30,
               f"the CLI {pids[0]} and its child {pids[1]} end after the client left")


# -- request size --------------------------------------------------------------------------------------------

LIMIT = DEFAULTS.max_request_body_bytes


def padded(body: dict, size: int) -> bytes:
    """``body`` as JSON, padded with whitespace (still valid JSON) to exactly ``size`` bytes."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


@pytest.mark.parametrize("path, check", [
    ("/api/v1/prompt", lambda r: r.headers["Content-Type"] == "application/problem+json"
        and r.json()["status"] == 413 and r.json()["error"] == "request_too_large"),
    ("/openai/v1/chat/completions", lambda r: r.json()["error"]["code"] == "request_too_large"),
    ("/anthropic/v1/messages", lambda r: r.json()["type"] == "error"
        and r.json()["error"]["type"] == "request_too_large"),
])
def test_body_over_the_limit_is_413_in_the_apis_own_shape(stack, path, check):
    response = requests.post(stack.nginx.url + path, data=padded({"x": 1}, LIMIT + 1),
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert check(response), response.text


def test_body_at_the_limit_passes_nginx_and_the_app(stack):
    """nginx's client_max_body_size and server.max_request_body_bytes are the same number."""
    tag = marker()
    response = requests.post(stack.nginx.url + "/api/v1/prompt",
                             data=padded({"backend": "codex", "prompt": f"hi {tag}"}, LIMIT),
                             headers={"Content-Type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == f"echo: hi {tag}"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_docs_try_it_out_is_same_origin_through_nginx_and_other_sites_are_refused(stack, scheme):
    """A browser on /docs sends Origin: <the nginx URL>; nginx passes the Host it got (X-Forwarded-Host)."""
    base = stack.base(scheme)
    verify = str(stack.nginx.cert)
    assert requests.get(base + "/docs", timeout=10, verify=verify).status_code == 200
    tag = marker()
    body = {"backend": "codex", "prompt": f"hi {tag}"}
    same = requests.post(base + "/api/v1/prompt", json=body, timeout=60, verify=verify,
                         headers={"Origin": base, "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200, same.text
    evil = requests.post(base + "/api/v1/prompt", json={**body, "prompt": f"evil {tag}"}, timeout=60, verify=verify,
                         headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"})
    assert evil.status_code == 403, evil.text
    rebound = requests.get(base + "/api/v1/backends", timeout=10, verify=verify,
                           headers={"Host": f"rebind.evil.example:{base.rsplit(':', 1)[1]}"})
    assert rebound.status_code == 400 and "allowed_hosts" in rebound.text, rebound.text
    assert stack.log.calls() and not [c for c in stack.log.calls() if f"evil {tag}" in (c.get("prompt") or "")]


class Tricklers:
    """``count`` connections that send a request's header one byte every half second and never finish
    it (a slow-loris client), kept up until the block ends."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, name="tricklers", daemon=True)

    def __enter__(self) -> "Tricklers":
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            self.sockets.append(sock)
        self.thread.start()
        return self

    def _trickle(self) -> None:
        while not self.stop.wait(0.5):
            for sock in self.sockets:
                try:
                    sock.sendall(b"a")
                except OSError:
                    pass

    def alive(self) -> int:
        """How many of the connections the server has not closed."""
        alive = 0
        for sock in self.sockets:
            try:
                sock.settimeout(0)
                alive += sock.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        return alive

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_nginx_absorbs_50_trickling_clients_while_health_answers(stack):
    """A default `clinvk serve --threads 2` is stalled by two clients that trickle header bytes (each
    holds a thread; see README, "Slow clients"). nginx reads whole headers before it proxies, so
    behind the deploy config 50 such clients never reach gunicorn (8 threads here) and /health answers.
    The figure is printed; the 5 s timeout is only a failure guard."""
    with Tricklers(stack.nginx.http_port, 50) as tricklers:
        time.sleep(1.5)  # a few trickled bytes each
        durations = []
        for _ in range(5):
            started = time.monotonic()
            response = requests.get(stack.nginx.url + "/health", timeout=5)
            durations.append(time.monotonic() - started)
            assert response.status_code == 200 and response.json()["status"] in ("ok", "degraded")
        assert tricklers.alive() == 50, "the slow clients were still connected, still trickling"
    print(f"/health through nginx with 50 trickling clients: max {max(durations) * 1000:.0f} ms over 5 requests")


# -- headers, logs, metrics ------------------------------------------------------------------------------

def test_request_ids_and_client_address_pass_through(stack):
    sent = requests.get(stack.nginx.url + "/health", headers={"X-Request-Id": "req-from-client-1"}, timeout=10)
    assert sent.headers["X-Request-Id"] == "req-from-client-1"
    made = requests.get(stack.nginx.url + "/api/v1/backends", timeout=10)
    request_id = made.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), "nginx's $request_id, passed to and echoed by clinvk"
    wait_until(lambda: f"request_id={request_id}" in (stack.nginx.dir / "clinvk.access.log").read_text(), 10,
               "nginx logs the same id")
    wait_until(lambda: f"request_id={request_id}" in stack.gunicorn.access_log(), 10, "gunicorn logs it")

    requests.get(stack.nginx.url + "/api/v1/backends", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=10)
    wait_until(lambda: 'forwarded_for="203.0.113.7, 127.0.0.1"' in stack.gunicorn.access_log(), 10,
               "nginx appends the client's address to X-Forwarded-For")


def test_metrics_add_up_over_workers_and_stay_on_loopback(stack):
    assert not (Path(stack.gunicorn.env["PROMETHEUS_MULTIPROC_DIR"]) / "counter_999999.db").exists(), \
        "on_starting wipes the previous run's files"
    for _ in range(6):  # new connections: spread over both workers
        requests.get(stack.nginx.url + "/api/v1/backends", headers={"Connection": "close"}, timeout=10)
    metrics = requests.get(stack.nginx.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    counts = re.findall(r'^clinvk_http_requests_total\{[^}]*route="/api/v1/backends"[^}]*\} (\S+)$',
                        metrics.text, flags=re.M)
    assert counts and sum(float(c) for c in counts) >= 6, metrics.text[:2000]


def test_nginx_config_is_consistent_with_clinvk_defaults():
    text = (DEPLOY / "nginx.conf").read_text()
    size = re.search(r"^\s*client_max_body_size (\d+)m;", text, flags=re.M)
    assert size and int(size.group(1)) * 1024 * 1024 == DEFAULTS.max_request_body_bytes
    api = text[text.index("location ~ ^/(?<clinvk_api>"):]
    api = api[:api.index("}")]
    read_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", api).group(1))
    assert read_timeout > DEFAULTS.request_timeout_secs > DEFAULTS.keepalive_interval_secs
    assert "proxy_buffering off;" in api
    assert re.search(r"^\s*proxy_ignore_client_abort off;", text, flags=re.M)
    assert re.search(r'^\s*proxy_set_header Connection "";', text, flags=re.M)
    assert re.search(r"^\s*proxy_http_version 1\.1;", text, flags=re.M)
    upstream_idle = int(re.search(r"keepalive_timeout (\d+)s;", text).group(1))
    assert upstream_idle < DEFAULTS.idle_timeout_secs, "gunicorn must not close idle upstream connections first"


# -- gunicorn -----------------------------------------------------------------------------------------------

def gunicorn_settings(env: dict[str, str]) -> dict:
    """What deploy/gunicorn.conf.py sets, read in a subprocess (it configures logging)."""
    script = """
import json, runpy
settings = runpy.run_path("deploy/gunicorn.conf.py")
out = {}
for name, value in settings.items():
    if name.startswith("_") or name in ("os", "serve", "load_config"):
        continue
    out[name] = f"{value.__module__}.{value.__name__}" if callable(value) else value
print(json.dumps(out))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_gunicorn_check_config(tmp_path):
    env, _ = fake_env(tmp_path)
    env["CLINVK_HOME"] = str(tmp_path / "home")
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "-c", str(GUNICORN_CONF),
                           "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_gunicorn_config_defaults_env_and_clinvk_hooks(tmp_path):
    env, _ = fake_env(tmp_path)
    env["CLINVK_HOME"] = str(tmp_path / "home")
    settings = gunicorn_settings(env)
    assert settings["worker_class"] == "gthread"
    assert settings["bind"] == [f"{DEFAULTS.host}:{DEFAULTS.port}"]
    assert (settings["workers"], settings["threads"]) == (DEFAULTS.workers, DEFAULTS.threads)
    assert settings["graceful_timeout"] == DEFAULTS.shutdown_grace_secs + 4, "the grace + time to end the runs"
    assert settings["keepalive"] == DEFAULTS.idle_timeout_secs
    assert settings["worker_tmp_dir"] == "/dev/shm"
    assert settings["accesslog"] == "-"
    for hook in ("post_worker_init", "worker_int", "worker_abort", "worker_exit", "on_starting", "child_exit"):
        assert settings[hook] == f"clinvk.gunicorn_hooks.{hook}", f"{hook}: reuse clinvk's hook"

    env.update({"CLINVK_BIND": "127.0.0.1:9001, unix:/tmp/x.sock", "CLINVK_WORKERS": "3",
                "CLINVK_THREADS": "16", "CLINVK_SERVER__SHUTDOWN_GRACE_SECS": "8"})
    settings = gunicorn_settings(env)
    assert settings["bind"] == ["127.0.0.1:9001", "unix:/tmp/x.sock"]
    assert (settings["workers"], settings["threads"], settings["graceful_timeout"]) == (3, 16, 12)


@pytest.mark.parametrize("var, value, message", [
    ("CLINVK_WORKERS", "many", "CLINVK_WORKERS: must be an integer"),
    ("CLINVK_THREADS", "0", "CLINVK_THREADS: must be >= 1"),
    ("CLINVK_SERVER__PORT", "0", "server.port"),
])
def test_gunicorn_config_bad_settings_stop_it_with_the_name(tmp_path, var, value, message):
    env, _ = fake_env(tmp_path)
    env.update({"CLINVK_HOME": str(tmp_path / "home"), var: value})
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--check-config", "-c", str(GUNICORN_CONF),
                           "wsgi:app"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr + done.stdout
    assert "Traceback" not in done.stderr, "one line, not a traceback"


def read_notify(sock: socket.socket, within: float) -> str:
    sock.settimeout(within)
    return sock.recv(4096).decode()


def test_sigterm_during_runs_ends_them_and_exits_0(tmp_path):
    """The container's path: tini → deploy/entrypoint.sh → exec gunicorn. SIGTERM to that pid (what
    `docker stop` and `systemctl stop` with KillMode=mixed send) while three runs hang: the streams
    and the plain request get their answers, no CLI process (nor its child) is left, exit 0. On the
    way, gunicorn tells a NOTIFY_SOCKET that it is ready (systemd Type=notify)."""
    env, log = fake_env(tmp_path)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    env.update({"PYTHON": sys.executable, "CLINVK_SERVER__SHUTDOWN_GRACE_SECS": "1",
                "NOTIFY_SOCKET": str(notify_path),
                "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom" / "sub")})
    server = Gunicorn(tmp_path, env, argv=[str(DEPLOY / "entrypoint.sh")])
    try:
        server.start()
        assert "READY=1" in read_notify(notify, 10)
        assert f"Listening at: {server.url} ({server.proc.pid})" in server.log(), \
            "the entry script exec'd gunicorn: its pid is the master's"
        assert (tmp_path / "prom" / "sub").is_dir(), "the entry script makes the metrics directory"

        tags = [marker() for _ in range(3)]
        streams = []
        for tag in tags[:2]:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", "/api/v1/prompt", json.dumps(
                {"backend": "claude", "output_format": "stream-json", "prompt": f"FAKE_HANG FAKE_SPAWN_CHILD {tag}"}),
                {"Content-Type": "application/json"})
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.readline())["type"] == "init"
            streams.append((conn, response))
        plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        plain.request("POST", "/api/v1/prompt", json.dumps(
            {"backend": "codex", "prompt": f"FAKE_HANG FAKE_SPAWN_CHILD {tags[2]}"}),
            {"Content-Type": "application/json"})
        calls = [log.find(tag) for tag in tags]
        pids = [p for call in calls for p in (call["pid"], call["child_pid"])]
        assert all(alive(p) for p in pids)

        server.proc.send_signal(signal.SIGTERM)
        for conn, response in streams:
            rest = response.read().decode()  # to the end of the chunked body: the stream was ended
            events = [json.loads(line) for line in rest.splitlines() if line.strip()]
            assert events and events[-1]["type"] == "done", rest
        answer = plain.getresponse()
        assert answer.status < 600 and json.loads(answer.read()), "the plain request got an answer"
        assert server.proc.wait(60) == 0, server.log()
    finally:
        server.stop()
        notify.close()
    assert not [p for p in pids if alive(p)], "CLI processes left behind"


# -- systemd ---------------------------------------------------------------------------------------------

def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string((DEPLOY / "clinvk.service").read_text())
    return parser


def unit_values(name: str) -> list[str]:
    return re.findall(rf"^{name}=(.*)$", (DEPLOY / "clinvk.service").read_text(), flags=re.M)


def gunicorn_executable() -> str:
    path = Path(sys.executable).with_name("gunicorn")
    return str(path) if path.exists() else tool("gunicorn")


def test_systemd_unit_verifies(tmp_path):
    """systemd-analyze verify needs ExecStart's program to exist: the same unit with this machine's."""
    text = (DEPLOY / "clinvk.service").read_text()
    text = substitute(text, "/opt/clinvk/venv/bin/gunicorn", gunicorn_executable())
    copy = tmp_path / "clinvk.service"
    copy.write_text(text)
    done = subprocess.run([tool("systemd-analyze"), "verify", str(copy)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "clinvk.service" not in done.stderr, done.stderr
    # Hardened (the score counts what the CLIs allow: no MemoryDenyWriteExecute, no syscall filter).
    score = subprocess.run([tool("systemd-analyze"), "security", "--offline=true", "--threshold=45", str(copy)],
                           capture_output=True, text=True, timeout=60)
    assert score.returncode == 0, score.stdout[-500:] + score.stderr


def test_systemd_unit_settings_fit_gunicorn_and_the_clis():
    service = unit()["Service"]
    assert service["Type"] == "notify"
    assert service["KillMode"] == "mixed", "SIGTERM to the master, SIGKILL to what is left (CLIs too)"
    env = dict(value.split("=", 1) for value in unit_values("Environment"))
    stop_within = int(env.get("CLINVK_SERVER__SHUTDOWN_GRACE_SECS", DEFAULTS.shutdown_grace_secs)) + 5
    assert int(service["TimeoutStopSec"]) > stop_within, "systemd must not SIGKILL before clinvk ends the runs"
    assert "MemoryDenyWriteExecute" not in "\n".join(line.split("#")[0] for line in
                                                      (DEPLOY / "clinvk.service").read_text().splitlines())
    assert service["ProtectSystem"] == "strict"
    state = f"/var/lib/{service['StateDirectory']}"
    assert env["HOME"] == state and env["CLINVK_HOME"].startswith(state + "/"), \
        "the CLIs' state dirs and the session store are in the writable StateDirectory"
    assert env["PROMETHEUS_MULTIPROC_DIR"].startswith(f"/run/{service['RuntimeDirectory']}/")
    argv = shlex.split(service["ExecStart"])
    assert argv[1:] == ["-c", "/opt/clinvk/app/deploy/gunicorn.conf.py", "wsgi:app"]
    assert service["WorkingDirectory"] == "/opt/clinvk/app"


def test_systemd_exec_start_line_runs(tmp_path):
    """The unit's ExecStart, with its Environment= (paths moved into the test's directory), checks
    its config and app: the very command systemd runs."""
    service = unit()["Service"]
    env, _ = fake_env(tmp_path)
    for value in unit_values("Environment"):
        name, _, val = value.partition("=")
        if name != "PATH":
            env[name] = val.replace("/var/lib/clinvk", str(tmp_path / "state")).replace(
                "/run/clinvk", str(tmp_path / "run"))
    argv = shlex.split(service["ExecStart"])
    argv[0] = gunicorn_executable()
    argv = [a.replace("/opt/clinvk/app", str(ROOT)) for a in argv]
    done = subprocess.run(argv + ["--check-config"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


# -- container -----------------------------------------------------------------------------------------------

def test_containerfile_passes_hadolint():
    done = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "style",
                           str(DEPLOY / "Containerfile")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def test_containerfile_structure():
    text = (DEPLOY / "Containerfile").read_text()
    pins = dict(re.findall(r'\[(\w+)\]="(@[^"]+)"', (ROOT / "scripts" / "install-clis.sh").read_text()))
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.M))
    for name, arg in (("claude", "CLAUDE_CODE_VERSION"), ("codex", "CODEX_VERSION"), ("gemini", "GEMINI_CLI_VERSION")):
        package, version = pins[name].rsplit("@", 1)
        assert args[arg] == version, f"{name}: the image and scripts/install-clis.sh pin the same version"
        assert f'"{package}@${{{arg}}}"' in text
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--", "/app/deploy/entrypoint.sh"\]$', text, flags=re.M)
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD \[\"/app/deploy/entrypoint.sh\", \"healthcheck\"\]$", text, flags=re.M)
    user = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert user and not user[-1].startswith(("0", "root")), "runs as non-root"
    # Every COPY source from the build context (the repository root) exists.
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_entrypoint_passes_shellcheck():
    done = subprocess.run([tool("shellcheck"), str(DEPLOY / "entrypoint.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_entrypoint_healthcheck_and_commands(stack, tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    ok = subprocess.run([str(DEPLOY / "entrypoint.sh"), "healthcheck"], capture_output=True, text=True,
                        env={**env, "CLINVK_BIND": f"0.0.0.0:{stack.gunicorn.port}"}, timeout=30)
    assert ok.returncode == 0 and ok.stdout.strip() == "health: ok", ok.stdout + ok.stderr
    down = subprocess.run([str(DEPLOY / "entrypoint.sh"), "healthcheck"], capture_output=True, text=True,
                          env={**env, "CLINVK_BIND": f"127.0.0.1:{free_port()}"}, timeout=30)
    assert down.returncode == 1 and "health check failed" in down.stderr
    other = subprocess.run([str(DEPLOY / "entrypoint.sh"), sys.executable, "-m", "clinvk.cli", "version"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=30)
    assert other.returncode == 0 and other.stdout.startswith("clinvk "), other.stderr


# -- launchd -------------------------------------------------------------------------------------------------

def test_launchd_plist_is_valid_and_its_command_serves(tmp_path):
    with open(DEPLOY / "com.clinvk.server.plist", "rb") as f:
        job = plistlib.load(f)
    assert job["Label"] == "com.clinvk.server" == (DEPLOY / "com.clinvk.server.plist").stem
    assert job["RunAtLoad"] is True and job["KeepAlive"] is True
    assert job["ExitTimeOut"] > STOP_WITHIN_DEFAULT, "launchd must not SIGKILL before clinvk ends runs"
    program, *args = job["ProgramArguments"]
    assert program.startswith("/") and program.endswith("/clinvk")
    assert args[:1] == ["serve"] and "PATH" in job["EnvironmentVariables"]

    # The same arguments, on a free port, start the server; SIGTERM (launchctl stop) exits 0.
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    env, _ = fake_env(tmp_path)
    env["CLINVK_HOME"] = str(tmp_path / "home")
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "clinvk.cli", *args], env=env, cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err)
    try:
        wait_until(lambda: _health(port), 30, "clinvk serve answers /health")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, (tmp_path / "err").read_text()


def _health(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False
