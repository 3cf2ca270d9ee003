"""One turn at a time per session, across threads, gunicorn workers and hosts sharing a store.

:meth:`TurnLeases.hold` takes the session's turn lease from the store (:meth:`SessionStore.acquire_turn`)
or raises :class:`~clinvk.errors.SessionBusy` (HTTP 409 ``session_busy`` with ``Retry-After``). While
held, one thread per process renews every lease of that process; a lease ends when the turn ends.
A lease found taken when renewed (it expired meanwhile: the store was unreachable or this process
stalled, and another turn took it), or one that could not be renewed before it expires (the store
does not answer), calls :meth:`HeldTurn.when_lost`'s callback: the run ends itself rather than write
on a transcript another host may be continuing by then.

A turn whose process died does not block its session: its lease expires after ``ttl_secs``
without renewal, and at once when the holder ran on this host and its process is gone (the holder id
names host, pid and the process's start time, so a reused pid does not pass for the holder).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from ..errors import SessionBusy, StoreUnavailable
from ..grouprecord import start_time
from .store import SessionStore

log = logging.getLogger(__name__)

TTL_SECS = 30.0  # the default of session.turn_lease_secs
RETRY_AFTER_SECS = 5  # a turn takes seconds to minutes; the client learns nothing better from us

# Why a turn's run was ended (HeldTurn.reason), as the run's error says it.
LEASE_TAKEN = "its session's turn lease was lost (another host may be running the session now)"
STORE_UNREACHABLE = ("the session store stopped answering, so its turn lease could not be renewed "
                     "(another host may take the session over)")


_process: tuple[int, str] = (0, "")  # (pid, "host:pid:start") of this process, once per fork


def holder_id() -> str:
    """A new holder id for one turn of this process: ``host:pid:start:token``."""
    global _process
    pid = os.getpid()
    if _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}:{pid}:{start_time(pid) or 0}")
    return f"{_process[1]}:{secrets.token_hex(6)}"


def holder_is_dead(holder: str) -> bool:
    """Whether ``holder`` ran on this host in a process that no longer exists (or was replaced)."""
    try:
        host, pid, began, _ = holder.rsplit(":", 3)
        pid_number, began_number = int(pid), int(began)
    except ValueError:
        return False
    if host != socket.gethostname() or not began_number:
        return False  # another host's process: only its lease's expiry tells
    return start_time(pid_number) != began_number


class HeldTurn:
    """A turn lease this process holds; :meth:`when_lost` says what to do if it is lost meanwhile."""

    def __init__(self, session_id: str, holder: str, renewed_at: float):
        self.session_id = session_id
        self.holder = holder
        self.renewed_at = renewed_at  # time.monotonic() when the last successful renewal was sent
        self.lost = False
        self.reason = ""  # why it was lost: LEASE_TAKEN or STORE_UNREACHABLE
        self._on_lost: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def when_lost(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the lease is lost (at once if it already is)."""
        with self._lock:
            if not self.lost:
                self._on_lost.append(callback)
                return
        callback()

    def mark_lost(self, reason: str = LEASE_TAKEN) -> None:
        with self._lock:
            self.lost, self.reason = True, reason
            callbacks, self._on_lost = self._on_lost, []
        for callback in callbacks:  # ending a run waits for its process: not on the renewing thread
            threading.Thread(target=callback, name="clinvk-turn-lost", daemon=True).start()


class TurnLeases:
    def __init__(self, store: SessionStore, ttl_secs: float = TTL_SECS):
        self.store = store
        self.ttl_secs = ttl_secs
        self._held: dict[tuple[str, str], HeldTurn] = {}  # renewed by this process
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    @contextmanager
    def hold(self, session_id: str) -> Iterator[HeldTurn]:
        """Hold the turn of ``session_id`` for the block; :class:`SessionBusy` if another turn holds it."""
        holder = holder_id()
        asked_at = time.monotonic()
        lease = self.store.acquire_turn(session_id, holder, self.ttl_secs)
        if lease.holder != holder and holder_is_dead(lease.holder):
            log.info("session %s: taking over the turn of %s, whose process is gone", session_id, lease.holder)
            lease = self.store.acquire_turn(session_id, holder, self.ttl_secs, replacing=lease.holder)
        if lease.holder != holder:
            raise SessionBusy(f"session {session_id} is running another turn; send this one when it has "
                              f"finished", "session_id", retry_after=RETRY_AFTER_SECS)
        held = HeldTurn(session_id, holder, asked_at)
        self._renew_in_background(held)
        try:
            yield held
        finally:
            with self._lock:
                self._held.pop((session_id, holder), None)
            try:
                self.store.release_turn(session_id, holder)
            except StoreUnavailable:  # logged by the store; the lease expires on its own
                pass
            except Exception:  # it expires on its own
                log.exception("could not release the turn of session %s", session_id)

    def _renew_in_background(self, held: HeldTurn) -> None:
        with self._lock:
            self._held[(held.session_id, held.holder)] = held
            if self._pid != os.getpid():  # first use in this process (gunicorn forks workers)
                self._pid = os.getpid()
                threading.Thread(target=self._renew, name="clinvk-turn-leases", daemon=True).start()

    def _renew(self) -> None:
        while not self._wake.wait(self.ttl_secs / 3):
            with self._lock:
                held = list(self._held.values())
            store_down = False  # then the other turns of this round are not asked for: each ask waits
            for turn in held:
                store_down = not self._renew_one(turn, ask=not store_down) or store_down

    def _renew_one(self, turn: HeldTurn, *, ask: bool = True) -> bool:
        """Renew ``turn``'s lease; False when the store does not answer (``ask`` False: it was found
        down a moment ago, so only what that means for the lease is decided)."""
        if turn.lost:
            return True
        asked_at = time.monotonic()
        try:
            if not ask:
                raise StoreUnavailable()
            renewed = self.store.renew_turn(turn.session_id, turn.holder, self.ttl_secs)
        except Exception as exc:  # the store is unreachable now; the lease may still hold: try again
            if not isinstance(exc, StoreUnavailable):  # that one the store has logged already
                log.exception("could not renew the turn lease of session %s", turn.session_id)
            # The lease ends ttl after the last renewal reached the store, at the latest before the
            # next attempt would come: stop while it is surely still ours.
            if time.monotonic() - turn.renewed_at >= self.ttl_secs * 2 / 3:
                log.warning("session %s: the turn lease of %s could not be renewed before it expires; "
                            "ending its run", turn.session_id, turn.holder)
                turn.mark_lost(STORE_UNREACHABLE)
            return not isinstance(exc, StoreUnavailable)
        turn.renewed_at = asked_at
        if not renewed:
            log.warning("session %s: the turn lease of %s was lost; ending its run", turn.session_id, turn.holder)
            turn.mark_lost()
        return True
