"""The warm pool through the API, with the fake CLIs' long-lived modes (tests/fakes): a repeated
ephemeral run is served by a process started ahead, with the reply and usage a cold run gives; each
warm process serves one run; the pool's bounds, expiry and metrics."""

from __future__ import annotations

import os

import pytest

from tests.helpers import ndjson, wait_for, wait_gone

POOLED = ["claude", "codex"]


def pool_of(app):
    return app.extensions["clinvk.service"].warm_pool


def ask(client, backend, prompt="hello FAKE_CHUNKS=3", **extra):
    response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": prompt, "ephemeral": True, **extra})
    assert response.status_code == 200, response.json
    return response.json


def warmed(app, backend, **extra):
    """An app whose pool holds a ready process for ``backend``'s ephemeral runs (after one cold run)."""
    client = app.test_client()
    ask(client, backend, **extra)
    assert wait_for(lambda: pool_of(app).idle() == 1, 30)
    return client


def answer(body):
    return body["output"], body["token_usage"], body["exit_code"], body.get("error")


@pytest.mark.parametrize("backend", POOLED)
def test_a_pooled_run_answers_like_a_cold_one(make_app, fake_clis, backend):
    cold = ask(make_app(run={"warm_pool": {"enabled": False}}).test_client(), backend)
    app = make_app()
    client = warmed(app, backend)
    pooled = ask(client, backend)
    assert pool_of(app).counts["hit"] == 1 and pool_of(app).counts["miss"] == 1
    assert answer(pooled) == answer(cold) and pooled["output"].replace("\n", "") == "echo: hello FAKE_CHUNKS=3"
    warm_call = fake_clis.last()
    assert warm_call["prompt"] == "hello FAKE_CHUNKS=3"
    assert ("app-server" in warm_call["argv"]) if backend == "codex" else ("stream-json" in warm_call["argv"])


@pytest.mark.parametrize("backend", POOLED)
def test_a_warm_process_serves_one_run_and_is_replaced(make_app, fake_clis, backend):
    app = make_app()
    client = warmed(app, backend)
    pids = []
    for _ in range(2):
        ask(client, backend)
        pids.append(fake_clis.last()["pid"])
        assert wait_for(lambda: pool_of(app).idle() == 1, 30)  # its replacement is already waiting
    assert pids[0] != pids[1]
    assert wait_gone(*pids)  # told to exit at the result line, reaped in the background
    assert pool_of(app).counts["hit"] == 2


@pytest.mark.parametrize("backend", POOLED)
def test_a_pooled_stream_gives_the_cold_events(make_app, fake_clis, backend):
    def events(client):
        response = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "hi FAKE_CHUNKS=3",
                                                       "ephemeral": True, "output_format": "stream-json"})
        return [(e["type"], e["content"].get("text")) for e in ndjson(response) if e["type"] in ("message", "init")]

    cold = events(make_app(run={"warm_pool": {"enabled": False}}).test_client())
    app = make_app()
    client = app.test_client()
    events(client)
    assert wait_for(lambda: pool_of(app).idle() == 1, 30)
    assert events(client) == cold and pool_of(app).counts["hit"] == 1


@pytest.mark.parametrize("backend", POOLED)
def test_a_failed_pooled_run_reports_the_cli_error(make_app, fake_clis, backend):
    app = make_app()
    client = warmed(app, backend)
    body = client.post("/api/v1/prompt", json={"backend": backend, "prompt": "x FAKE_FAIL=429",
                                               "ephemeral": True}).json
    cold = make_app(run={"warm_pool": {"enabled": False}}).test_client().post(
        "/api/v1/prompt", json={"backend": backend, "prompt": "x FAKE_FAIL=429", "ephemeral": True}).json
    assert pool_of(app).counts["hit"] == 1
    assert body["exit_code"] == cold["exit_code"] == 1 and body["error"] == cold["error"]


def test_a_pooled_run_that_hangs_times_out_and_its_group_is_killed(make_app, fake_clis):
    app = make_app(server={"request_timeout_secs": 2})
    client = warmed(app, "codex")
    body = client.post("/api/v1/prompt", json={"backend": "codex", "prompt": "x FAKE_HANG=1",
                                               "ephemeral": True}).json
    assert body.get("timed_out") is True or "timed out" in (body.get("error") or ""), body
    assert wait_gone(fake_clis.last()["pid"])


def test_persistent_runs_and_other_launches_are_not_served_from_the_pool(make_app, fake_clis):
    app = make_app()
    client = warmed(app, "claude")
    persistent = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hello"}).json
    assert persistent["session_id"] and "--input-format" not in fake_clis.last()["argv"]
    ask(client, "claude", model="haiku")  # another command line: another key, a miss
    assert pool_of(app).counts["hit"] == 0 and pool_of(app).counts["miss"] == 2


def test_gemini_is_not_pooled_by_default(make_app, fake_clis):
    app = make_app()
    client = app.test_client()
    ask(client, "gemini")
    ask(client, "gemini")
    assert pool_of(app).counts == {"hit": 0, "miss": 0, "discard": 0}
    assert all("--acp" not in call["argv"] for call in fake_clis.calls())


def test_the_pool_is_off_with_one_setting(make_app, fake_clis):
    app = make_app(run={"warm_pool": {"enabled": False}})
    ask(app.test_client(), "codex")
    ask(app.test_client(), "codex")
    assert pool_of(app) is None and all("app-server" not in c["argv"] for c in fake_clis.calls())


def test_bounds_idle_expiry_and_metrics(make_app, fake_clis):
    app = make_app(server={"metrics_enabled": True}, run={"warm_pool": {"max_processes": 1,
                                                                        "idle_expiry_secs": 1.5}})
    client = warmed(app, "claude")
    ask(client, "codex")  # a miss; no room for a second waiting process
    assert not wait_for(lambda: pool_of(app).idle() > 1, 1.0)
    # claude's key and then codex's were not asked for again within 1.5 s: their processes go
    assert wait_for(lambda: pool_of(app).idle() == 0 and pool_of(app).counts["discard"] >= 1, 30)
    metrics = client.get("/metrics").text
    assert 'clinvk_warm_pool_events_total{backend="claude",event="miss"} 1.0' in metrics
    assert 'clinvk_warm_pool_events_total{backend="codex",event="miss"} 1.0' in metrics
    assert 'event="discard"' in metrics


def test_idle_expiry_leaves_no_process(make_app, fake_clis):
    """The expired processes are gone, not only out of the pool's count."""
    app = make_app(run={"warm_pool": {"idle_expiry_secs": 1.0}})
    warmed(app, "claude")
    assert wait_for(lambda: len(processes_of(fake_clis)) == 1, 30)  # the cold run is reaped; the warm one waits
    assert wait_for(lambda: pool_of(app).counts["discard"] == 1, 30)
    assert wait_for(lambda: not processes_of(fake_clis), 10), "an expired warm process still runs"


def processes_of(fake_clis) -> list[int]:
    """The live fake CLI processes of this test (they carry its log's path)."""
    needle = f"FAKE_CLI_LOG={fake_clis.log}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    environ = f.read()
                with open(f"/proc/{name}/stat") as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                continue
            if needle in environ and not zombie:
                found.append(int(name))
    return found


def test_memory_cap_discards_waiting_processes(make_app, fake_clis, monkeypatch):
    from clinvk.warm import pool as pool_module
    monkeypatch.setattr(pool_module, "RSS_EVERY_SECS", 0.0)
    app = make_app(run={"warm_pool": {"max_memory_mb": 1}})  # any real process is bigger
    ask(app.test_client(), "claude")
    assert wait_for(lambda: pool_of(app).counts["discard"] >= 1, 30)
