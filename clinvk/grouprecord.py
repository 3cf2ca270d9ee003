"""A record on disk of the CLI process groups each server worker has running, so that the gunicorn
master can end them when the worker dies without cleaning up (SIGKILL by the OOM killer, the worker
timeout or ``kill -9``).

A run is one empty file ``<owner pid>.<pgid>.<start time>`` in the server's ``groups`` directory,
created right after its CLI is spawned and removed once its group has ended, so the record holds
even when the worker never runs another line of code. The start time (``/proc/<pid>/stat``, clock
ticks since boot) guards against pid reuse: a group is killed only if its leader is the very
process recorded, or if the leader is gone and the number is still held by the group's remaining
members (Linux does not hand out a pid that is still some group's id).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

log = logging.getLogger(__name__)


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


class GroupRecord:
    """The live process groups of one worker (``owner``, default: this process) in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], owner: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.owner = owner if owner is not None else os.getpid()

    def started(self, pgid: int) -> str | None:
        """Record a group just spawned (its leader's pid = ``pgid``); the entry's name, for :meth:`ended`."""
        began = start_time(pgid)
        if began is None:
            return None  # already gone
        name = f"{self.owner}.{pgid}.{began}"
        try:
            os.close(os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError:
            log.exception("cannot record process group %d in %s", pgid, self.directory)
            return None
        return name

    def ended(self, name: str | None) -> None:
        if name:
            try:
                os.unlink(self.directory / name)
            except FileNotFoundError:
                pass


def end_groups(directory: str | os.PathLike[str], owner: int | None = None) -> int:
    """SIGKILL every recorded group of the worker ``owner`` (None: of every worker, for a master that
    starts before any worker of it runs) and forget them; returns how many were still running. Called by the master, which must not block: nobody
    reads these runs' output any more, so there is no grace."""
    path = Path(directory)
    try:
        names = os.listdir(path)
    except FileNotFoundError:
        return 0
    ended = 0
    for name in names:
        try:
            pid_text, pgid_text, began_text = name.split(".")
            entry_owner, pgid, began = int(pid_text), int(pgid_text), int(began_text)
        except ValueError:
            continue
        if owner is not None and entry_owner != owner:
            continue
        leader = start_time(pgid)
        if leader is None or leader == began:  # the recorded leader, or its group without it
            try:
                os.killpg(pgid, signal.SIGKILL)
                ended += 1
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.unlink(path / name)
        except FileNotFoundError:
            pass
    return ended
