"""The concurrency gate: at most ``limit`` CLI runs at once, a bounded number of callers waiting.

Two implementations with one interface (``acquire()``, ``release()``, ``slot()``, ``running``,
``queued``, ``listeners``; :class:`GateFull` when there is no room):

- :class:`ConcurrencyGate` counts the runs of one process (the command line, single-process use).
- :class:`SharedGate` counts the runs of every process that uses the same directory — all gunicorn
  workers of one server. A run slot is an exclusive ``flock`` on one of ``limit`` slot files, a
  place in the queue one on one of ``max_queued`` queue files. The kernel drops a dead process's
  locks, so a crashed or killed worker can never leak a slot, and nothing needs cleaning up.
  A waiter sleeps in short steps (2 ms doubling to 50 ms) and is woken at once by a release in its
  own process; a release in another worker is seen at the next step.

:class:`TenantGates` gives each tenant a gate of its own (its share of the slots), taken before the
server's, so a tenant waiting for its own slot never holds one of the server's.

``running`` and ``queued`` are this process's own counts; ``listeners`` are called with them after
each change (the metrics keep per-worker gauges that prometheus sums across workers).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from .private_dirs import make_private_dirs

log = logging.getLogger(__name__)

FIRST_WAIT_SECS = 0.002
MAX_WAIT_SECS = 0.05


class GateFull(Exception):
    """No run slot and no room to wait: the caller should answer 429/503 with Retry-After."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class Gate(ABC):
    def __init__(self, limit: int, max_queued: int, queue_timeout: float, label: str = "server busy"):
        """``label`` starts the refusal message: whose slots these are."""
        self.label = label
        self.limit = limit
        self.max_queued = max_queued
        self.queue_timeout = queue_timeout
        self.running = 0
        self.queued = 0
        self.listeners: list[Callable[[int, int], None]] = []

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @abstractmethod
    def acquire(self) -> None:
        """Take a run slot, waiting in the queue if there is room; :class:`GateFull` otherwise."""

    @abstractmethod
    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire`."""

    def _retry_after(self) -> int:
        return max(1, int(min(self.queue_timeout, 3600)))

    def _busy(self, where: str) -> GateFull:
        return GateFull(f"{self.label}: all {self.limit} run slots are taken and {where}",
                        retry_after=self._retry_after())

    def _changed(self) -> None:
        for listener in self.listeners:
            try:
                listener(self.running, self.queued)
            except Exception:  # metrics must never break a run
                log.exception("concurrency gate listener failed")


class ConcurrencyGate(Gate):
    """Caps concurrent CLI runs in this process; excess callers wait in a bounded queue.

    Waiting briefly beats refusing at once (bursts are common and runs short); refusing beats an
    unbounded pile of 200 MB CLI processes.
    """

    def __init__(self, limit: int, max_queued: int, queue_timeout: float, label: str = "server busy"):
        super().__init__(limit, max_queued, queue_timeout, label)
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            if self.running < self.limit:
                self.running += 1
                self._changed()
                return
            if self.queued >= self.max_queued or self.queue_timeout <= 0:
                raise self._busy(f"the wait queue is full ({self.queued} waiting)")
            self.queued += 1
            self._changed()
            try:
                timeout = None if self.queue_timeout == float("inf") else self.queue_timeout
                if not self._cond.wait_for(lambda: self.running < self.limit, timeout):
                    raise self._busy(f"none came free within {self.queue_timeout:g} s")
                self.running += 1
            finally:
                self.queued -= 1
                self._changed()

    def release(self) -> None:
        with self._cond:
            self.running -= 1
            self._changed()
            self._cond.notify()


class _LockFiles:
    """``count`` lock files ``<prefix>-<i>`` in ``directory``; this process's fd and use of each."""

    def __init__(self, directory: Path, prefix: str, count: int):
        self.paths = [str(directory / f"{prefix}-{i}") for i in range(count)]
        self.fds: list[int | None] = [None] * count
        self.taken = [False] * count  # held by a thread of this process
        self.next = 0

    def reset_after_fork(self) -> None:
        # The inherited fds share their open file descriptions (and so their locks) with the parent:
        # closing our copies leaves the parent's locks alone; this process starts with none.
        for fd in self.fds:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fds = [None] * len(self.paths)
        self.taken = [False] * len(self.paths)

    def try_take(self) -> int | None:
        """Lock a free file without blocking; its index, or None when every one is locked."""
        locked_elsewhere: set[int] = set()
        while (index := self.reserve(locked_elsewhere)) is not None:
            if self.lock(index):
                return index
            self.unreserve(index)
            locked_elsewhere.add(index)
        return None

    def give_back(self, index: int) -> None:
        self.unlock(index)
        self.unreserve(index)

    # The steps of the two above, so that the flock calls can run outside the caller's lock: reserve()
    # and unreserve() under it, lock() and unlock() outside, on a file this thread reserved.

    def reserve(self, skip: set[int]) -> int | None:
        """A file no thread of this process holds and not in ``skip``, marked as held here; None if none."""
        count = len(self.paths)
        for step in range(count):
            index = (self.next + step) % count
            if not self.taken[index] and index not in skip:
                self.taken[index] = True
                self.next = (index + 1) % count
                return index
        return None

    def lock(self, index: int) -> bool:
        """Lock a reserved file without blocking; False when another process holds it."""
        fd = self.fds[index]
        if fd is None:
            fd = self.fds[index] = os.open(self.paths[index], os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True

    def unlock(self, index: int) -> None:
        fd = self.fds[index]
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def unreserve(self, index: int) -> None:
        self.taken[index] = False


class SharedGate(Gate):
    """The gate of one server, shared by all its worker processes through lock files in ``directory``."""

    def __init__(self, limit: int, max_queued: int, queue_timeout: float, directory: str | os.PathLike[str],
                 label: str = "server busy"):
        super().__init__(limit, max_queued, queue_timeout, label)
        self.directory = Path(directory)
        make_private_dirs(self.directory)
        self._cond = threading.Condition()
        self._pid = os.getpid()
        self._slots = _LockFiles(self.directory, "slot", limit)
        self._queue = _LockFiles(self.directory, "queue", max_queued)
        self._held: list[int] = []
        self._releases = 0  # counts release() calls: a waiter knows whether one came while it looked

    def _check_fork(self) -> None:
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._slots.reset_after_fork()
            self._queue.reset_after_fork()
            self._held = []
            self.running = self.queued = 0

    def _take_slot(self) -> bool:
        """Take a free slot file. The flock calls run outside the condition's lock: they release the
        GIL, and another thread asking for the lock meanwhile would turn each release into a wake-up."""
        tried: set[int] = set()
        while True:
            with self._cond:
                self._check_fork()
                index = self._slots.reserve(tried)
            if index is None:
                return False
            try:
                locked = self._slots.lock(index)
            except BaseException:
                with self._cond:
                    self._slots.unreserve(index)
                raise
            with self._cond:
                if locked:
                    self._held.append(index)
                    self.running += 1
                    self._changed()
                    return True
                self._slots.unreserve(index)  # another worker holds it
            tried.add(index)

    def acquire(self) -> None:
        deadline = time.monotonic() + self.queue_timeout
        if self._take_slot():
            return
        with self._cond:
            ticket = self._queue.try_take() if self.queue_timeout > 0 and self._queue.paths else None
            if ticket is not None:
                self.queued += 1
                self._changed()
        if ticket is None:
            if self._take_slot():  # one came free since the first look
                return
            if self.queue_timeout <= 0 or not self._queue.paths:
                raise self._busy("this server does not queue runs")
            raise self._busy(f"the wait queue is full ({len(self._queue.paths)} waiting)")
        try:
            wait = FIRST_WAIT_SECS
            while True:
                with self._cond:
                    releases = self._releases
                if self._take_slot():
                    return
                with self._cond:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._busy(f"none came free within {self.queue_timeout:g} s")
                    # A release in this process wakes us at once (or happened since we looked: no
                    # wait); one in another worker is seen at the next step.
                    if self._releases == releases:
                        self._cond.wait(min(wait, remaining))
                wait = min(wait * 2, MAX_WAIT_SECS)
        finally:
            with self._cond:
                self._queue.give_back(ticket)
                self.queued -= 1
                self._changed()

    def release(self) -> None:
        with self._cond:
            if not self._held:  # released more often than acquired: a caller bug, never a crash
                log.warning("concurrency gate released without a held slot")
                return
            index = self._held.pop()
        self._slots.unlock(index)  # still reserved: no thread of this process takes it meanwhile
        with self._cond:
            self._slots.unreserve(index)
            self.running -= 1
            self._releases += 1
            self._changed()
            self._cond.notify()


class TenantGates:
    """Each tenant's gate, made on first use.

    ``make(name, limit)`` makes the gate of a tenant whose cap is below the server's (only the server's
    gate applies otherwise). With ``make_cluster(name, cap)``, a tenant whose cap is set in the config
    gets that gate instead: its cap counts across hosts (:mod:`clinvk.cluster_gate`)."""

    def __init__(self, make: Callable[[str, int], Gate], server_limit: int,
                 make_cluster: Callable[[str, int], Gate] | None = None):
        self.make = make
        self.make_cluster = make_cluster
        self.server_limit = server_limit
        self._gates: dict[tuple[str, str, int], Gate] = {}
        self._lock = threading.Lock()

    def get(self, name: str, limit: int, configured: int = 0) -> Gate | None:
        """The tenant's gate for its cap on this host (``limit``) and as configured; None when the
        server's gate is enough."""
        if self.make_cluster is not None and configured > 0:
            key, make = ("cluster", name, configured), self.make_cluster
        elif limit < self.server_limit:
            key, make = ("host", name, limit), self.make
        else:
            return None
        with self._lock:
            gate = self._gates.get(key)
            if gate is None:
                gate = self._gates[key] = make(name, key[2])
            return gate


def tenant_label(name: str) -> str:
    return f"tenant {name!r} at its limit (tenants.{name}.max_concurrent_runs)"
