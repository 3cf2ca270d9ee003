"""The warm pool: per launch key, a few CLI processes started ahead and waiting for one run each.

:meth:`WarmPool.take` hands out a waiting process (a *hit*) or reports a *miss* (the caller spawns
cold); either way the key is remembered and a background thread starts its replacement at once.
Processes that die while waiting, whose key was not asked for within ``idle_expiry_secs``, or that
do not fit the process or memory bounds are *discarded* (their process group killed). The pool
belongs to one server worker process; its thread starts with the first request, after the fork.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable

from ..config.model import WarmPoolConfig
from .process import WarmProcess
from .recipes import Recipe

log = logging.getLogger(__name__)

TICK_SECS = 1.0
RSS_EVERY_SECS = 5.0
PAGE = os.sysconf("SC_PAGE_SIZE")

HIT, MISS, DISCARD = "hit", "miss", "discard"


@dataclass
class _Key:
    recipe: Recipe
    last_asked: float
    idle: list[WarmProcess] = field(default_factory=list)


class WarmPool:
    def __init__(self, settings: WarmPoolConfig):
        self.settings = settings
        self.counts = {HIT: 0, MISS: 0, DISCARD: 0}
        #: called as listener(backend, event) with event "hit", "miss" or "discard" (metrics)
        self.listeners: list[Callable[[str, str], None]] = []
        self._keys: dict[Hashable, _Key] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._owner: int | None = None  # pid whose thread maintains the pool
        self._closed = False
        self._rss_at = 0.0

    def poolable(self, backend: str) -> bool:
        return self.settings.enabled and backend in self.settings.backends

    # -- the request side --------------------------------------------------------------------------

    def take(self, recipe: Recipe) -> WarmProcess | None:
        """A waiting process for ``recipe``'s key (the caller calls ``begin``), or None: spawn cold."""
        self._ensure_thread()
        found, dead = None, []
        with self._lock:
            entry = self._keys.get(recipe.key)
            if entry is None:
                entry = self._keys[recipe.key] = _Key(recipe, time.monotonic())
            entry.last_asked = time.monotonic()
            while entry.idle and found is None:
                process = entry.idle.pop(0)
                if process.usable():
                    found = process
                else:
                    dead.append(process)
        for process in dead:
            self._discard(recipe.backend, process, "it ended while waiting")
        self._event(recipe.backend, HIT if found else MISS)
        self._wake.set()  # start the replacement (or the first one) now
        return found

    # -- the background side -----------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        pid = os.getpid()
        if self._owner == pid:
            return
        with self._lock:
            if self._owner == pid:
                return
            if self._owner is not None:  # forked: the parent's processes and thread are not ours
                self._keys.clear()
            self._owner = pid
        threading.Thread(target=self._maintain, daemon=True, name="warm-pool").start()

    def _maintain(self) -> None:
        while not self._closed:
            self._wake.wait(TICK_SECS)
            self._wake.clear()
            try:
                self._tidy()
                self._fill()
            except Exception:  # the pool is an optimisation: never let it stop
                log.exception("warm pool maintenance failed")

    def _tidy(self) -> None:
        now, expiry = time.monotonic(), self.settings.idle_expiry_secs
        gone: list[tuple[str, WarmProcess, str]] = []
        with self._lock:
            for key, entry in list(self._keys.items()):
                backend = entry.recipe.backend
                if now - entry.last_asked > expiry:
                    gone += [(backend, p, "idle expiry") for p in entry.idle]
                    del self._keys[key]
                    continue
                gone += [(backend, p, "it ended while waiting") for p in entry.idle if not p.usable()]
                entry.idle = [p for p in entry.idle if p.usable()]
        for backend, process, why in gone:
            self._discard(backend, process, why)
        if now - self._rss_at >= RSS_EVERY_SECS:
            self._rss_at = now
            self._measure_rss()
        self._enforce_memory()

    def _fill(self) -> None:
        while not self._closed:
            with self._lock:
                total = sum(len(e.idle) for e in self._keys.values())
                wanting = [e for e in self._keys.values() if len(e.idle) < self.settings.size]
                if not wanting or total >= self.settings.max_processes or self._over_memory():
                    return
                entry = max(wanting, key=lambda e: e.last_asked)  # the most recently asked key first
                recipe = entry.recipe
            try:
                process = recipe.start()
            except OSError as exc:
                log.warning("warm pool: cannot start %s: %s", recipe.backend, exc)
                with self._lock:
                    self._keys.pop(recipe.key, None)  # asked again, it is retried
                return
            with self._lock:
                current = self._keys.get(recipe.key)
                if current is None or self._closed:
                    current = None
                else:
                    current.idle.append(process)
            if current is None:
                self._discard(recipe.backend, process, "its key expired")

    # -- memory ------------------------------------------------------------------------------------

    def _measure_rss(self) -> None:
        with self._lock:
            processes = [p for e in self._keys.values() for p in e.idle]
        if processes:
            by_group = _rss_by_group()
            for process in processes:
                process.rss_bytes = by_group.get(process.pid, 0)

    def _over_memory(self) -> bool:
        """Called with the lock held."""
        cap = self.settings.max_memory_mb * 1024 * 1024
        return sum(p.rss_bytes for e in self._keys.values() for p in e.idle) > cap

    def _enforce_memory(self) -> None:
        while True:
            with self._lock:
                if not self._over_memory():
                    return
                entry = min((e for e in self._keys.values() if e.idle), key=lambda e: e.last_asked)
                process = entry.idle.pop()
            self._discard(entry.recipe.backend, process, "over run.warm_pool.max_memory_mb")

    # -- ending ------------------------------------------------------------------------------------

    def _discard(self, backend: str, process: WarmProcess, why: str) -> None:
        log.debug("warm pool: discarding a %s process (pid %d): %s", backend, process.pid, why)
        process.terminate(why)
        process.close()
        self._event(backend, DISCARD)

    def _event(self, backend: str, event: str) -> None:
        with self._lock:
            self.counts[event] += 1
        for listener in self.listeners:
            try:
                listener(backend, event)
            except Exception:
                log.exception("warm pool listener failed")

    def idle(self) -> int:
        with self._lock:
            return sum(len(e.idle) for e in self._keys.values())

    def close(self) -> None:
        """End every waiting process (server shutdown). Idempotent."""
        self._closed = True
        self._wake.set()
        with self._lock:
            mine = self._owner == os.getpid()
            waiting = [p for e in self._keys.values() for p in e.idle] if mine else []
            self._keys.clear()
        for process in waiting:
            process.terminate("server shutting down")
            process.close()


def _rss_by_group() -> dict[int, int]:
    """Resident memory per process group, from /proc (a warm CLI may run helpers in its group)."""
    totals: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pgid, rss_pages = int(fields[2]), int(fields[21])
        totals[pgid] = totals.get(pgid, 0) + rss_pages * PAGE
    return totals


def register_shutdown(pool: WarmPool) -> None:
    atexit.register(pool.close)
