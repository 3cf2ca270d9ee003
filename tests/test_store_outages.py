"""The shared services of several hosts going away and coming back while clinvk runs, on a real
PostgreSQL and Redis (tests/services.py): a restart costs no request, an outage answers 503 naming
the session store (never a 500), and clinvk recovers by itself when the service is back."""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest

from clinvk.sessions import postgresql as pg
from tests.helpers import wait_for
from tests.services import own_postgres, own_redis  # noqa: F401 (fixtures)


@pytest.fixture
def pg_client(make_app, own_postgres, monkeypatch):
    monkeypatch.setattr(pg, "CONNECT_TIMEOUT_SECS", 1)  # how long a request waits for a store that is down
    app = make_app(session={"store": own_postgres.create_database()})
    yield app.test_client()
    app.extensions["clinvk.service"].store.close()


def prompt(client, **body):
    return client.post("/api/v1/prompt", json={"backend": "claude", **body})


@pytest.mark.parametrize("stop", ["fast", "immediate"])
def test_postgres_restarted_under_a_running_app_costs_no_request(pg_client, own_postgres, stop):
    first = prompt(pg_client, prompt="before")
    assert first.status_code == 200, first.text
    sid = first.json["session_id"]
    own_postgres.pause(stop)
    own_postgres.resume()  # every pooled connection is dead now
    listed = pg_client.get("/api/v1/sessions")
    assert listed.status_code == 200, listed.text
    assert listed.json["total"] == 1
    turn = prompt(pg_client, session_id=sid, prompt="after")
    assert turn.status_code == 200, turn.text
    assert pg_client.get(f"/api/v1/sessions/{sid}").json["turn_count"] == 2
    job = pg_client.post("/api/v1/jobs", json={"backend": "claude", "prompt": "a job"})
    assert job.status_code == 202, job.text
    assert wait_for(lambda: pg_client.get(f"/api/v1/jobs/{job.json['id']}").json["status"] == "completed",
                    within=60)
    assert pg_client.get("/health").json["session_store"]["available"] is True


def unavailable(answer) -> bool:
    return (answer.status_code == 503 and answer.json["error"] == "store_unavailable"
            and "session store" in answer.json["message"])


def test_postgres_down_answers_503_and_clinvk_recovers_when_it_is_back(pg_client, own_postgres, monkeypatch):
    from psycopg_pool.base import AttemptWithBackoff
    # The pool's reconnection backoff as it is after a long outage (1, 2, 4… s grows to minutes).
    monkeypatch.setattr(AttemptWithBackoff, "INITIAL_DELAY", 60.0)
    sid = prompt(pg_client, prompt="before").json["session_id"]
    own_postgres.pause()
    try:
        for answer in (pg_client.get("/api/v1/sessions"), pg_client.get(f"/api/v1/sessions/{sid}"),
                       prompt(pg_client, session_id=sid, prompt="while down"),
                       prompt(pg_client, prompt="a new session while down"),
                       pg_client.post("/api/v1/jobs", json={"backend": "claude", "prompt": "a job"})):
            assert unavailable(answer), answer.text
        answer = pg_client.post("/openai/v1/responses", json={"model": "claude", "input": "hi"})
        assert answer.status_code == 503 and answer.json["error"]["code"] == "store_unavailable", answer.text
        assert answer.headers["Retry-After"] == "5" and "x-should-retry" not in answer.headers  # nothing ran
        health = pg_client.get("/health")
        assert health.status_code == 200 and health.json["status"] == "unhealthy"
        assert health.json["session_store"]["available"] is False
    finally:
        own_postgres.resume()
    back = pg_client.get("/api/v1/sessions")  # the first request after the outage already gets through
    assert back.status_code == 200 and back.json["total"] == 1, back.text
    assert prompt(pg_client, session_id=sid, prompt="after").status_code == 200
    assert pg_client.get("/health").json["status"] == "ok"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_turn_running_when_postgres_goes_away_ends_its_cli_and_says_why(
        make_app, own_postgres, fake_clis, monkeypatch):
    monkeypatch.setattr(pg, "CONNECT_TIMEOUT_SECS", 1)
    ttl = 2  # the lease another host could take the session over after, the store being back
    app = make_app(session={"store": own_postgres.create_database(), "turn_lease_secs": ttl})
    client = app.test_client()
    sid = prompt(client, prompt="one").json["session_id"]
    answers = []
    turn = threading.Thread(target=lambda: answers.append(prompt(client, session_id=sid, prompt="FAKE_HANG two")))
    turn.start()
    try:
        assert wait_for(lambda: any("two" in (c.get("prompt") or "") for c in fake_clis.calls()), within=30)
        pid = next(c["pid"] for c in fake_clis.calls() if "two" in (c.get("prompt") or ""))
        own_postgres.pause()
        turn.join(60)
        assert not turn.is_alive(), "the turn is still running with its session store gone"
        assert not alive(pid)
        answer = answers[0]  # a failed run, as the native API answers one: exit_code and error
        assert answer.status_code == 200 and answer.json["exit_code"] != 0, answer.text
        assert "session store stopped answering" in answer.json["error"], answer.text
    finally:
        if own_postgres.data.exists():
            own_postgres.resume()
        turn.join(30)
    assert prompt(client, session_id=sid, prompt="three").status_code == 200
    app.extensions["clinvk.service"].store.close()


ALICE = "sk-alice-key"


def test_redis_restarted_or_down_never_fails_a_request_and_counting_returns_to_it(make_app, own_redis, caplog):
    import redis
    app = make_app(server={"api_keys": [f"alice:{ALICE}"], "rate_limit_enabled": True, "rate_limit_rps": 100,
                           "rate_limit_burst": 100, "rate_limit_storage_uri": own_redis.url},
                   tenants={"alice": {"max_concurrent_runs": 2}})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ALICE}"}

    def requests_pass() -> bool:
        statuses = [client.get("/api/v1/backends", headers=headers).status_code,
                    client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "ephemeral": True},
                                headers=headers).status_code]
        assert statuses == [200, 200], statuses  # never a 5xx, whatever Redis does
        return True

    def counted_in_redis() -> bool:
        requests_pass()
        keys = redis.Redis.from_url(own_redis.url).keys("*")
        return any(b"LIMITER" in k or b"clinvk/" in k for k in keys if b"quota" not in k)

    caplog.set_level(logging.INFO)
    assert counted_in_redis()
    for outage in ("restart", "down"):
        own_redis.pause()
        if outage == "restart":
            own_redis.resume()  # empty, every connection of the limiter and the gate cut
        for _ in range(3):
            requests_pass()
        if outage == "down":
            own_redis.resume()
        assert wait_for(counted_in_redis, within=60, step=0.5), f"counting never returned to Redis after {outage}"
        said = [r.getMessage() for r in caplog.records]
        if outage == "down":  # each side logs going away and coming back once (a restart goes unnoticed)
            assert sum("falling back to in-memory storage" in m for m in said) == 1, said
            assert sum("Rate limit storage recovered" in m for m in said) == 1, said
            assert sum("Redis is not answering" in m for m in said) == 1, said
            assert sum("Redis answers again" in m for m in said) == 1, said
        caplog.clear()
    gates = app.extensions["clinvk.service"].tenant_gates
    assert gates.get("alice", 2, configured=2).running == 0  # every slot given back, Redis or not


def test_a_hung_redis_never_fails_a_request_and_the_limiter_gives_up_as_soon_as_the_gate(make_app, own_redis):
    from clinvk.cluster_gate import redis_client
    app = make_app(server={"api_keys": [f"alice:{ALICE}"], "rate_limit_enabled": True, "rate_limit_rps": 100,
                           "rate_limit_burst": 100, "rate_limit_storage_uri": own_redis.url},
                   tenants={"alice": {"max_concurrent_runs": 2}})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {ALICE}"}
    # Connections are accepted (by the kernel) but never answered: without a timeout of its own, each
    # request that asks Redis waits for the client library's default.
    limiter_redis = app.extensions["clinvk.limiter"]._storage.storage
    gate_redis = redis_client(own_redis.url)
    for option in ("socket_timeout", "socket_connect_timeout"):
        assert (limiter_redis.connection_pool.connection_kwargs.get(option)
                == gate_redis.connection_pool.connection_kwargs[option]), option
    os.kill(own_redis.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(2):
            assert client.get("/api/v1/backends", headers=headers).status_code == 200
            assert client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "hi", "ephemeral": True},
                               headers=headers).status_code == 200
    finally:
        os.kill(own_redis.proc.pid, signal.SIGCONT)


def test_the_openapi_document_names_the_store_outage_where_the_store_is_used(client):
    paths = client.get("/openapi.json").json["paths"]
    for path, method in [("/api/v1/sessions", "get"), ("/api/v1/sessions/{session_id}", "delete"),
                         ("/api/v1/prompt", "post"), ("/api/v1/jobs/{job_id}", "get"),
                         ("/openai/v1/responses/{response_id}", "get")]:
        answer = paths[path][method]["responses"]["503"]
        assert "store_unavailable" in answer["description"], (path, method)
        assert "Retry-After" in answer["headers"], (path, method)
    prompt_503 = paths["/api/v1/prompt"]["post"]["responses"]["503"]["description"]
    assert "Backend not available" in prompt_503  # the view's own reason is kept beside it
    assert "application/json" in paths["/openai/v1/responses/{response_id}"]["get"]["responses"]["503"]["content"]
    for path, method in [("/api/v1/backends", "get"), ("/openai/v1/models", "get"), ("/health", "get")]:
        assert "503" not in paths[path][method]["responses"], (path, method)
