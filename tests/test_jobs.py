"""Jobs (/api/v1/jobs) against the fake CLIs: every route and state, events from a position (NDJSON and
SSE with Last-Event-ID), following live, cancelling (the CLI's process group ends), the per-tenant cap,
interrupted jobs after a restart or a stale heartbeat, and tenant scoping."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from datetime import timedelta

import pytest
import requests

from clinvk.jobs.model import JobNotFound
from clinvk.sessions import open_store
from clinvk.sessions.model import utc_now
from tests.helpers import alive, ndjson, wait_for, wait_gone
from tests.liveserver import live, make_live  # noqa: F401 (fixtures)
from tests.server_process import ServerProcess

FINISHED = ("completed", "failed", "cancelled", "interrupted")


def wait_job(client, job_id: str, statuses=FINISHED, within: float = 30.0) -> dict:
    state = {}

    def reached():
        state.update(client.get(f"/api/v1/jobs/{job_id}").json)
        return state["status"] in statuses

    assert wait_for(reached, within), state
    return state


def submit(client, body: dict, status: int = 202) -> dict:
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    return response.json


def fake_pid(fake_clis, word: str) -> int:
    """The pid of the fake CLI whose prompt contains ``word``, once it runs."""
    found = {}

    def started():
        for call in fake_clis.calls():
            if word in (call.get("prompt") or ""):
                found["pid"] = call["pid"]
                return True
        return False

    assert wait_for(started), fake_clis.calls()
    return found["pid"]


# -- submit, show, result -----------------------------------------------------------------------------

def test_prompt_job_runs_detached_and_answers_like_the_prompt_endpoint(client, fake_clis):
    response = client.post("/api/v1/jobs", json={"backend": "claude", "prompt": "hello job"})
    assert response.status_code == 202
    job = response.json
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running") and job["kind"] == "prompt" and job["result"] is None

    done = wait_job(client, job["id"])
    assert done["status"] == "completed" and done["error"] is None
    assert done["started_at"] and done["finished_at"] and done["duration_ms"] >= 0
    assert done["request"] == {"kind": "prompt", "backend": "claude", "prompt": "hello job"}
    sync = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hello job"}).json
    assert set(done["result"]) == set(sync) and done["result"]["output"] == sync["output"] == "echo: hello job"
    # The job's run is a session turn like any other: it can be continued.
    session_id = done["session_id"]
    assert done["result"]["session_id"] == session_id
    follow_up = client.post("/api/v1/prompt", json={"session_id": session_id, "prompt": "and then"})
    assert follow_up.status_code == 200 and follow_up.json["session_id"] == session_id


def test_failed_run_is_a_failed_job_with_the_cli_error(client, fake_clis):
    job = submit(client, {"backend": "codex", "prompt": "break FAKE_FAIL=500"})
    done = wait_job(client, job["id"])
    assert done["status"] == "failed" and done["error"]
    assert done["result"]["exit_code"] != 0 and done["result"]["error"] == done["error"]


@pytest.mark.parametrize("kind, body, sync_path", [
    ("parallel", {"tasks": [{"backend": "claude", "prompt": "one"}, {"backend": "gemini", "prompt": "two"}]},
     "/api/v1/parallel"),
    ("chain", {"steps": [{"backend": "claude", "prompt": "first"},
                         {"backend": "codex", "prompt": "second after {{previous}}"}]}, "/api/v1/chain"),
    ("compare", {"prompt": "same question", "backends": ["claude", "codex"]}, "/api/v1/compare"),
])
def test_orchestration_jobs_answer_like_their_endpoints(client, fake_clis, kind, body, sync_path):
    job = submit(client, {"kind": kind, **body})
    done = wait_job(client, job["id"])
    assert done["status"] == "completed", done
    sync = client.post(sync_path, json=body).json
    assert set(done["result"]) == set(sync)
    outputs = [r["output"] for r in done["result"]["results"]]
    assert outputs == [r["output"] for r in sync["results"]]
    events = ndjson(client.get(f"/api/v1/jobs/{job['id']}/events"))
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)) == list(range(1, done["events"] + 1))
    assert events[-1]["type"] == "done" and "backend" not in events[-1]
    if kind == "chain":
        progress = [(e["content"]["step"], e["content"]["status"]) for e in events if e["type"] == "progress"]
        assert progress == [(1, "running"), (1, "completed"), (2, "running"), (2, "completed")]
        assert events[1]["content"]["result"]["output"] == "echo: first"
    else:
        assert {e["task"] for e in events if e["type"] == "message"} == {0, 1}


@pytest.mark.parametrize("body, field", [
    ({"kind": "nonsense", "prompt": "x"}, "body.kind"),
    ({"prompt": ""}, "body.prompt"),
    ({"kind": "parallel", "tasks": []}, "body.tasks"),
    ({"kind": "chain", "prompt": "not a chain"}, "body.steps"),
    ({"prompt": "hi", "backend": "nope"}, "body.backend"),
    ({"prompt": "hi", "session_id": "abcdef"}, "body.session_id"),
])
def test_bad_job_requests_are_refused_naming_the_field(client, fake_clis, body, field):
    response = client.post("/api/v1/jobs", json=body)
    assert 400 <= response.status_code < 500, response.json
    assert field in [e["field"] for e in response.json.get("errors", [])], response.json
    assert client.get("/api/v1/jobs").json["total"] == 0
    assert fake_clis.calls() == []


# -- events ------------------------------------------------------------------------------------------

def test_events_from_a_position_as_ndjson_and_as_sse_resuming_after_last_event_id(client, fake_clis):
    job = submit(client, {"backend": "claude", "prompt": "tell FAKE_CHUNKS=4"})
    done = wait_job(client, job["id"])
    everything = ndjson(client.get(f"/api/v1/jobs/{job['id']}/events"))
    assert everything[0]["type"] == "init" and everything[-1]["type"] == "done"
    assert len(everything) == done["events"] >= 5
    assert all(e["session_id"] == done["session_id"] for e in everything)

    later = ndjson(client.get(f"/api/v1/jobs/{job['id']}/events?after=2"))
    assert later == everything[2:]

    sse = client.get(f"/api/v1/jobs/{job['id']}/events",
                     headers={"Accept": "text/event-stream", "Last-Event-ID": "3"})
    assert sse.mimetype == "text/event-stream"
    frames = [f for f in sse.get_data(as_text=True).split("\n\n") if f]
    ids = [int(f.split("\n")[0].removeprefix("id: ")) for f in frames]
    assert ids == list(range(4, len(everything) + 1))
    for frame, expected in zip(frames, everything[3:]):
        data = json.loads(frame.split("\n")[1].removeprefix("data: "))
        assert {"seq": expected["seq"], **data} == expected

    for raw in ("three", "\u00b2", "-1"):  # "²" is a digit to str.isdigit() but no number to int()
        bad = client.get(f"/api/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": raw})
        assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "header.Last-Event-ID", raw
    assert client.get(f"/api/v1/jobs/{job['id']}/events?after=-1").status_code == 422


def test_following_a_running_job_gives_keepalives_and_ends_with_it_and_leaving_never_stops_it(make_live,
                                                                                                fake_clis):
    server = make_live(server={"keepalive_interval_secs": 0.2})
    job = requests.post(f"{server.url}/api/v1/jobs", json={"backend": "gemini", "prompt": "slow FAKE_DELAY=1.5"},
                        timeout=30).json()
    # One follower leaves after the first line; the job goes on.
    with requests.get(f"{server.url}/api/v1/jobs/{job['id']}/events", stream=True, timeout=30) as early:
        next(early.iter_lines())
    # Another follows to the end: keep-alives while the CLI is quiet, then its events, then the end.
    with requests.get(f"{server.url}/api/v1/jobs/{job['id']}/events", stream=True, timeout=30) as follower:
        lines = [json.loads(line) for line in follower.iter_lines() if line]
    assert {"type": "keepalive"} in lines
    events = [line for line in lines if line["type"] != "keepalive"]
    assert events[-1]["type"] == "done" and events[-1]["content"]["exit_code"] == 0
    state = requests.get(f"{server.url}/api/v1/jobs/{job['id']}", timeout=30).json()
    assert state["status"] == "completed" and state["events"] == len(events)
    assert state["result"]["output"] == "echo: slow FAKE_DELAY=1.5"


def test_follow_false_gives_the_stored_events_and_ends(client, fake_clis):
    job = submit(client, {"backend": "claude", "prompt": "wait FAKE_HANG"})
    pid = fake_pid(fake_clis, "wait FAKE_HANG")
    assert wait_for(lambda: client.get(f"/api/v1/jobs/{job['id']}").json["events"] >= 1)
    stored = ndjson(client.get(f"/api/v1/jobs/{job['id']}/events?follow=false"))
    assert stored and stored[0]["type"] == "init"
    client.delete(f"/api/v1/jobs/{job['id']}")
    assert wait_gone(pid)


# -- cancel and delete -------------------------------------------------------------------------------

def test_delete_cancels_a_running_job_killing_its_process_group_then_removes_it(client, fake_clis):
    job = submit(client, {"backend": "claude", "prompt": "forever FAKE_HANG FAKE_SPAWN_CHILD"})
    pid = fake_pid(fake_clis, "forever FAKE_HANG")
    assert wait_job(client, job["id"], ("running",))["status"] == "running"
    child = fake_clis.calls()[-1].get("child_pid")
    group = os.getpgid(pid)
    assert group == pid  # the CLI leads its own process group

    cancelled = client.delete(f"/api/v1/jobs/{job['id']}")
    assert cancelled.status_code in (200, 202)
    done = wait_job(client, job["id"])
    assert done["status"] == "cancelled" and "cancelled by the client" in done["error"]
    assert wait_gone(pid, child)
    events = ndjson(client.get(f"/api/v1/jobs/{job['id']}/events"))
    assert events[-1]["type"] == "done"

    removed = client.delete(f"/api/v1/jobs/{job['id']}")
    assert removed.status_code == 200 and removed.json == {"deleted": True, "id": job["id"]}
    assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}/events").status_code == 404
    assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 404


def test_cancel_reaches_a_job_of_another_process_through_the_store(make_app, fake_clis):
    runner_app = make_app(jobs={"heartbeat_secs": 0.2})
    other_app = make_app(jobs={"heartbeat_secs": 0.2})  # another worker or host, same store
    job = submit(runner_app.test_client(), {"kind": "chain", "steps": [{"backend": "codex", "prompt": "a FAKE_HANG"},
                                                                       {"backend": "codex", "prompt": "b"}]})
    pid = fake_pid(fake_clis, "a FAKE_HANG")
    other = other_app.test_client()
    assert other.delete(f"/api/v1/jobs/{job['id']}").status_code == 202  # not this process's job
    done = wait_job(other, job["id"])
    assert done["status"] == "cancelled"
    assert [r["status"] for r in done["result"]["results"]] == ["cancelled"]  # step 2 never started
    assert wait_gone(pid)


def test_job_time_limit_is_jobs_timeout_not_the_request_timeout(make_app, fake_clis):
    client = make_app(server={"request_timeout_secs": 1}, jobs={"timeout_secs": 30}).test_client()
    done = wait_job(client, submit(client, {"backend": "claude", "prompt": "slow FAKE_DELAY=2"})["id"])
    assert done["status"] == "completed", done
    client = make_app(jobs={"timeout_secs": 1}).test_client()
    job = submit(client, {"backend": "claude", "prompt": "too slow FAKE_HANG"})
    done = wait_job(client, job["id"])
    assert done["status"] == "failed" and done["result"]["exit_code"] == -1
    assert wait_gone(fake_pid(fake_clis, "too slow"))


def test_a_job_stays_queued_while_every_run_slot_is_taken(make_app, fake_clis):
    client = make_app(server={"max_concurrent_runs": 1, "max_queued_runs": 0}).test_client()
    holder = submit(client, {"backend": "claude", "prompt": "holder FAKE_HANG"})
    fake_pid(fake_clis, "holder FAKE_HANG")
    waiting = submit(client, {"backend": "gemini", "prompt": "waiting"})
    # The synchronous endpoint is refused at once; the job waits for the slot instead.
    assert client.post("/api/v1/prompt", json={"backend": "gemini", "prompt": "now"}).status_code == 429
    assert client.get(f"/api/v1/jobs/{waiting['id']}").json["status"] == "queued"
    assert client.get("/api/v1/jobs?status=queued").json["total"] == 1
    client.delete(f"/api/v1/jobs/{holder['id']}")
    done = wait_job(client, waiting["id"])
    assert done["status"] == "completed" and done["result"]["output"] == "echo: waiting"
    assert all(call["backend"] != "gemini" or call["prompt"] == "waiting" for call in fake_clis.calls())


# -- listing, cap, retention -------------------------------------------------------------------------

def test_list_filters_and_pages(client, fake_clis):
    ids = [submit(client, {"backend": "claude", "prompt": f"job {i}"})["id"] for i in range(3)]
    compare = submit(client, {"kind": "compare", "prompt": "x", "backends": ["claude"]})["id"]
    for job_id in ids + [compare]:
        wait_job(client, job_id)
    page = client.get("/api/v1/jobs?limit=2").json
    assert page["total"] == 4 and [j["id"] for j in page["jobs"]] == [compare, ids[2]]
    assert [j["id"] for j in client.get("/api/v1/jobs?limit=2&offset=2").json["jobs"]] == [ids[1], ids[0]]
    assert client.get("/api/v1/jobs?kind=compare").json["total"] == 1
    assert client.get("/api/v1/jobs?status=completed").json["total"] == 4
    assert client.get("/api/v1/jobs?status=running").json["total"] == 0
    bad = client.get("/api/v1/jobs?status=sleeping")
    assert bad.status_code == 422 and bad.json["errors"][0]["field"] == "query.status"


def test_queued_and_running_jobs_per_tenant_are_capped_with_retry_after(make_app, fake_clis):
    client = make_app(jobs={"max_active_per_tenant": 1}).test_client()
    first = submit(client, {"backend": "claude", "prompt": "hold FAKE_HANG"})
    refused = client.post("/api/v1/jobs", json={"backend": "claude", "prompt": "another"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json["error"] == "too_many_jobs"
    client.delete(f"/api/v1/jobs/{first['id']}")
    wait_job(client, first["id"])
    wait_job(client, submit(client, {"backend": "claude", "prompt": "now it fits"})["id"])


def test_finished_jobs_older_than_the_retention_are_removed_at_start(make_app, make_config, fake_clis):
    client = make_app().test_client()
    job_id = wait_job(client, submit(client, {"backend": "claude", "prompt": "old"})["id"])["id"]
    store = open_store(make_config().sessions_db)
    store.update_job(job_id, finished_at=utc_now() - timedelta(days=31))
    client = make_app().test_client()
    assert client.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert store.job_events(job_id) == []


# -- interrupted ---------------------------------------------------------------------------------------

def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_zombie_process_counts_as_gone():
    from clinvk.jobs.runner import pid_alive

    process = subprocess.Popen(["true"])
    assert wait_for(lambda: not alive(process.pid))  # exited, not yet reaped: a zombie
    assert os.path.exists(f"/proc/{process.pid}") and not pid_alive(process.pid)
    process.wait()
    assert not pid_alive(process.pid) and pid_alive(os.getpid())


def test_start_up_marks_jobs_of_a_gone_process_interrupted(make_app, make_config, fake_clis):
    store = open_store(make_config().sessions_db)
    gone = store.create_job(owner="local", kind="prompt", request={}, host=socket.gethostname(), pid=dead_pid(),
                            max_active=10)
    store.update_job(gone.id, status="running", started_at=utc_now())
    mine = store.create_job(owner="local", kind="prompt", request={}, host=socket.gethostname(), pid=os.getpid(),
                            max_active=10)
    client = make_app().test_client()
    job = client.get(f"/api/v1/jobs/{gone.id}").json
    assert job["status"] == "interrupted" and job["finished_at"] and "went away" in job["error"]
    assert client.get(f"/api/v1/jobs/{mine.id}").json["status"] == "queued"  # its process still lives
    assert list(store.job_events(gone.id)) == []
    assert client.get(f"/api/v1/jobs/{gone.id}/events").get_data() == b""  # ends at once


def test_a_stale_heartbeat_makes_a_job_interrupted(make_app, make_config, fake_clis):
    client = make_app(jobs={"heartbeat_secs": 1}).test_client()
    store = open_store(make_config().sessions_db)
    job = store.create_job(owner="local", kind="prompt", request={}, host="another-host", pid=1, max_active=10)
    store.update_job(job.id, status="running")
    assert client.get(f"/api/v1/jobs/{job.id}").json["status"] == "running"  # its heartbeat is fresh
    store._conn().execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?",
                          ((utc_now() - timedelta(seconds=5)).isoformat()[:-6] + "Z", job.id))
    assert client.get(f"/api/v1/jobs/{job.id}").json["status"] == "interrupted"


def test_a_server_killed_mid_job_leaves_it_interrupted_after_restart(tmp_path, fake_clis):
    config = {"jobs": {"heartbeat_secs": 0.5}}
    server = ServerProcess(tmp_path, config=config).start()
    try:
        job = server.post("/api/v1/jobs", {"backend": "claude", "prompt": "killed FAKE_HANG"}).json()
        cli = fake_pid(fake_clis, "killed FAKE_HANG")
        assert wait_for(lambda: server.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "running")
        os.kill(server.proc.pid, signal.SIGKILL)  # master and worker gone without any cleanup
        worker = [c for c in fake_clis.calls() if "killed" in (c.get("prompt") or "")][0]["ppid"]
        os.kill(worker, signal.SIGKILL)
        server.wait_exit()
        assert wait_gone(worker)
    finally:
        server.stop()
    os.killpg(cli, signal.SIGKILL)  # the orphaned CLI (a supervisor's job, not this test's subject)
    with ServerProcess(tmp_path, config=config) as restarted:
        state = restarted.get(f"/api/v1/jobs/{job['id']}").json()
        assert state["status"] == "interrupted", state
        with restarted.session.get(f"{restarted.url}/api/v1/jobs/{job['id']}/events", timeout=30) as events:
            assert events.status_code == 200  # the stored events, then the end: nothing to wait for


# -- tenants -------------------------------------------------------------------------------------------

def test_jobs_belong_to_the_callers_tenant(client, fake_clis, monkeypatch):
    from clinvk.server.native import jobs as views

    job = submit(client, {"backend": "claude", "prompt": "mine"})
    wait_job(client, job["id"])
    monkeypatch.setattr(views, "tenant", lambda: "someone-else")
    assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert client.get(f"/api/v1/jobs/{job['id']}/events").status_code == 404
    assert client.delete(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert client.get("/api/v1/jobs").json["total"] == 0
    theirs = submit(client, {"backend": "claude", "prompt": "theirs"})
    wait_job(client, theirs["id"])
    monkeypatch.undo()
    assert [j["id"] for j in client.get("/api/v1/jobs").json["jobs"]] == [job["id"]]


def test_the_store_keeps_owners_apart(make_config):
    store = open_store(make_config().sessions_db)
    job = store.create_job(owner="a", kind="prompt", request={}, host="h", pid=1, max_active=1)
    store.create_job(owner="b", kind="prompt", request={}, host="h", pid=1, max_active=1)  # a's cap is a's
    with pytest.raises(JobNotFound):
        store.get_job(job.id, "b")
    with pytest.raises(JobNotFound):
        store.delete_job(job.id, "b")
    assert store.list_jobs("b")[1] == 1 and store.get_job(job.id, "a").owner == "a"


def test_a_server_stopping_mid_job_marks_it_interrupted_on_its_way_out(tmp_path, fake_clis):
    with ServerProcess(tmp_path, config={}) as server:
        job = server.post("/api/v1/jobs", {"backend": "codex", "prompt": "stopped FAKE_HANG"}).json()
        cli = fake_pid(fake_clis, "stopped FAKE_HANG")
        assert wait_for(lambda: server.get(f"/api/v1/jobs/{job['id']}").json()["status"] == "running")
    assert wait_gone(cli)  # the CLI did not outlive the server
    state = open_store(server.home / "sessions.db").get_job(job["id"], "local")
    assert state.status == "interrupted" and "stopped before the job finished" in state.error
