"""A real ``clinvk serve`` (gunicorn) as a subprocess on a free 127.0.0.1 port, for tests whose
behaviour depends on the real server: several workers, sockets, timeouts, signals (bench/run.py
starts its servers with it too).

    with ServerProcess(tmp_path, config={"server": {"metrics_enabled": True}}, workers=3) as server:
        response = server.get("/health")
        ...
    server.stderr_text()   # gunicorn's and clinvk's log lines

Each server gets its own CLINVK_HOME and YAML config file under ``tmp_path``. The environment is
the test's (so the ``fake_clis`` fixture's PATH and FAKE_* variables reach the server and its CLIs)
plus ``env``. stdout and stderr go to files (never pipes a busy server could fill).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent


# The same as environment variables, for a clinvk started without a config file of ours.
FAKE_KNOBS_ENV = {f"CLINVK_BACKENDS__{name}__PASS_ENV": "FAKE_*" for name in ("CLAUDE", "CODEX", "GEMINI")}


def with_fake_knobs(config: dict[str, Any] | None) -> dict[str, Any]:
    """``config`` with ``backends.<name>.pass_env: [FAKE_*]`` unless it sets its own."""
    config = dict(config or {})
    backends = {name: dict(section or {}) for name, section in (config.get("backends") or {}).items()}
    for name in ("claude", "codex", "gemini"):
        backends.setdefault(name, {}).setdefault("pass_env", ["FAKE_*"])
    config["backends"] = backends
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerExited(RuntimeError):
    pass


class ServerProcess:
    def __init__(self, tmp_path: Path, *, config: dict[str, Any] | None = None, env: dict[str, str] | None = None,
                 workers: int = 1, threads: int | None = None, name: str = "server", start_timeout: float = 30.0,
                 wait_ready: bool = True, hostname: str | None = None):
        """``hostname``: run the server in a UTS namespace of its own with this host name (as a
        separate machine would be: turn-lease holders and jobs name their host)."""
        self.hostname = hostname
        self.dir = Path(tmp_path) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.home = self.dir / "home"
        self.home.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = self.dir / "config.yaml"
        config = dict(config or {})
        # The fake CLIs log to the test's own directory, which the sandbox hides: tests that mean
        # the sandbox say so (run.sandbox).
        config["run"] = {"sandbox": "off", **config.get("run", {})}
        # The fake CLIs' knobs (FAKE_*) pass clinvk's CLI environment allowlist.
        self.config_path.write_text(yaml.safe_dump(with_fake_knobs(config)))
        self.workers = workers
        self.threads = threads
        self.start_timeout = start_timeout
        self.wait_ready = wait_ready
        # Nothing of the caller's own clinvk settings (CLINVK_*) leaks in: the config file says it all.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
        self.env = {**inherited, "CLINVK_HOME": str(self.home), "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), self.env.get("PYTHONPATH", "")) if p)
        self.stdout_path = self.dir / "stdout.log"
        self.stderr_path = self.dir / "stderr.log"
        self.proc: subprocess.Popen | None = None
        self.session = requests.Session()
        self.returncode: int | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> "ServerProcess":
        argv = [sys.executable, "-m", "clinvk.cli", "serve", "--config", str(self.config_path),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        if self.threads:
            argv += ["--threads", str(self.threads)]
        if self.hostname:  # sh execs the server: self.proc is still the server's own pid
            argv = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', self.hostname, *argv]
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, env=self.env, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err)
        if self.wait_ready:
            self.wait_until_ready()
        return self

    def wait_until_ready(self) -> None:
        """Until every worker answers: /health from ``workers`` distinct pids is not observable, so
        wait for /health and for gunicorn's "Booting worker" lines."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise ServerExited(f"clinvk serve exited with {self.proc.returncode}:\n{self.stderr_text()}")
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200 and \
                        self.stderr_text().count("Booting worker") >= self.workers:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"clinvk serve did not become ready:\n{self.stderr_text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40.0) -> int:
        if self.proc is None:
            return self.returncode or 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.returncode = self.proc.returncode
        self.session.close()
        return self.returncode

    def wait_exit(self, timeout: float = 30.0) -> int:
        self.returncode = self.proc.wait(timeout)
        return self.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- output ----------------------------------------------------------------------------------

    def stdout_text(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def request_log(self) -> list[dict[str, str]]:
        """The ``request ...`` log lines, parsed (logfmt: key=value, values maybe quoted)."""
        import shlex
        lines = []
        for line in self.stderr_text().splitlines():
            marker = "clinvk.request: request "
            if marker in line:
                fields = {}
                for token in shlex.split(line.split(marker, 1)[1]):
                    key, _, value = token.partition("=")
                    fields[key] = value
                lines.append(fields)
        return lines

    # -- HTTP ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, fresh: bool = False, timeout: float = 60.0,
                **kwargs) -> requests.Response:
        """``fresh``: on a new connection (spreads requests over the workers)."""
        if fresh:
            kwargs.setdefault("headers", {})
            kwargs["headers"] = {**kwargs["headers"], "Connection": "close"}
            return requests.request(method, self.url + path, timeout=timeout, **kwargs)
        return self.session.request(method, self.url + path, timeout=timeout, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs) -> requests.Response:
        if body is not None:
            kwargs["data"] = body if isinstance(body, (bytes, str)) else json.dumps(body)
            kwargs.setdefault("headers", {})
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs["headers"]}
        return self.request("POST", path, **kwargs)

    def connect(self, timeout: float = 10.0) -> socket.socket:
        """A raw socket to the server (for slow, chunked or half-sent requests)."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return sock


def read_response(sock: socket.socket, timeout: float = 15.0) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response (status, lower-cased headers, body so far) from a raw socket;
    reads until the body is complete (Content-Length) or the connection closes."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        raise ConnectionError(f"no HTTP response (got {data[:200]!r})")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", -1))
    while length < 0 or len(body) < length:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionError):
            break
        if not chunk:
            break
        body += chunk
    return status, headers, body
