"""Nothing a run started outlives it, for the ways of ending one that the other reliability tests do
not cover: the ``clinvk`` command line stopped by Ctrl+C or SIGTERM, gunicorn reloading or
recycling its workers, quick stops of ``clinvk serve``, request timeouts of batches, fail-fast
batches. Each case starts fakes that leave a child in their group (``FAKE_SPAWN_CHILD``) and a
detached process outside it (``FAKE_SPAWN_DETACHED``) and checks that all of them are gone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.helpers import wait_for, wait_gone
from tests.server_process import FAKE_KNOBS_ENV

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
    "parallel": ([], 2),
    "compare": (["compare", "--all-backends"], 3),
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_command_line_stopped_leaves_no_cli(cli_env, fake_clis, tmp_path, command, sig):
    tag = uuid.uuid4().hex[:8]
    args, count = COMMANDS[command]
    prompt = f"{tag} {LEAVE_BEHIND}"
    if command == "parallel":
        tasks = tmp_path / "tasks.json"
        tasks.write_text(json.dumps({"tasks": [{"backend": b, "prompt": prompt} for b in ("claude", "codex")]}))
        args = ["parallel", "--file", str(tasks)]
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
