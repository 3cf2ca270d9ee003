"""A tenant's concurrent-run quota counted once for all hosts: run slots as expiring leases in Redis.

A held slot is a member of the sorted set ``clinvk:quota:<tenant>:runs``, scored by the moment its
lease ends on Redis's own clock (hosts' clocks never matter). Taking one is a single Lua script:
drop the expired members, then add ours if fewer than ``limit`` remain — atomic, one round trip.
A thread in each process renews the leases it holds every third of ``lease_secs``; a host that dies
stops renewing, so its slots expire within ``lease_secs`` and are never leaked. Callers waiting for
a slot are members of ``…:queued`` the same way, so ``max_queued`` also counts across hosts; a
waiter polls (5 ms doubling to 100 ms) and is woken at once by a release in its own process.

Redis going away never refuses or fails a run: the gate then counts on this host only (the
``fallback`` gate, the tenant's cap among this host's workers), logs it once, and counts in Redis
again as soon as it answers — as the rate limiter does with the same storage.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import threading
import time
from typing import Any

from .config import Config
from .gate import Gate, GateFull

log = logging.getLogger(__name__)

FIRST_POLL_SECS = 0.005
MAX_POLL_SECS = 0.1

# KEYS: runs, queued. ARGV: token, limit, max_queued, lease ms, may queue ("1"/"0").
# Returns 1: slot taken; 0: waiting in the queue (ticket added or renewed); -1: no room to wait.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 2 * lease)
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
if ARGV[5] == '1' and (redis.call('ZSCORE', KEYS[2], ARGV[1])
                       or redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3])) then
  redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], 2 * lease)
  return 0
end
return -1
"""

# KEYS: runs. ARGV: lease ms, tokens... Only existing members (XX): a slot released while its renewal
# was on the way must not come back.
_RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], 2 * lease)
return #ARGV - 1
"""


def counts_in_redis(config: Config) -> bool:
    """Whether limits live in Redis (``server.rate_limit_storage_uri``), so tenants' caps count across hosts."""
    return config.server.rate_limit_storage_uri.startswith(("redis://", "rediss://", "redis+unix://"))


# How long a Redis call may take before Redis counts as not answering (a loopback or LAN Redis
# answers in well under a millisecond): a dead or hung Redis must not hang requests.
REDIS_TIMEOUTS = {"socket_timeout": 1, "socket_connect_timeout": 1}


def redis_client(uri: str) -> Any:
    """A client for ``uri`` that gives up quickly: a gate must not hang a request on a dead Redis."""
    import redis  # the "redis" extra; serve checks it is installed before any worker starts
    if uri.startswith("redis+unix://"):  # the rate limiter's spelling of a Unix socket
        uri = "unix://" + uri.removeprefix("redis+unix://")
    return redis.Redis.from_url(uri, **REDIS_TIMEOUTS)


class RedisGate(Gate):
    """One tenant's run slots, shared by every process of every host that uses the same Redis."""

    def __init__(self, client: Any, name: str, limit: int, max_queued: int, queue_timeout: float, *,
                 lease_secs: float, fallback: Gate, label: str):
        super().__init__(limit, max_queued, queue_timeout, label)
        self.client = client
        self.name = name
        self.runs_key = f"clinvk:quota:{name}:runs"
        self.queued_key = f"clinvk:quota:{name}:queued"
        self.lease_ms = max(1, int(lease_secs * 1000))
        self.fallback = fallback
        self._take = client.register_script(_TAKE)
        self._renew = client.register_script(_RENEW)
        self._cond = threading.Condition()
        self._held: list[str | None] = []  # a token per slot held in Redis; None for one of the fallback's
        self._numbers = itertools.count(1)
        self._host = socket.gethostname()  # names a token's host for whoever reads Redis; not asked per run
        self._pid = os.getpid()
        self._renewer: threading.Thread | None = None
        self._unreachable = False

    # -- taking and giving back -------------------------------------------------------------------

    def acquire(self) -> None:
        token = self._new_token()
        deadline = time.monotonic() + self.queue_timeout
        may_queue = self.queue_timeout > 0 and self.max_queued > 0
        try:
            taken = self._try(token, may_queue)
        except _Unreachable:
            return self._acquire_fallback()
        if taken == 1:
            return self._hold(token)
        if taken == -1:
            where = "the wait queue is full" if may_queue else "this server does not queue runs"
            raise self._busy(where)
        self._waiting(+1)
        try:
            poll = FIRST_POLL_SECS
            while True:
                with self._cond:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._busy(f"none came free within {self.queue_timeout:g} s")
                    self._cond.wait(min(poll, remaining))  # a release in this process wakes us at once
                poll = min(poll * 2, MAX_POLL_SECS)
                try:
                    taken = self._try(token, True)
                except _Unreachable:
                    return self._acquire_fallback()
                if taken == 1:
                    return self._hold(token)
                if taken == -1:  # our ticket expired (a stall longer than the lease) and the queue filled
                    raise self._busy("the wait queue is full")
        finally:
            self._waiting(-1)
            if taken != 1:
                self._forget(self.queued_key, token)

    def release(self) -> None:
        with self._cond:
            if not self._held:  # released more often than acquired: a caller bug, never a crash
                log.warning("tenant quota released without a held slot")
                return
            token = self._held.pop()
            self.running -= 1
            self._changed()
            self._cond.notify()
        if token is None:
            self.fallback.release()
        else:
            self._forget(self.runs_key, token)

    # -- Redis --------------------------------------------------------------------------------------

    def _try(self, token: str, may_queue: bool) -> int:
        try:
            taken = int(self._take(keys=[self.runs_key, self.queued_key],
                                   args=[token, self.limit, self.max_queued, self.lease_ms, int(may_queue)]))
        except Exception as exc:  # redis.RedisError and OSError alike: Redis is not answering
            self._report_unreachable(exc)
            raise _Unreachable from exc
        self._report_reachable()
        return taken

    def _forget(self, key: str, token: str) -> None:
        try:
            self.client.zrem(key, token)
        except Exception as exc:  # the lease expires by itself
            self._report_unreachable(exc)

    def _renew_held(self) -> None:
        """Runs in the renewer thread: push the lease of every slot this process holds."""
        interval = self.lease_ms / 3000
        while True:
            time.sleep(interval)
            if os.getpid() != self._pid:
                return
            with self._cond:
                tokens = [t for t in self._held if t is not None]
            if not tokens:
                continue
            try:
                self._renew(keys=[self.runs_key], args=[self.lease_ms, *tokens])
            except Exception as exc:
                self._report_unreachable(exc)
            else:
                self._report_reachable()

    # -- bookkeeping --------------------------------------------------------------------------------

    def _new_token(self) -> str:
        self._check_fork()
        return f"{self._host}:{os.getpid()}:{next(self._numbers)}:{secrets.token_hex(4)}"

    def _check_fork(self) -> None:
        with self._cond:
            if self._pid != os.getpid():  # a forked worker holds none of its parent's slots
                self._pid = os.getpid()
                self._held, self._renewer = [], None
                self.running = self.queued = 0
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew_held, name=f"quota-renew-{self.runs_key}",
                                                 daemon=True)
                self._renewer.start()

    def _hold(self, token: str | None) -> None:
        with self._cond:
            self._held.append(token)
            self.running += 1
            self._changed()

    def _waiting(self, change: int) -> None:
        with self._cond:
            self.queued += change
            self._changed()

    def _acquire_fallback(self) -> None:
        try:
            self.fallback.acquire()
        except GateFull as full:
            raise GateFull(f"{full} (counted on this host: the quota's Redis is not answering)",
                           full.retry_after) from None
        self._hold(None)

    def _report_unreachable(self, exc: BaseException) -> None:
        if not self._unreachable:
            self._unreachable = True
            log.warning("run quota of tenant %r: Redis is not answering (%s); counting on this host until "
                        "it is back", self.name, exc)

    def _report_reachable(self) -> None:
        if self._unreachable:
            self._unreachable = False
            log.warning("run quota of tenant %r: Redis answers again; counting across hosts", self.name)


class _Unreachable(Exception):
    pass
