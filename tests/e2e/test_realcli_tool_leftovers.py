"""Nothing left running, for the shell commands the agent itself starts: each genuine CLI runs a
command the model (the loopback stub in tool mode) asks for through its shell tool, behind `clinvk
serve`, with and without the bubblewrap sandbox.

Measured with the pinned CLIs (sandbox off, tool permission granted): each runs its shell tool in a
session of its own, outside the process group clinvk ends. claude kills its tool shells when it gets
SIGTERM but not on SIGKILL; codex's (``danger-full-access``) dies with codex; gemini leaves them
running even on SIGTERM. A command that leaves the tool's shell behind
(``setsid … &``, a daemon) outlives the end of the run with all three. These tests show that it is
gone once the run is over, whatever the CLI did.
"""

from __future__ import annotations

import json
import os
import socket
import uuid

import pytest

from clinvk.specs import PromptRequest
from tests.helpers import wait_for, wait_gone
from tests.server_process import ServerProcess

pytestmark = [pytest.mark.realcli, pytest.mark.gunicorn]

BACKENDS = ["claude", "codex", "gemini"]
# What lets each CLI run a shell command without asking (the operator allows it).
UNGUARDED = {"claude": {"approval_mode": "none"}, "codex": {"sandbox_mode": "full"},
             "gemini": {"approval_mode": "none"}}


def server_config(realcli_config: dict, sandbox: str, warm: bool = False) -> dict:
    """The genuine CLIs allowed to run tools unasked; runs start cold unless ``warm``."""
    backends = {name: {**section, "allow_dangerous_flags": True}
                for name, section in realcli_config["backends"].items()}
    # claude refuses bypassPermissions as root unless it is told it runs in a sandbox.
    backends["claude"]["env"] = {**backends["claude"]["env"], "IS_SANDBOX": "1"}
    return {**realcli_config, "backends": backends, "run": {"sandbox": sandbox, "warm_pool": {"enabled": warm}},
            "server": {"request_timeout_secs": 120, "keepalive_interval_secs": 3600}}


def tool_processes(tag: str) -> dict[int, dict[str, int]]:
    """The live processes whose command line holds ``tag``: pid → ppid, process group, session."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if tag.encode() in cmdline and fields[0] != "Z" and cmdline.startswith(b"sleep\0"):
            found[int(entry.name)] = {"ppid": int(fields[1]), "pgrp": int(fields[2]), "sid": int(fields[3])}
    return found


def start_stream(server: ServerProcess, backend: str) -> socket.socket:
    body = {"backend": backend, "prompt": "run the command", "ephemeral": True, "output_format": "stream-json",
            **UNGUARDED[backend]}
    data = json.dumps(body).encode()
    sock = server.connect(timeout=90)
    sock.sendall(b"POST /api/v1/prompt HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(data) + data)
    return sock


@pytest.mark.parametrize("sandbox", ["off", "bwrap"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tool_command_ends_with_the_run_the_client_left(realcli_config, stubs, tmp_path, backend, sandbox):
    """The client leaves while the CLI waits for its tool (``sleep``): the tool goes with the run."""
    tag = f"600.{uuid.uuid4().int % 10**6:06d}"  # a standalone `sleep 600` is refused by claude
    stubs[backend].set_mode("tool", reply="done", command=f"echo started; sleep {tag}")
    with ServerProcess(tmp_path, config=server_config(realcli_config, sandbox)) as server:
        sock = start_stream(server, backend)
        try:
            assert wait_for(lambda: tool_processes(tag), within=90), \
                f"{backend} never ran its tool\n{server.stderr_text()[-3000:]}"
            tools = tool_processes(tag)
            print(f"{backend} (sandbox {sandbox}): tool {tools}")
        finally:
            sock.close()
        assert wait_gone(*tools, within=20), f"{backend}'s tool outlived its run: {tool_processes(tag)}"


@pytest.mark.parametrize("sandbox", ["off", "bwrap"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_daemon_the_agent_started_ends_with_the_run(realcli_config, stubs, tmp_path, backend, sandbox):
    """A command that puts itself in a session of its own and in the background (``setsid … &``)
    outlives the CLI; the run is finished, normally, and it is gone."""
    tag = f"600.{uuid.uuid4().int % 10**6:06d}"
    stubs[backend].set_mode("tool", reply="done",
                            command=f"setsid sleep {tag} >/dev/null 2>&1 </dev/null & echo started")
    with ServerProcess(tmp_path, config=server_config(realcli_config, sandbox)) as server:
        body = {"backend": backend, "prompt": "start the daemon", "ephemeral": True, **UNGUARDED[backend]}
        response = server.post("/api/v1/prompt", body, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["output"] == "done", response.text
        # The model got the tool's output back: the command ran.
        assert any("started" in json.dumps(r["body"]) for r in stubs[backend].requests[1:]), stubs[backend].requests
        print(f"{backend} (sandbox {sandbox}): left at the response: {tool_processes(tag)}")
        assert wait_for(lambda: not tool_processes(tag), within=10), \
            f"{backend}'s daemon outlived its run: {tool_processes(tag)}"


@pytest.mark.parametrize("backend", ["claude", "codex"])
def test_a_tool_command_ends_with_a_cancelled_warm_run(make_app, realcli_config, stubs, tmp_path, backend):
    """A pooled CLI is ended with SIGKILL at once (claude then has no chance to end its tool shells),
    in an app without a gunicorn master: the leftovers are looked for in all of /proc."""
    app = make_app(**server_config(realcli_config, "off", warm=True))
    service = app.extensions["clinvk.service"]
    workdir = tmp_path / "work"
    workdir.mkdir()
    request = dict(prompt="run the command", backend=backend, ephemeral=True, stream=True, workdir=str(workdir),
                   **UNGUARDED[backend])
    stubs[backend].set_mode("tool", reply="done", command="echo warming up")
    first = service.prepare(PromptRequest(**request)).start_stream()
    try:
        assert [e for e in first.events(3600) if e is not None][-1].type == "done"
    finally:
        first.close()
    assert wait_for(lambda: service.warm_pool.idle() == 1, 60), "the pool started no CLI for the next run"

    tag = f"600.{uuid.uuid4().int % 10**6:06d}"
    stubs[backend].set_mode("tool", reply="done", command=f"echo started; sleep {tag}")
    run = service.prepare(PromptRequest(**request)).start_stream()
    try:
        assert service.warm_pool.counts["hit"] == 1
        assert wait_for(lambda: tool_processes(tag), within=60), f"{backend} never ran its tool"
        tools = tool_processes(tag)
        print(f"{backend} (warm): tool {tools}")
    finally:
        run.cancel("test done")
        run.close()
    assert wait_gone(*tools, within=20), f"{backend}'s tool outlived its warm run: {tool_processes(tag)}"
