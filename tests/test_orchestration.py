"""POST /api/v1/parallel, /chain and /compare (and their NDJSON streams) against the fake CLIs.

Concurrency is proven from the fakes' invocation log, never from the test's own wall time: a fake
logs when it starts and then sleeps ``FAKE_DELAY``, so tasks that all started before the first one
could have finished ran at the same time.
"""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from tests.helpers import alive, ndjson, wait_for

DELAY = 1.0


def post(client, path, body):
    return client.post(f"/api/v1/{path}", json=body)


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    # Only zombies left? They are not running anything.
    return not any(alive(int(p)) for p in os.listdir("/proc") if p.isdigit() and _pgid(int(p)) == pgid)


def _pgid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[2])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def starts(calls, backend=None) -> list[float]:
    return sorted(c["time"] for c in calls if backend is None or c["backend"] == backend)


# -- parallel ---------------------------------------------------------------------------------------


def test_parallel_runs_tasks_concurrently_and_keeps_order(client, fake_clis):
    tasks = [{"backend": "claude", "prompt": f"slow FAKE_DELAY={DELAY}"},
             {"backend": "codex", "prompt": f"medium FAKE_DELAY={DELAY / 2}"},
             {"backend": "gemini", "prompt": "fast"}]
    response = post(client, "parallel", {"tasks": tasks, "max_parallel": 3})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["total_tasks"] == 3 and body["completed"] == 3 and body["failed"] == 0 and body["cancelled"] == 0
    assert [r["backend"] for r in body["results"]] == ["claude", "codex", "gemini"]
    assert [r["index"] for r in body["results"]] == [0, 1, 2]
    assert [r["output"] for r in body["results"]] == [f"echo: {t['prompt']}" for t in tasks]
    assert all(r["status"] == "completed" and r["exit_code"] == 0 for r in body["results"])
    assert "session_id" not in body["results"][0] and "backend_session_id" not in body["results"][0]
    # Every CLI started before the slow one could have ended: they overlapped.
    times = starts(fake_clis.calls())
    assert len(times) == 3 and times[-1] - times[0] < DELAY
    assert body["total_duration_ms"] >= body["results"][0]["duration_ms"]


def test_parallel_max_parallel_1_runs_one_at_a_time(client, fake_clis):
    tasks = [{"backend": "claude", "prompt": f"t{i} FAKE_DELAY=0.3"} for i in range(3)]
    response = post(client, "parallel", {"tasks": tasks, "max_parallel": 1})
    assert response.json["completed"] == 3
    times = starts(fake_clis.calls())
    # Each started only after the previous one had slept its 0.3 s: no overlap.
    assert all(later - earlier >= 0.3 for earlier, later in zip(times, times[1:]))
    assert [c["prompt"] for c in sorted(fake_clis.calls(), key=lambda c: c["time"])] == [t["prompt"] for t in tasks]


def test_parallel_default_pool_is_parallel_max_workers(make_app, fake_clis):
    client = make_app(parallel={"max_workers": 2}).test_client()
    tasks = [{"backend": "codex", "prompt": f"t{i} FAKE_DELAY={DELAY}"} for i in range(3)]
    assert post(client, "parallel", {"tasks": tasks}).json["completed"] == 3
    times = starts(fake_clis.calls())
    assert times[1] - times[0] < DELAY  # two at once ...
    assert times[2] - times[0] >= DELAY  # ... and the third waited for a free worker


def test_parallel_reports_failures_without_failing_the_request(client):
    tasks = [{"backend": "claude", "prompt": "ok"}, {"backend": "gemini", "prompt": "boom FAKE_FAIL=500"},
             {"backend": "codex", "prompt": "crash FAKE_FAIL=crash"}]
    body = post(client, "parallel", {"tasks": tasks}).json
    assert (body["completed"], body["failed"], body["cancelled"]) == (1, 2, 0)
    statuses = [(r["status"], r["exit_code"] != 0, bool(r.get("error"))) for r in body["results"]]
    assert statuses == [("completed", False, False), ("failed", True, True), ("failed", True, True)]


def test_parallel_fail_fast_kills_running_and_cancels_waiting(client, fake_clis):
    tasks = [{"backend": "claude", "prompt": "hang FAKE_HANG FAKE_SPAWN_CHILD"},
             {"backend": "codex", "prompt": "hang FAKE_HANG"},
             {"backend": "gemini", "prompt": "fail FAKE_DELAY=0.5 FAKE_FAIL=500"},
             {"backend": "claude", "prompt": "never starts"}]
    body = post(client, "parallel", {"tasks": tasks, "max_parallel": 3, "fail_fast": True}).json
    results = body["results"]
    assert [r["status"] for r in results] == ["cancelled", "cancelled", "failed", "cancelled"]
    assert (body["completed"], body["failed"], body["cancelled"]) == (0, 1, 3)
    assert results[0]["exit_code"] == -1 and "fail-fast: tasks[2] failed" in results[0]["error"]
    assert results[3]["duration_ms"] == 0 and "fail-fast" in results[3]["error"]
    calls = fake_clis.calls()
    assert "never starts" not in [c["prompt"] for c in calls]
    # No process of the killed runs is left, grandchildren included.
    for call in calls:
        assert wait_for(lambda: not alive(call["pid"])), call
        assert wait_for(lambda: group_gone(call["pgid"])), call
        if call.get("child_pid"):
            assert wait_for(lambda: not alive(call["child_pid"])), call


def test_parallel_fail_fast_default_from_config(make_app, fake_clis):
    client = make_app(parallel={"fail_fast": True}).test_client()
    tasks = [{"backend": "gemini", "prompt": "fail FAKE_FAIL=500"}, {"backend": "claude", "prompt": "later"}]
    body = post(client, "parallel", {"tasks": tasks, "max_parallel": 1}).json
    assert [r["status"] for r in body["results"]] == ["failed", "cancelled"]
    body = post(client, "parallel", {"tasks": tasks, "max_parallel": 1, "fail_fast": False}).json
    assert [r["status"] for r in body["results"]] == ["failed", "completed"]


def test_parallel_tasks_are_ephemeral(client, fake_clis):
    body = post(client, "parallel", {"tasks": [{"backend": "claude", "prompt": "a"},
                                               {"backend": "codex", "prompt": "b"}]}).json
    assert body["completed"] == 2
    assert client.get("/api/v1/sessions").json["total"] == 0
    argv = {c["backend"]: c["argv"] for c in fake_clis.calls()}
    assert "--no-session-persistence" in argv["claude"] and "--ephemeral" in argv["codex"]


def test_parallel_dry_run_runs_nothing(client, fake_clis):
    body = post(client, "parallel", {"tasks": [{"backend": "claude", "prompt": "a"},
                                               {"backend": "gemini", "prompt": "b"}], "dry_run": True}).json
    assert body["completed"] == 2
    assert all(r["output"].startswith("Would execute: ") for r in body["results"])
    assert fake_clis.calls() == []


def test_parallel_task_options_reach_the_cli(client, fake_clis, tmp_path):
    workdir = tmp_path / "w"
    workdir.mkdir()
    body = post(client, "parallel", {"tasks": [{"backend": "claude", "prompt": "a", "model": "sonnet",
                                                "workdir": str(workdir), "name": "labelled"}]}).json
    assert body["results"][0]["name"] == "labelled"
    call = fake_clis.last()
    assert call["cwd"] == str(workdir) and "sonnet" in call["argv"]


@pytest.mark.parametrize("body, status, field", [
    ({"tasks": []}, 422, "body.tasks"),
    ({}, 422, "body.tasks"),
    ({"tasks": [{"backend": "claude", "prompt": "a"}, {"backend": "nope", "prompt": "b"}]}, 400,
     "body.tasks[1].backend"),
    ({"tasks": [{"backend": "claude", "prompt": "a", "bogus": 1}]}, 422, "body.tasks[0].bogus"),
    ({"tasks": [{"backend": "claude"}]}, 422, "body.tasks[0].prompt"),
    ({"tasks": [{"prompt": "a"}]}, 422, "body.tasks[0].backend"),
    ({"tasks": [{"backend": "claude", "prompt": "a", "ephemeral": False}]}, 422, "body.tasks[0].ephemeral"),
    ({"tasks": [{"backend": "claude", "prompt": "a", "workdir": "relative"}]}, 400, "body.tasks[0].workdir"),
    ({"tasks": [{"backend": "claude", "prompt": "a", "session_id": "abc"}]}, 422, "body.tasks[0].session_id"),
    ({"tasks": [{"backend": "claude", "prompt": "a"}], "max_parallel": "3"}, 422, "body.max_parallel"),
    ({"tasks": [{"backend": "claude", "prompt": "a"}], "max_parallel": 17}, 422, "body.max_parallel"),
    ({"tasks": [{"backend": "codex", "prompt": "a", "extra": ["--dangerously-bypass-approvals-and-sandbox"]}]},
     400, "body.tasks[0].extra[0]"),
])
def test_parallel_bad_requests_name_the_field(client, fake_clis, body, status, field):
    response = post(client, "parallel", body)
    assert response.status_code == status, response.json
    assert response.mimetype == "application/problem+json"
    assert field in [e["field"] for e in response.json["errors"]], response.json
    assert fake_clis.calls() == []  # nothing ran: a batch is checked before its first task starts


def test_parallel_task_limit(make_app, fake_clis):
    client = make_app(parallel={"max_tasks": 2}).test_client()
    tasks = [{"backend": "claude", "prompt": str(i)} for i in range(3)]
    response = post(client, "parallel", {"tasks": tasks})
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "body.tasks"
    assert "parallel.max_tasks" in response.json["message"]
    assert post(client, "parallel", {"tasks": tasks[:2]}).status_code == 200


def test_parallel_max_parallel_bounded_by_the_gate(make_app):
    client = make_app(server={"max_concurrent_runs": 2}).test_client()
    response = post(client, "parallel", {"tasks": [{"backend": "claude", "prompt": "a"}], "max_parallel": 3})
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "body.max_parallel"
    assert "server.max_concurrent_runs" in response.json["message"]


def test_parallel_unavailable_backend_is_503_naming_the_task(make_app, fake_clis):
    client = make_app(backends={"codex": {"command": "/nonexistent/codex"}}).test_client()
    response = post(client, "parallel", {"tasks": [{"backend": "claude", "prompt": "a"},
                                                   {"backend": "codex", "prompt": "b"}]})
    assert response.status_code == 503
    assert response.json["errors"][0]["field"] == "body.tasks[1].backend"
    assert fake_clis.calls() == []


# -- parallel streaming -----------------------------------------------------------------------------


def test_parallel_stream_tags_events_with_the_task(client, fake_clis):
    tasks = [{"backend": "claude", "prompt": "slow FAKE_DELAY=0.6 FAKE_CHUNKS=2"},
             {"backend": "codex", "prompt": "fast"},
             {"backend": "gemini", "prompt": "chunky FAKE_CHUNKS=3 FAKE_CHUNK_DELAY=0.05"}]
    response = post(client, "parallel", {"tasks": tasks, "output_format": "stream-json"})
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["X-Accel-Buffering"] == "no"
    events = ndjson(response)
    summary = events[-1]
    assert summary["type"] == "done" and "task" not in summary
    assert summary["content"]["total_tasks"] == 3 and summary["content"]["completed"] == 3
    body = [e for e in events[:-1] if e["type"] != "keepalive"]
    assert all(e["task"] in (0, 1, 2) for e in body)
    for i, task in enumerate(tasks):
        mine = [e for e in body if e["task"] == i]
        assert all(e["backend"] == task["backend"] for e in mine)
        assert mine[-1]["type"] == "done" and mine[-1]["content"]["exit_code"] == 0
        messages = [e["content"] for e in mine if e["type"] == "message"]
        text = "".join(m["text"] for m in messages if m.get("is_partial")) or "".join(m["text"] for m in messages)
        assert text == f"echo: {task['prompt']}"
    # The fast task is seen finishing while the slow one (listed first) still runs.
    order = [(e["task"], e["type"]) for e in body]
    assert order.index((1, "done")) < order.index((0, "done"))


def test_parallel_stream_keepalive_while_all_silent(make_app, fake_clis):
    client = make_app(server={"keepalive_interval_secs": 0.1}).test_client()
    response = post(client, "parallel", {"tasks": [{"backend": "claude", "prompt": "x FAKE_DELAY=0.6"},
                                                   {"backend": "codex", "prompt": "y FAKE_DELAY=0.6"}],
                                         "output_format": "stream-json"})
    events = ndjson(response)
    assert {"type": "keepalive"} in events
    assert events[-1]["content"]["completed"] == 2


def test_parallel_stream_disconnect_kills_every_cli(client, fake_clis):
    tasks = [{"backend": b, "prompt": "hang FAKE_HANG FAKE_SPAWN_CHILD"} for b in ("claude", "codex", "gemini")]
    response = client.post("/api/v1/parallel", json={"tasks": tasks, "output_format": "stream-json"},
                           buffered=False)
    lines = iter(response.response)
    assert wait_for(lambda: len(fake_clis.calls()) == 3)
    first = json.loads(next(lines))
    assert first["task"] in (0, 1, 2)
    calls = fake_clis.calls()
    assert all(alive(c["pid"]) for c in calls)
    response.close()  # the client went away
    for call in calls:
        assert wait_for(lambda: not alive(call["pid"]) and not alive(call["child_pid"])), call


def test_parallel_stream_fail_fast(client, fake_clis):
    tasks = [{"backend": "claude", "prompt": "hang FAKE_HANG"},
             {"backend": "gemini", "prompt": "fail FAKE_DELAY=0.3 FAKE_FAIL=500"}]
    events = ndjson(post(client, "parallel", {"tasks": tasks, "fail_fast": True, "output_format": "stream-json"}))
    done = {e["task"]: e for e in events if e["type"] == "done" and "task" in e}
    assert done[0]["content"]["exit_code"] == -1 and done[1]["content"]["exit_code"] != 0
    assert [r["status"] for r in events[-1]["content"]["results"]] == ["cancelled", "failed"]
    assert wait_for(lambda: not any(alive(c["pid"]) for c in fake_clis.calls()))


# -- chain ------------------------------------------------------------------------------------------


def test_chain_passes_previous_output(client, fake_clis):
    steps = [{"name": "analyze", "backend": "claude", "prompt": "first"},
             {"name": "improve", "backend": "codex", "prompt": "improve: {{previous}}"},
             {"backend": "gemini", "prompt": "[{{previous}}] and again [{{previous}}]"}]
    response = post(client, "chain", {"steps": steps})
    assert response.status_code == 200, response.json
    body = response.json
    assert (body["total_steps"], body["completed_steps"], body["failed_step"]) == (3, 3, 0)
    assert [(r["step"], r.get("name"), r["backend"]) for r in body["results"]] == [
        (1, "analyze", "claude"), (2, "improve", "codex"), (3, None, "gemini")]
    prompts = [c["prompt"] for c in sorted(fake_clis.calls(), key=lambda c: c["time"])]
    assert prompts == ["first", "improve: echo: first",
                       "[echo: improve: echo: first] and again [echo: improve: echo: first]"]
    assert body["results"][2]["output"] == f"echo: {prompts[2]}"
    assert client.get("/api/v1/sessions").json["total"] == 0


def test_chain_stop_on_failure(client, fake_clis):
    steps = [{"backend": "claude", "prompt": "one"}, {"backend": "gemini", "prompt": "two FAKE_FAIL=500"},
             {"backend": "codex", "prompt": "three {{previous}}"}]
    body = post(client, "chain", {"steps": steps, "stop_on_failure": True}).json
    assert (body["completed_steps"], body["failed_step"], len(body["results"])) == (1, 2, 2)
    assert body["results"][1]["status"] == "failed" and body["results"][1]["error"]
    assert len(fake_clis.calls()) == 2
    # Default: go on; the failed step's (empty) output is what {{previous}} becomes.
    body = post(client, "chain", {"steps": steps}).json
    assert (body["completed_steps"], body["failed_step"], len(body["results"])) == (2, 2, 3)
    assert fake_clis.last()["prompt"] == "three "


def test_chain_pass_working_dir(client, fake_clis, tmp_path):
    first, other = tmp_path / "first", tmp_path / "other"
    first.mkdir()
    other.mkdir()
    steps = [{"backend": "claude", "prompt": "a", "workdir": str(first)}, {"backend": "codex", "prompt": "b"},
             {"backend": "gemini", "prompt": "c", "workdir": str(other)}, {"backend": "claude", "prompt": "d"}]
    assert post(client, "chain", {"steps": steps, "pass_working_dir": True}).json["completed_steps"] == 4
    cwd = [c["cwd"] for c in sorted(fake_clis.calls(), key=lambda c: c["time"])]
    assert cwd == [str(first), str(first), str(other), str(other)]
    post(client, "chain", {"steps": steps[:2]})
    assert fake_clis.last()["cwd"] != str(first)


def test_chain_dry_run(client, fake_clis):
    body = post(client, "chain", {"steps": [{"backend": "claude", "prompt": "a"},
                                            {"backend": "codex", "prompt": "b {{previous}}"}], "dry_run": True}).json
    assert body["completed_steps"] == 2
    assert all(r["output"].startswith("Would execute: ") for r in body["results"])
    assert fake_clis.calls() == []


@pytest.mark.parametrize("body, status, field", [
    ({"steps": []}, 422, "body.steps"),
    ({"steps": [{"backend": "claude", "prompt": "{{previous}}"}]}, 400, "body.steps[0].prompt"),
    ({"steps": [{"backend": "claude", "prompt": "a"}, {"backend": "codex", "prompt": "{{session}}"}]}, 400,
     "body.steps[1].prompt"),
    ({"steps": [{"backend": "claude", "prompt": "a"}], "persist_sessions": True}, 422, "body.persist_sessions"),
    ({"steps": [{"backend": "claude", "prompt": "a"}], "pass_session_id": True}, 422, "body.pass_session_id"),
    ({"steps": [{"backend": "claude", "prompt": "a"}, {"backend": "nope", "prompt": "b"}]}, 400,
     "body.steps[1].backend"),
    ({"steps": [{"backend": "claude", "prompt": "a"}], "stop_on_failure": "yes"}, 422, "body.stop_on_failure"),
])
def test_chain_bad_requests_name_the_field(client, fake_clis, body, status, field):
    response = post(client, "chain", body)
    assert response.status_code == status, response.json
    assert field in [e["field"] for e in response.json["errors"]], response.json
    assert fake_clis.calls() == []


def test_chain_step_limit(make_app):
    client = make_app(parallel={"max_tasks": 1}).test_client()
    response = post(client, "chain", {"steps": [{"backend": "claude", "prompt": "a"}] * 2})
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "body.steps"


# -- compare ----------------------------------------------------------------------------------------


def test_compare_results_in_request_order(client, fake_clis):
    prompt = f"same question FAKE_DELAY={DELAY}"
    response = post(client, "compare", {"prompt": prompt, "backends": ["gemini", "claude", "codex"]})
    assert response.status_code == 200, response.json
    body = response.json
    assert body["prompt"] == prompt
    assert body["backends"] == ["gemini", "claude", "codex"]
    assert [r["backend"] for r in body["results"]] == ["gemini", "claude", "codex"]
    assert all(r["output"] == f"echo: {prompt}" for r in body["results"])
    assert body["completed"] == 3 and body["failed"] == 0
    times = starts(fake_clis.calls())
    assert times[-1] - times[0] < DELAY  # asked at once: all started before the first could end
    assert client.get("/api/v1/sessions").json["total"] == 0


def test_compare_sequential(client, fake_clis):
    body = post(client, "compare", {"prompt": "q FAKE_DELAY=0.3", "backends": ["claude", "codex"],
                                    "sequential": True}).json
    assert body["completed"] == 2
    calls = sorted(fake_clis.calls(), key=lambda c: c["time"])
    assert [c["backend"] for c in calls] == ["claude", "codex"]
    assert calls[1]["time"] - calls[0]["time"] >= 0.3


def test_compare_unknown_and_unavailable_backends_are_results(make_app, fake_clis):
    client = make_app(backends={"codex": {"command": "/nonexistent/codex"}}).test_client()
    body = post(client, "compare", {"prompt": "q", "backends": ["claude", "nope", "codex"]}).json
    assert [r["backend"] for r in body["results"]] == ["claude", "nope", "codex"]
    assert [r["status"] for r in body["results"]] == ["completed", "failed", "failed"]
    assert "unknown backend" in body["results"][1]["error"]
    assert "not available" in body["results"][2]["error"]
    assert body["completed"] == 1 and body["failed"] == 2


def test_compare_model_and_workdir(client, fake_clis, tmp_path):
    body = post(client, "compare", {"prompt": "q", "backends": ["claude"], "model": "haiku",
                                    "workdir": str(tmp_path)}).json
    assert body["results"][0]["model"] == "claude-haiku-5-5"
    assert fake_clis.last()["cwd"] == str(tmp_path) and "haiku" in fake_clis.last()["argv"]


@pytest.mark.parametrize("body, field", [
    ({"prompt": "q", "backends": []}, "body.backends"),
    ({"prompt": "", "backends": ["claude"]}, "body.prompt"),
    ({"backends": ["claude"]}, "body.prompt"),
    ({"prompt": "q", "backends": ["claude"], "workdir": "/nonexistent/dir"}, "body.workdir"),
    ({"prompt": "   ", "backends": ["claude"]}, "body.prompt"),
    ({"prompt": "q", "backends": ["claude"], "approval_mode": "auto"}, "body.approval_mode"),
])
def test_compare_bad_requests_name_the_field(client, fake_clis, body, field):
    response = post(client, "compare", body)
    assert 400 <= response.status_code < 500
    assert field in [e["field"] for e in response.json["errors"]], response.json
    assert fake_clis.calls() == []


def test_compare_stream(client, fake_clis):
    response = post(client, "compare", {"prompt": "q FAKE_CHUNKS=2", "backends": ["codex", "nope", "claude"],
                                        "output_format": "stream-json"})
    events = ndjson(response)
    assert events[-1]["type"] == "done" and "task" not in events[-1]
    assert [r["backend"] for r in events[-1]["content"]["results"]] == ["codex", "nope", "claude"]
    nope = [e for e in events if e.get("task") == 1]
    assert [e["type"] for e in nope] == ["error", "done"] and nope[0]["backend"] == "nope"
    for task, backend in ((0, "codex"), (2, "claude")):
        mine = [e for e in events if e.get("task") == task]
        assert mine[-1]["type"] == "done" and mine[-1]["content"]["exit_code"] == 0
        assert {e["backend"] for e in mine} == {backend}
        assert any(e["type"] == "message" for e in mine)


def test_compare_backend_limit(make_app):
    client = make_app(parallel={"max_tasks": 2}).test_client()
    response = post(client, "compare", {"prompt": "q", "backends": ["claude", "codex", "gemini"]})
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "body.backends"


# -- the gate and the spec --------------------------------------------------------------------------


def test_batches_share_the_servers_gate(make_app, fake_clis):
    """Two parallel requests of 2 tasks on a gate of 2: never more than 2 CLIs at once."""
    client = make_app(server={"max_concurrent_runs": 2}).test_client()
    peak, stop = [0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], sum(1 for c in fake_clis.calls() if alive(c["pid"])))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        bodies = []
        requests = [threading.Thread(target=lambda: bodies.append(post(
            client, "parallel", {"tasks": [{"backend": "claude", "prompt": "x FAKE_DELAY=0.4"}] * 2}).json))
            for _ in range(2)]
        for thread in requests:
            thread.start()
        for thread in requests:
            thread.join()
    finally:
        stop.set()
        watcher.join()
    assert [b["completed"] for b in bodies] == [2, 2]
    assert peak[0] <= 2


def test_responses_match_their_schemas(client):
    from clinvk.server.native import orchestration_schemas as schemas

    tasks = [{"backend": "claude", "prompt": "a", "name": "n"}, {"backend": "gemini", "prompt": "FAKE_FAIL=500"}]
    body = post(client, "parallel", {"tasks": tasks}).json
    assert schemas.ParallelResponseSchema().validate(body) == {}
    body = post(client, "chain", {"steps": tasks}).json
    assert schemas.ChainResponseSchema().validate(body) == {}
    body = post(client, "compare", {"prompt": "q", "backends": ["claude", "nope"]}).json
    assert schemas.CompareResponseSchema().validate(body) == {}
    events = ndjson(post(client, "compare", {"prompt": "q", "backends": ["claude", "nope"],
                                             "output_format": "stream-json"}))
    assert all(schemas.TaskStreamEventSchema().validate(e) == {} for e in events)


def test_openapi_documents_orchestration(client):
    spec = client.get("/openapi.json").json
    for path, request, response in (("/api/v1/parallel", "ParallelRequestSchema", "ParallelResponseSchema"),
                                    ("/api/v1/chain", "ChainRequestSchema", "ChainResponseSchema"),
                                    ("/api/v1/compare", "CompareRequestSchema", "CompareResponseSchema")):
        operation = spec["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(request)
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(response)
    schemas = spec["components"]["schemas"]
    assert {"ParallelTaskSchema", "ChainStepSchema", "TaskStreamEventSchema"} <= set(schemas)
    assert "task" in schemas["TaskStreamEventSchema"]["properties"]
