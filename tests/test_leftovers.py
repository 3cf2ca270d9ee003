"""What an agent's command leaves outside its CLI's process group ends with the run: a process in a
session of its own, orphaned at once (``FAKE_SPAWN_DETACHED``, the shape of ``setsid cmd &`` from a
tool shell, measured with the genuine CLIs in tests/e2e/test_realcli_tool_leftovers.py), whether the
run finishes, times out, loses its client, is deleted as a job, or its server stops or its worker is
killed. Another run's leftovers are left alone until that run is over."""

from __future__ import annotations

import http.client
import json
import os
import signal
import uuid

import pytest

from clinvk import leftovers
from tests.helpers import alive, wait_for, wait_gone
from tests.server_process import ServerProcess

DETACHED = "FAKE_SPAWN_DETACHED"


def detached_of(fake_clis, word: str) -> dict:
    """The invocation log entry of the fake whose prompt holds ``word``, once it started its process."""
    found = {}

    def started():
        for call in fake_clis.calls():
            if word in (call.get("prompt") or "") and call.get("detached_pid"):
                found.update(call)
                return True
        return False

    assert wait_for(started, within=30), fake_clis.calls()
    return found


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def carried_tag(pid: int) -> str:
    with open(f"/proc/{pid}/environ", "rb") as f:
        entries = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
    return entries[leftovers.VARIABLE.encode()].decode()


@pytest.mark.parametrize("backend", ["claude", "codex", "gemini"])
def test_a_detached_process_ends_with_its_finished_run(client, fake_clis, backend):
    """In-process (no gunicorn master to adopt it): found among all processes."""
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": f"hi {DETACHED}"})
    assert response.status_code == 200 and response.json["exit_code"] == 0, response.json
    call = fake_clis.last()
    assert wait_gone(call["detached_pid"], within=10), "the run's detached process still runs"


def test_a_detached_process_ends_with_its_deleted_job(client, fake_clis):
    tag = uuid.uuid4().hex[:8]
    job = client.post("/api/v1/jobs", json={"backend": "claude", "prompt": f"{tag} FAKE_HANG {DETACHED}"})
    assert job.status_code == 202, job.json
    detached = detached_of(fake_clis, tag)["detached_pid"]
    assert alive(detached)
    assert client.delete(f"/api/v1/jobs/{job.json['id']}").status_code in (200, 202)
    assert wait_gone(detached, within=10), "the deleted job's detached process still runs"


@pytest.mark.gunicorn
@pytest.mark.parametrize("ending", ["finished", "timed out", "client left"])
def test_a_detached_process_ends_with_its_run_behind_gunicorn(tmp_path, fake_clis, ending):
    """The master adopts it (child subreaper) and the worker finds it among the master's children."""
    tag = uuid.uuid4().hex[:8]
    config = {"server": {"request_timeout_secs": 2 if ending == "timed out" else 120},
              "run": {"warm_pool": {"enabled": False}}}
    with ServerProcess(tmp_path, config=config) as server:
        prompt = f"{tag} {DETACHED}" + ("" if ending == "finished" else " FAKE_HANG")
        body = {"backend": "gemini", "prompt": prompt, "output_format": "stream-json"}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/api/v1/prompt", json.dumps(body), {"Content-Type": "application/json"})
        call = detached_of(fake_clis, tag)
        detached = call["detached_pid"]
        if ending == "client left":
            assert parent_of(detached) == server.proc.pid, "the master did not adopt the orphan"
            assert carried_tag(detached) == carried_tag(call["pid"])
            conn.close()
        else:
            response = conn.getresponse()
            assert response.status == 200
            events = [json.loads(line) for line in response.read().splitlines() if line.strip()]
            assert events[-1]["type"] == "done", events
            conn.close()
        assert wait_gone(detached, within=10), f"the {ending} run's detached process still runs"


@pytest.mark.gunicorn
def test_another_runs_leftover_lives_until_that_run_is_over(tmp_path, fake_clis):
    config = {"server": {"request_timeout_secs": 120}, "run": {"warm_pool": {"enabled": False}}}
    with ServerProcess(tmp_path, config=config, threads=4) as server:
        body = {"backend": "codex", "prompt": f"longer FAKE_HANG {DETACHED}", "output_format": "stream-json"}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/api/v1/prompt", json.dumps(body), {"Content-Type": "application/json"})
        longer = detached_of(fake_clis, "longer")["detached_pid"]
        assert wait_for(lambda: parent_of(longer) == server.proc.pid, within=10)

        response = server.post("/api/v1/prompt", {"backend": "codex", "prompt": f"shorter {DETACHED}"})
        assert response.status_code == 200, response.text
        shorter = detached_of(fake_clis, "shorter")["detached_pid"]
        assert wait_gone(shorter, within=10)
        assert alive(longer), "the end of one run killed what another, still running, started"
        conn.close()
        assert wait_gone(longer, within=10)


@pytest.mark.gunicorn
@pytest.mark.parametrize("ending", ["server stopped", "worker killed"])
def test_a_detached_process_ends_when_its_worker_does(tmp_path, fake_clis, ending):
    tag = uuid.uuid4().hex[:8]
    config = {"server": {"request_timeout_secs": 120, "shutdown_grace_secs": 1}}
    server = ServerProcess(tmp_path, config=config).start()
    try:
        body = {"backend": "claude", "prompt": f"{tag} FAKE_HANG {DETACHED}"}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/api/v1/prompt", json.dumps(body), {"Content-Type": "application/json"})
        call = detached_of(fake_clis, tag)
        if ending == "worker killed":
            os.kill(call["ppid"], signal.SIGKILL)  # no code of the worker runs: the master ends them
            assert wait_gone(call["detached_pid"], within=10), "the dead worker's run left its process"
            assert "processes the runs of worker" in server.stderr_text()
        else:
            assert server.stop(signal.SIGTERM) == 0, server.stderr_text()
            assert wait_gone(call["detached_pid"], within=10), "the stopped server's run left its process"
        conn.close()
    finally:
        server.stop()


@pytest.mark.gunicorn
def test_the_next_master_ends_what_a_killed_server_left(tmp_path, fake_clis):
    """Master and worker killed at once (nobody of the server runs any more code): the leftovers are
    re-parented to init, and the next master of the same server (same home and port) ends them."""
    tag = uuid.uuid4().hex[:8]
    config = {"server": {"request_timeout_secs": 120}, "run": {"warm_pool": {"enabled": False}}}
    first = ServerProcess(tmp_path, config=config).start()
    try:
        body = {"backend": "gemini", "prompt": f"{tag} FAKE_HANG {DETACHED}"}
        conn = http.client.HTTPConnection("127.0.0.1", first.port, timeout=60)
        conn.request("POST", "/api/v1/prompt", json.dumps(body), {"Content-Type": "application/json"})
        call = detached_of(fake_clis, tag)
        os.kill(call["ppid"], signal.SIGKILL)
        os.kill(first.proc.pid, signal.SIGKILL)
        first.wait_exit()
        conn.close()
        assert alive(call["detached_pid"]) and alive(call["pid"])
    finally:
        first.stop()
    second = ServerProcess(tmp_path, config=config)
    second.port, second.url = first.port, first.url
    with second:
        assert wait_gone(call["detached_pid"], call["pid"], within=10), "the killed server's leftovers still run"
        assert "processes the runs of a previous run of this server left behind" in second.stderr_text()
