"""Rate limits (flask-limiter; memory and a real Redis across gunicorn workers) and the concurrency
gate (run slots shared by every worker through flock'ed files)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from clinvk.gate import ConcurrencyGate, GateFull, SharedGate
from clinvk.server.http.ratelimit import RateLimitConfigError, limit_for

from tests.helpers import wait_for
from tests.server_process import ServerProcess, free_port
from tests.services import redis_server  # noqa: F401 (fixture)

KEY1, KEY2 = "sk-rl-one-0123456789", "sk-rl-two-0123456789"


# ---------------------------------------------------------------------------------- the mapping

@pytest.mark.parametrize("rps,burst,expected", [
    (10, 20, (20, 2)),  # the defaults: 20 per 2 s
    (1, 10, (10, 10)),
    (10, 10, (10, 1)),
    (10, 25, (25, 3)),  # never more than rps on average: 25 per 3 s
    (100, 20, (100, 1)),  # a burst below rps cannot hold back one second's worth
    (3, 1, (3, 1)),
])
def test_rps_and_burst_become_one_moving_window(rps, burst, expected):
    amount, window = limit_for(rps, burst)
    assert (amount, window) == expected
    assert amount / window <= rps  # the sustained rate never exceeds rps
    assert amount >= burst  # a burst of `burst` requests at once is allowed


# ------------------------------------------------------------------------------- in process

@pytest.fixture
def limited(make_app):
    def make(**server):
        config = {"rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": 3, **server}
        return make_app(server=config).test_client()
    return make


def test_burst_then_429_with_retry_after_and_limit_headers(limited):
    client = limited()
    answers = [client.get("/api/v1/backends") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers)
    assert all("Retry-After" not in a.headers for a in answers[:3])  # only where it means something
    refused = answers[3]
    assert 1 <= int(refused.headers["Retry-After"]) <= 3
    body = refused.get_json()
    assert refused.mimetype == "application/problem+json"
    assert body["status"] == 429 and body["error"] == "rate_limit_exceeded"
    assert "at most 3 requests per 3 s" in body["message"]


@pytest.mark.parametrize("path,body,check", [
    ("/openai/v1/chat/completions", {"model": "claude", "messages": [{"role": "user", "content": "x"}]},
     lambda b: b["error"]["type"] == "rate_limit_error"),
    ("/anthropic/v1/messages", {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
     lambda b: b["type"] == "error" and b["error"]["type"] == "rate_limit_error"),
])
def test_429_in_the_api_style_of_the_path(limited, fake_clis, path, body, check):
    client = limited(rate_limit_burst=1)
    assert client.post(path, json=body).status_code == 200
    refused = client.post(path, json=body)
    assert refused.status_code == 429 and check(refused.get_json())
    assert len(fake_clis.calls()) == 1


def test_counted_per_api_key(limited):
    client = limited(api_keys=[KEY1, KEY2], rate_limit_burst=2)
    one, two = {"X-Api-Key": KEY1}, {"Authorization": f"Bearer {KEY2}"}
    assert [client.get("/api/v1/backends", headers=one).status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get("/api/v1/backends", headers=two).status_code for _ in range(3)] == [200, 200, 429]


def test_counted_per_client_ip_without_keys_and_spoofing_does_not_help(limited):
    client = limited(rate_limit_burst=2)

    def get(ip, **headers):
        return client.get("/api/v1/backends", headers=headers, environ_base={"REMOTE_ADDR": ip}).status_code

    assert [get("198.51.100.1") for _ in range(3)] == [200, 200, 429]
    assert get("198.51.100.1", **{"X-Forwarded-For": "203.0.113.50"}) == 429  # not a trusted proxy
    assert [get("198.51.100.2") for _ in range(2)] == [200, 200]


def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(limited):
    client = limited(rate_limit_burst=1, trusted_proxies=["10.0.0.0/8"])

    def get(forwarded):
        return client.get("/api/v1/backends", headers={"X-Forwarded-For": forwarded},
                          environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code

    assert [get("203.0.113.1"), get("203.0.113.1"), get("203.0.113.2")] == [200, 429, 200]


def test_unauthenticated_attempts_are_limited_by_ip(limited):
    client = limited(api_keys=[KEY1], rate_limit_burst=2)
    statuses = [client.get("/api/v1/backends", headers={"X-Api-Key": f"guess-{i}"}).status_code for i in range(4)]
    assert statuses == [401, 401, 429, 429]
    assert client.get("/api/v1/backends", headers={"X-Api-Key": KEY1}).status_code == 200  # own bucket


def test_health_docs_metrics_and_preflights_are_not_limited(limited):
    client = limited(rate_limit_burst=1, metrics_enabled=True)
    for _ in range(4):
        for path in ("/health", "/openapi.json", "/docs", "/metrics"):
            assert client.get(path).status_code == 200, path
        assert client.options("/api/v1/prompt", headers={"Origin": "http://localhost:3000",
                                                         "Access-Control-Request-Method": "POST"}).status_code == 200
    assert client.get("/api/v1/backends").status_code == 200


def test_429_carries_cors_headers(limited):
    client = limited(rate_limit_burst=1)
    origin = {"Origin": "http://localhost:3000"}
    client.get("/api/v1/backends", headers=origin)
    refused = client.get("/api/v1/backends", headers=origin)
    assert refused.status_code == 429
    assert refused.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
    assert "Retry-After" in refused.headers["Access-Control-Expose-Headers"]


def test_disabled_means_no_limit_and_no_headers(client):
    answers = [client.get("/api/v1/backends") for _ in range(30)]
    assert {a.status_code for a in answers} == {200}
    assert "X-RateLimit-Limit" not in answers[0].headers


def test_an_unusable_storage_uri_is_a_clear_startup_error(make_app):
    with pytest.raises(RateLimitConfigError, match="server.rate_limit_storage_uri 'nosuch://x' cannot be used"):
        make_app(server={"rate_limit_enabled": True, "rate_limit_storage_uri": "nosuch://x"})


# ----------------------------------------------------------------------------- a real Redis

def spread(server, count: int, headers: dict | None = None, path="/api/v1/backends") -> list[int]:
    """``count`` concurrent GETs, each on its own connection, so gunicorn's workers share them."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: server.get(path, fresh=True, headers=headers or {}).status_code,
                             range(count)))


@pytest.mark.gunicorn
def test_redis_counts_once_across_three_gunicorn_workers(redis_server, fake_clis, tmp_path):
    import redis

    config = {"server": {"rate_limit_enabled": True, "rate_limit_rps": 1, "rate_limit_burst": 10,
                         "rate_limit_storage_uri": redis_server}}
    with ServerProcess(tmp_path, config=config, workers=3, env={"CLINVK_API_KEYS": f"{KEY1},{KEY2}"}) as server:
        statuses = spread(server, 24, {"X-Api-Key": KEY1}) + spread(server, 6, {"X-Api-Key": KEY1})
        other_key = spread(server, 12, {"Authorization": f"Bearer {KEY2}"})
        lines = server.request_log()
    # Burst 10 per 10 s for each key, whichever worker answered: with per-worker counting up to 30
    # of the first 30 would get through.
    assert statuses.count(200) == 10 and statuses.count(429) == 20
    assert other_key.count(200) == 10 and other_key.count(429) == 2
    workers = {line["worker"] for line in lines if line["route"] == "/api/v1/backends"}
    assert len(workers) >= 2, f"all requests went to one worker ({workers}): the test proved nothing"
    keys = redis.Redis.from_url(redis_server).keys("*")
    assert keys and all(b"clinvk" in k for k in keys)  # the counters live in Redis, per key id, not key
    assert not any(KEY1.encode() in k or KEY2.encode() in k for k in keys)


@pytest.mark.gunicorn
def test_redis_down_never_fails_a_request(fake_clis, tmp_path):
    config = {"server": {"rate_limit_enabled": True, "rate_limit_rps": 100, "rate_limit_burst": 100,
                         "rate_limit_storage_uri": f"redis://127.0.0.1:{free_port()}/0"}}
    with ServerProcess(tmp_path, config=config, workers=2) as server:
        statuses = spread(server, 10)
        assert statuses == [200] * 10
        assert server.post("/api/v1/prompt", {"backend": "claude", "prompt": "hi"}).json()["output"] == "echo: hi"
    assert "falling back to in-memory storage" in server.stderr_text()


# ------------------------------------------------------------------------ the concurrency gate

@pytest.mark.parametrize("kind", ["local", "shared"])
def test_gate_caps_runs_and_queues_a_bounded_number(tmp_path, kind):
    gate = ConcurrencyGate(2, 1, 5.0) if kind == "local" else SharedGate(2, 1, 5.0, tmp_path / "gate")
    seen = []
    gate.listeners.append(lambda running, queued: seen.append((running, queued)))
    gate.acquire()
    gate.acquire()
    assert (gate.running, gate.queued) == (2, 0)
    got_slot = threading.Event()
    waiter = threading.Thread(target=lambda: (gate.acquire(), got_slot.set()))
    waiter.start()
    assert wait_for(lambda: gate.queued == 1, within=5)
    with pytest.raises(GateFull) as full:  # the queue (1) is full: refused at once
        gate.acquire()
    assert full.value.retry_after >= 1 and "queue is full" in str(full.value)
    gate.release()
    assert got_slot.wait(5)
    waiter.join()
    assert (gate.running, gate.queued) == (2, 0)
    gate.release()
    gate.release()
    assert (gate.running, gate.queued) == (0, 0)
    assert (0, 1) not in seen and (2, 1) in seen and seen[-1] == (0, 0)


@pytest.mark.parametrize("kind", ["local", "shared"])
def test_gate_queue_timeout(tmp_path, kind):
    gate = ConcurrencyGate(1, 4, 0.3) if kind == "local" else SharedGate(1, 4, 0.3, tmp_path / "gate")
    gate.acquire()
    with pytest.raises(GateFull, match="none came free within 0.3 s"):
        gate.acquire()
    assert gate.queued == 0
    gate.release()
    with gate.slot():
        assert gate.running == 1
    assert gate.running == 0


@pytest.mark.parametrize("kind", ["local", "shared"])
def test_gate_without_a_queue_refuses_at_once(tmp_path, kind):
    gate = ConcurrencyGate(1, 0, 30) if kind == "local" else SharedGate(1, 0, 30, tmp_path / "gate")
    gate.acquire()
    started = time.monotonic()
    with pytest.raises(GateFull):
        gate.acquire()
    assert time.monotonic() - started < 5  # liveness: it did not wait out the 30 s queue timeout


def test_shared_gate_under_many_threads_never_lets_more_than_its_limit_run(tmp_path):
    """The slot files are locked outside the gate's own lock: threads racing for them still never hold
    more than the limit, waiters are woken, and every slot is free again afterwards (another process
    can take them all)."""
    gate = SharedGate(4, 64, 30.0, tmp_path / "gate")
    inside, most, lock, errors = [0], [0], threading.Lock(), []

    def worker() -> None:
        try:
            for _ in range(40):
                with gate.slot():
                    with lock:
                        inside[0] += 1
                        most[0] = max(most[0], inside[0])
                    time.sleep(0.0005)
                    with lock:
                        inside[0] -= 1
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == [] and most[0] <= 4 and (gate.running, gate.queued) == (0, 0)
    other = subprocess.run([os.sys.executable, "-c", "import sys\nfrom clinvk.gate import SharedGate\n"
                            "gate = SharedGate(4, 0, 0, sys.argv[1])\nfor _ in range(4): gate.acquire()\n",
                            str(tmp_path / "gate")], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    assert other.returncode == 0, other.stderr


_HOLDER = """
import sys, time
from clinvk.gate import SharedGate
gate = SharedGate(int(sys.argv[2]), 0, 0, sys.argv[1])
gate.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_shared_gate_counts_other_processes_and_frees_a_dead_ones_slot(tmp_path):
    directory = tmp_path / "gate"
    holder = subprocess.Popen([os.sys.executable, "-c", _HOLDER, str(directory), "2"], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        assert holder.stdout.readline().strip() == "held"
        gate = SharedGate(2, 0, 0, directory)
        gate.acquire()  # the second slot
        with pytest.raises(GateFull):  # the other process holds the first one
            gate.acquire()
        holder.kill()  # a worker killed while running: the kernel drops its lock
        holder.wait()
        gate.acquire()
        assert gate.running == 2
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_shared_gate_waiter_gets_a_slot_freed_by_another_process(tmp_path):
    directory = tmp_path / "gate"
    holder = subprocess.Popen([os.sys.executable, "-c", _HOLDER, str(directory), "1"], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        assert holder.stdout.readline().strip() == "held"
        gate = SharedGate(1, 1, 20, directory)
        threading.Timer(0.3, holder.kill).start()
        gate.acquire()  # waits in the queue until the other process's slot is free
        assert gate.running == 1 and gate.queued == 0
        gate.release()
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.wait()


def test_gate_full_is_429_with_retry_after_and_starts_nothing(make_app, fake_clis):
    client = make_app(server={"max_concurrent_runs": 1, "max_queued_runs": 0}).test_client()
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(client.post, "/api/v1/prompt", json={"backend": "claude", "prompt": "FAKE_DELAY=3 slow"})
        assert wait_for(lambda: len(fake_clis.calls()) == 1, within=10)
        refused = client.post("/api/v1/prompt", json={"backend": "claude", "prompt": "fast"})
        assert slow.result().status_code == 200
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.get_json()["status"] == 429
    assert len(fake_clis.calls()) == 1


@pytest.mark.gunicorn
def test_gate_holds_across_three_gunicorn_workers(fake_clis, tmp_path):
    config = {"server": {"max_concurrent_runs": 2, "max_queued_runs": 2, "queue_timeout_secs": 60}}
    with ServerProcess(tmp_path, config=config, workers=3) as server:
        def run(i):
            response = server.post("/api/v1/prompt", {"backend": "claude", "prompt": f"FAKE_DELAY=3 run {i}"},
                                   fresh=True)
            return response.status_code, response.headers.get("Retry-After")

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(run, range(6)))
        lines = server.request_log()
    statuses = sorted(status for status, _ in results)
    # 2 run at once, 2 wait for them, 2 are refused at once: the same whichever worker got each.
    assert statuses == [200, 200, 200, 200, 429, 429], results
    assert all(int(retry) >= 1 for status, retry in results if status == 429)
    workers = {line["worker"] for line in lines if line["route"] == "/api/v1/prompt"}
    assert len(workers) >= 2, "all requests went to one worker: the test proved nothing"
    calls = fake_clis.calls()
    assert len(calls) == 4
    assert max_overlap(calls) <= 2


def max_overlap(calls: list[dict], duration: float = 3.0) -> int:
    """The most runs that were alive at one instant (a run lives ≥ its FAKE_DELAY after its start)."""
    starts = sorted(c["time"] for c in calls)
    return max(sum(1 for s in starts if s <= t < s + duration - 0.05) for t in starts)
