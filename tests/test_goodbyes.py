"""Nothing a run started outlives it, for the ways of ending one that the other reliability tests do
not cover: the ``clinvk`` command line stopped by Ctrl+C, SIGTERM or SIGHUP, gunicorn reloading or
recycling its workers, quick stops of ``clinvk serve``, request timeouts of batches, fail-fast
batches. Each case starts fakes that leave a child in their group (``FAKE_SPAWN_CHILD``) and a
detached process outside it (``FAKE_SPAWN_DETACHED``) and checks that all of them are gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
import requests

from clinvk import leftovers
from tests.helpers import alive, wait_for, wait_gone
from tests.server_process import FAKE_KNOBS_ENV, ServerProcess
from tests.test_deploy import Gunicorn, fake_env

LEAVE_BEHIND = "FAKE_HANG FAKE_SPAWN_CHILD FAKE_SPAWN_DETACHED"


def pids_of(calls: list[dict]) -> list[int]:
    """Every process the logged fake runs started: the CLI, its child, its detached process."""
    return [call[key] for call in calls for key in ("pid", "child_pid", "detached_pid") if call.get(key)]


def kill_all(calls: list[dict]) -> None:
    """After a failed check: end what a run left, so it cannot disturb the next test."""
    for pid in pids_of(calls):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def started(fake_clis, count: int, tag: str) -> list[dict]:
    """The log entries of the ``count`` fakes whose prompt holds ``tag``, once all have started."""
    def ours():
        return [c for c in fake_clis.calls() if tag in (c.get("prompt") or "") and c.get("detached_pid")]

    assert wait_for(lambda: len(ours()) >= count, within=30), fake_clis.calls()
    return ours()


# -- the command line ------------------------------------------------------------------------------

@pytest.fixture
def cli_env(fake_clis, clinvk_home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINVK_")}
    return {**env, "CLINVK_HOME": str(clinvk_home), "CLINVK_RUN__SANDBOX": "off", **FAKE_KNOBS_ENV}


COMMANDS = {
    "prompt": (["-b", "claude"], 1),
    "prompt-stream": (["-b", "gemini", "-o", "stream-json"], 1),
    "parallel": ([], 2),
    "compare": (["compare", "--all-backends"], 3),
    "chain": ([], 1),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_command_line_stopped_leaves_no_cli(cli_env, fake_clis, tmp_path, command, sig):
    tag = uuid.uuid4().hex[:8]
    args, count = COMMANDS[command]
    prompt = f"{tag} {LEAVE_BEHIND}"
    if command == "parallel":
        tasks = tmp_path / "tasks.json"
        tasks.write_text(json.dumps({"tasks": [{"backend": b, "prompt": prompt} for b in ("claude", "codex")]}))
        args = ["parallel", "--file", str(tasks)]
    elif command == "chain":
        steps = tmp_path / "steps.json"
        steps.write_text(json.dumps([{"backend": "codex", "prompt": prompt}, {"backend": "gemini", "prompt": "later"}]))
        args = ["chain", "--file", str(steps)]
    else:
        args = [*args, prompt]
    proc = subprocess.Popen([sys.executable, "-m", "clinvk.cli", *args], env=cli_env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        calls = started(fake_clis, count, tag)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode in (130, 128 + sig), err
        assert wait_gone(*pids_of(calls), within=10), f"{command} left processes after {sig.name}"
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all(fake_clis.calls())


# -- the server ------------------------------------------------------------------------------------

def scope_of(pid: int) -> bytes:
    """The server's part of the tag a CLI process carries (``<scope>.<worker>.<n>``)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        for entry in f.read().split(b"\0"):
            if entry.startswith(leftovers.VARIABLE.encode() + b"="):
                return entry.split(b"=", 1)[1].split(b".")[0]
    raise AssertionError(f"process {pid} carries no {leftovers.VARIABLE}")


def scoped(scope: bytes) -> list[int]:
    """Every live process that a run of the server with ``scope`` started (warm CLIs included)."""
    needle = f"{leftovers.VARIABLE}=".encode() + scope + b"."
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            continue
        if (environ.startswith(needle) or b"\0" + needle in environ) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def send(server: ServerProcess, path: str, body: dict) -> socket.socket:
    """A request whose answer nobody reads until the socket is closed."""
    data = json.dumps(body).encode()
    sock = server.connect()
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


@pytest.mark.gunicorn
@pytest.mark.parametrize("goodbye", ["SIGHUP", "SIGQUIT"])
def test_a_reload_or_quick_stop_leaves_no_cli(tmp_path, fake_clis, goodbye):
    """A plain run, a stream, a job and a waiting warm CLI, all in flight: SIGHUP (gunicorn replaces
    the worker, the old one stops gracefully) or SIGQUIT (a quick stop) ends every one of them."""
    config = {"server": {"request_timeout_secs": 120, "shutdown_grace_secs": 1}}
    server = ServerProcess(tmp_path, config=config, threads=8).start()
    tag = uuid.uuid4().hex[:8]
    prompt = f"{tag} {LEAVE_BEHIND}"
    sockets: list[socket.socket] = []
    scope = b""
    try:
        warm_up = server.post("/api/v1/prompt", {"backend": "claude", "prompt": "hi", "ephemeral": True})
        assert warm_up.status_code == 200, warm_up.text
        sockets.append(send(server, "/api/v1/prompt", {"backend": "gemini", "prompt": prompt}))
        sockets.append(send(server, "/api/v1/prompt", {"backend": "claude", "prompt": prompt,
                                                       "output_format": "stream-json"}))
        job = server.post("/api/v1/jobs", {"backend": "codex", "prompt": prompt})
        assert job.status_code == 202, job.text
        calls = started(fake_clis, 3, tag)
        scope = scope_of(calls[0]["pid"])
        assert wait_for(lambda: set(scoped(scope)) - set(pids_of(calls)), within=30), "no warm CLI waits"
        worker = calls[0]["ppid"]
        if goodbye == "SIGHUP":
            os.kill(server.proc.pid, signal.SIGHUP)
            assert wait_gone(worker, within=30), "the old worker did not stop"
            assert server.get("/health", fresh=True).status_code == 200
        else:
            server.stop(signal.SIGQUIT)
        assert wait_for(lambda: not scoped(scope), within=10), \
            f"{goodbye} left processes of its runs: {scoped(scope)}"
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
        for pid in scoped(scope) if scope else []:
            os.kill(pid, signal.SIGKILL)


# -- batches ---------------------------------------------------------------------------------------

def batch(kind: str, prompt: str) -> tuple[str, dict, int]:
    """(path, body, how many CLIs it starts) of a batch whose runs all hang but one that fails."""
    if kind == "fail_fast":
        tasks = [{"backend": b, "prompt": prompt} for b in ("claude", "codex")]
        failing = prompt.replace("FAKE_HANG", "FAKE_DELAY=0.5 FAKE_FAIL=500")
        tasks.append({"backend": "gemini", "prompt": failing})
        return "/api/v1/parallel", {"tasks": tasks, "fail_fast": True}, 3
    if kind == "parallel":
        return "/api/v1/parallel", {"tasks": [{"backend": b, "prompt": prompt} for b in ("claude", "codex")]}, 2
    if kind == "compare":
        return "/api/v1/compare", {"prompt": prompt, "backends": ["claude", "codex", "gemini"]}, 3
    return "/api/v1/chain", {"steps": [{"backend": "claude", "prompt": prompt},
                                       {"backend": "gemini", "prompt": f"{prompt} {{{{previous}}}}"}]}, 2


@pytest.mark.parametrize("kind, stream", [(kind, False) for kind in ("parallel", "compare", "chain", "fail_fast")]
                         + [(kind, True) for kind in ("parallel", "compare", "fail_fast")])
def test_a_batch_that_times_out_or_fails_fast_leaves_no_cli(make_app, fake_clis, kind, stream):
    """Every task's run ends with the batch: its CLI, the CLI's child and what it detached."""
    tag = uuid.uuid4().hex[:8]
    path, body, count = batch(kind, f"{tag} {LEAVE_BEHIND}")
    if stream:
        body["output_format"] = "stream-json"
    client = make_app(server={"request_timeout_secs": 1 if kind != "fail_fast" else 60}).test_client()
    try:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        calls = started(fake_clis, count, tag)
        assert wait_gone(*pids_of(calls), within=10), f"{kind} left processes of its tasks"
    finally:
        kill_all(fake_clis.calls())


@pytest.mark.gunicorn
def test_a_worker_recycled_by_max_requests_leaves_no_cli(tmp_path):
    """gunicorn's ``--max-requests`` (allowed with deploy/gunicorn.conf.py) retires a worker with a
    stream in flight: the stream's processes end at the latest when the worker does."""
    env, log = fake_env(tmp_path)
    server = Gunicorn(tmp_path / "gunicorn", {**env, "GUNICORN_CMD_ARGS": "--max-requests 4",
                                              "CLINVK_SERVER__SHUTDOWN_GRACE_SECS": "0"}, workers=1)
    tag = uuid.uuid4().hex[:8]
    sock = None
    calls: list[dict] = []
    try:
        server.start()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        data = json.dumps({"backend": "claude", "prompt": f"{tag} {LEAVE_BEHIND}", "output_format": "stream-json"})
        sock.sendall(f"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\n\r\n{data}".encode())
        assert wait_for(lambda: [c for c in log.calls() if tag in (c.get("prompt") or "") and c.get("detached_pid")],
                        within=30)
        calls = [c for c in log.calls() if tag in (c.get("prompt") or "")]
        worker = calls[0]["ppid"]
        for _ in range(4):  # the worker's quota: it stops taking requests and retires
            requests.get(server.url + "/health", headers={"Connection": "close"}, timeout=30)
        assert wait_gone(worker, within=30), "the recycled worker did not exit"
        assert wait_gone(*pids_of(calls), within=10), "the recycled worker's stream left processes"
        assert requests.get(server.url + "/health", timeout=30).status_code == 200
    finally:
        if sock is not None:
            sock.close()
        server.stop()
        kill_all(calls)
