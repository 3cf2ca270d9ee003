"""A tenant's run quota in Redis (clinvk.cluster_gate), on a real redis-server: the count is shared by
every process and host, a dead holder's slot comes back after its lease, a live one keeps it, and a
Redis that does not answer makes the gate count on this host instead of failing runs."""

from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import signal
import threading
import time

import pytest

from clinvk.cluster_gate import RedisGate, counts_in_redis, redis_client
from clinvk.config import load_config
from clinvk.gate import ConcurrencyGate, GateFull, SharedGate, TenantGates
from tests.helpers import wait_for
from tests.server_process import free_port
from tests.services import redis_service  # noqa: F401 (fixture)


def gate(redis_url: str, name: str, limit: int, *, max_queued: int = 0, queue_timeout: float = 0,
         lease_secs: float = 30, fallback_limit: int | None = None) -> RedisGate:
    """A gate with a client of its own, as on another host."""
    fallback = ConcurrencyGate(fallback_limit or limit, max_queued, queue_timeout, label=f"tenant {name!r}")
    return RedisGate(redis_client(redis_url), name, limit, max_queued, queue_timeout, lease_secs=lease_secs,
                     fallback=fallback, label=f"tenant {name!r} at its limit")


def fresh_name() -> str:
    return "t" + secrets.token_hex(6)  # the Redis server is shared by the test session


def test_slots_count_once_for_every_host(redis_service):
    name = fresh_name()
    one, two, three = (gate(redis_service, name, 2) for _ in range(3))
    one.acquire()
    two.acquire()
    with pytest.raises(GateFull) as refused:
        three.acquire()
    assert "tenant" in str(refused.value) and "all 2 run slots are taken" in str(refused.value)
    assert refused.value.retry_after >= 1
    one.release()
    three.acquire()  # the slot host one gave back
    assert (one.running, two.running, three.running) == (0, 1, 1)
    two.release()
    three.release()
    assert redis_client(redis_service).zcard(f"clinvk:quota:{name}:runs") == 0


def test_a_waiter_on_another_host_gets_the_slot_given_back(redis_service):
    name = fresh_name()
    holder, waiter, third = (gate(redis_service, name, 1, max_queued=1, queue_timeout=30) for _ in range(3))
    holder.acquire()
    got = threading.Event()
    thread = threading.Thread(target=lambda: (waiter.acquire(), got.set()))
    thread.start()
    assert wait_for(lambda: waiter.queued == 1, within=10)
    with pytest.raises(GateFull, match="the wait queue is full"):
        third.acquire()  # the one place in the queue is taken, by a waiter of another host
    assert not got.is_set()
    holder.release()
    thread.join(10)
    assert got.is_set() and waiter.running == 1 and waiter.queued == 0
    waiter.release()


def test_a_waiter_gives_up_after_the_queue_timeout(redis_service):
    name = fresh_name()
    holder, waiter = gate(redis_service, name, 1), gate(redis_service, name, 1, max_queued=4, queue_timeout=0.3)
    holder.acquire()
    with pytest.raises(GateFull, match="none came free within 0.3 s"):
        waiter.acquire()
    assert redis_client(redis_service).zcard(f"clinvk:quota:{name}:queued") == 0  # its ticket is gone
    holder.release()


def _hold_until_killed(redis_url: str, name: str, lease_secs: float, ready) -> None:
    gate(redis_url, name, 1, lease_secs=lease_secs).acquire()
    ready.set()
    time.sleep(600)


def test_a_dead_hosts_slot_comes_back_after_its_lease(redis_service):
    name, lease = fresh_name(), 1.5
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    host = ctx.Process(target=_hold_until_killed, args=(redis_service, name, lease, ready))
    host.start()
    try:
        assert ready.wait(30)
        other = gate(redis_service, name, 1, lease_secs=lease)
        with pytest.raises(GateFull):
            other.acquire()  # the holder is alive: its slot is taken
        os.kill(host.pid, signal.SIGKILL)
        host.join(10)
        assert wait_for(lambda: _took(other), within=lease * 4, step=0.1)
        other.release()
    finally:
        if host.is_alive():
            host.kill()


def _took(g: RedisGate) -> bool:
    try:
        g.acquire()
    except GateFull:
        return False
    return True


def test_a_live_holder_keeps_its_slot_past_the_lease(redis_service):
    name, lease = fresh_name(), 1.5
    holder, other = gate(redis_service, name, 1, lease_secs=lease), gate(redis_service, name, 1, lease_secs=lease)
    holder.acquire()
    time.sleep(lease * 3)  # renewed every third of the lease meanwhile: expired twice over without it
    with pytest.raises(GateFull):
        other.acquire()
    holder.release()
    other.acquire()
    other.release()


def test_without_redis_the_gate_counts_on_this_host(caplog):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    g = gate(dead, fresh_name(), 5, fallback_limit=1)
    with caplog.at_level(logging.WARNING, logger="clinvk.cluster_gate"):
        g.acquire()  # never refused or failed because Redis is down
        with pytest.raises(GateFull, match="counted on this host"):
            g.acquire()  # the fallback's cap
    assert any("Redis is not answering" in r.getMessage() for r in caplog.records)
    g.release()
    g.acquire()
    g.release()
    assert g.running == 0 and g.fallback.running == 0


def test_a_configured_cap_counts_in_redis_the_default_share_per_host(tmp_path, redis_service):
    config = load_config(env={"CLINVK_HOME": str(tmp_path)}, overrides={
        "server": {"max_concurrent_runs": 8, "rate_limit_storage_uri": redis_service}})
    assert counts_in_redis(config)
    from clinvk.server import tenant_gates
    gates = tenant_gates(config)
    assert isinstance(gates.get("alice", 3, configured=3), RedisGate)
    assert isinstance(gates.get("bob", 4, configured=0), SharedGate)  # half of this host's slots
    assert gates.get("carol", 8, configured=0) is None  # the server's gate is enough
    assert isinstance(gates.get("dave", 8, configured=20), RedisGate)  # 20 across hosts, 8 here at most
    assert gates.get("dave", 8, configured=20).fallback.limit == 8
    local = tenant_gates(load_config(env={"CLINVK_HOME": str(tmp_path)}))
    assert isinstance(local.get("alice", 3, configured=3), SharedGate)
    assert not isinstance(TenantGates(lambda n, l: SharedGate(l, 0, 0, tmp_path / n), 8).get("x", 3, 3), RedisGate)
