"""A worker killed without a chance to clean up (SIGKILL: OOM killer, worker timeout, kill -9) leaves
no CLI behind: each worker records its live process groups on disk, and the gunicorn master's
child_exit hook ends the dead worker's ones. The record never kills a process that merely reuses a
recorded pid."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import uuid

import pytest

from clinvk.grouprecord import GroupRecord, end_groups, start_time
from tests.helpers import alive, group_alive, wait_for, wait_groups_gone
from tests.server_process import ServerProcess

HANG = "FAKE_HANG FAKE_SPAWN_CHILD"


@pytest.mark.gunicorn
def test_kill_9_of_a_worker_ends_its_runs(tmp_path, fake_clis):
    server = ServerProcess(tmp_path, config={"server": {"request_timeout_secs": 120}}).start()
    try:
        tag = "m" + uuid.uuid4().hex[:10]
        bodies = [("/api/v1/prompt", {"backend": "claude", "prompt": f"{HANG} {tag}"}),
                  ("/api/v1/prompt", {"backend": "codex", "prompt": f"{HANG} {tag}", "output_format": "stream-json"}),
                  ("/api/v1/parallel", {"tasks": [{"backend": "gemini", "prompt": f"{HANG} {tag}"},
                                                  {"backend": "claude", "prompt": f"{HANG} {tag}"}]})]
        conns = []
        for path, body in bodies:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            conns.append(conn)
        mine = lambda: [c for c in fake_clis.calls() if tag in (c.get("prompt") or "")]  # noqa: E731
        assert wait_for(lambda: len(mine()) == 4, within=30), fake_clis.calls()
        groups = [c["pgid"] for c in mine()]
        worker = mine()[0]["ppid"]
        assert all(group_alive(g) for g in groups)

        os.kill(worker, signal.SIGKILL)
        assert wait_groups_gone(*groups, within=2), "the dead worker's CLIs still run"
        assert wait_for(lambda: server.stderr_text().count("Booting worker") == 2, within=30), \
            "the master starts a new worker"
        assert server.post("/api/v1/prompt", {"backend": "codex", "prompt": "hi"}, fresh=True).json()["output"] \
            == "echo: hi"
        # the four runs', and any the warm pool had started ahead (they die with the worker too)
        ended = re.search(r"ended (\d+) CLI process groups of worker", server.stderr_text())
        assert ended and int(ended.group(1)) >= 4, server.stderr_text()
        for conn in conns:
            conn.close()
    finally:
        server.stop()


def test_the_record_ends_the_groups_of_one_worker_only(tmp_path):
    mine, theirs = (subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2))
    try:
        GroupRecord(tmp_path, owner=111).started(mine.pid)
        GroupRecord(tmp_path, owner=222).started(theirs.pid)
        assert end_groups(tmp_path, 111) == 1
        assert wait_for(lambda: mine.poll() is not None, within=10) and alive(theirs.pid)
        assert [name.split(".")[0] for name in os.listdir(tmp_path)] == ["222"]
    finally:
        for proc in (mine, theirs):
            proc.kill()
            proc.wait()


def test_a_reused_pid_is_not_killed(tmp_path):
    """A recorded group whose number now belongs to another process (another start time) is left alone."""
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        (tmp_path / "333.groups").write_bytes(f"{other.pid} {start_time(other.pid) - 1}".encode().ljust(31) + b"\n")
        assert end_groups(tmp_path, 333) == 0
        assert alive(other.pid)
        assert not os.listdir(tmp_path), "the stale entry is forgotten"
    finally:
        other.kill()
        other.wait()


def test_a_group_whose_leader_is_gone_is_still_ended(tmp_path):
    """The leader exited but its child holds the group: the number cannot have been reused."""
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & echo $!"], start_new_session=True, stdout=subprocess.PIPE,
                              text=True)
    child = int(leader.stdout.readline())
    GroupRecord(tmp_path, owner=444).started(leader.pid)
    leader.wait()
    try:
        assert start_time(leader.pid) is None and alive(child)
        assert end_groups(tmp_path, 444) == 1
        assert wait_for(lambda: not alive(child), within=10)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_an_ended_run_leaves_the_record_and_its_slot_is_reused(tmp_path):
    """Only groups still running are ended; a finished run's place in the file serves the next run."""
    done, running = (subprocess.Popen(["sleep", "60"], start_new_session=True) for _ in range(2))
    try:
        record = GroupRecord(tmp_path, owner=555)
        first = record.started(done.pid)
        record.ended(first)
        assert record.started(running.pid) == first
        assert end_groups(tmp_path, 555) == 1
        assert wait_for(lambda: running.poll() is not None, within=10) and alive(done.pid)
        assert not os.listdir(tmp_path)
    finally:
        for proc in (done, running):
            proc.kill()
            proc.wait()
