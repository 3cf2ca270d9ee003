"""A record on disk of the CLI process groups each server worker has running, so that the gunicorn
master can end them when the worker dies without cleaning up (SIGKILL by the OOM killer, the worker
timeout or ``kill -9``).

Each worker owns one file ``<owner pid>.groups`` in the server's ``groups`` directory, made of
fixed-size lines ``<pgid> <start time>``; a run writes its line into a free slot right after its
CLI is spawned and blanks it once its group has ended (one ``pwrite`` each: creating and removing a
file per run cost ten times more). The write is in the kernel's page cache at once, so the record
holds even when the worker never runs another line of code. The start time (``/proc/<pid>/stat``,
clock ticks since boot) guards against pid reuse: a group is killed only if its leader is the very
process recorded, or if the leader is gone and the number is still held by the group's remaining
members (Linux does not hand out a pid that is still some group's id).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

log = logging.getLogger(__name__)


SLOT = 32  # bytes per line: "<pgid> <start time>", padded with spaces, then a newline
BLANK = b" " * (SLOT - 1) + b"\n"
SUFFIX = ".groups"


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None if there is no such process."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        stat = os.read(fd, 4096)  # one read: the line is far shorter, and unbuffered is cheaper
    except ProcessLookupError:
        return None
    finally:
        os.close(fd)
    try:
        return int(stat.rsplit(b")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


class GroupRecord:
    """The live process groups of one worker (``owner``, default: this process) in ``directory``."""

    def __init__(self, directory: str | os.PathLike[str], owner: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.owner = owner if owner is not None else os.getpid()
        self.path = self.directory / f"{self.owner}{SUFFIX}"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._free: list[int] = []  # blanked slots, reused before the file grows
        self._slots = 0

    def started(self, pgid: int) -> int | None:
        """Record a group just spawned (its leader's pid = ``pgid``); the entry's slot, for :meth:`ended`."""
        began = start_time(pgid)
        if began is None:
            return None  # already gone
        line = f"{pgid} {began}".encode().ljust(SLOT - 1) + b"\n"
        try:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
                slot = self._free.pop() if self._free else self._slots
                if slot == self._slots:
                    self._slots += 1
                os.pwrite(self._fd, line, slot * SLOT)
        except OSError:
            log.exception("cannot record process group %d in %s", pgid, self.path)
            return None
        return slot

    def ended(self, slot: int | None) -> None:
        if slot is None:
            return
        with self._lock:
            try:
                os.pwrite(self._fd, BLANK, slot * SLOT)
            except OSError:
                log.exception("cannot clear process group slot %d in %s", slot, self.path)
            self._free.append(slot)


def _entries(path: Path) -> list[tuple[int, int]]:
    """The (pgid, start time) lines of one worker's file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    entries = []
    for line in data.splitlines():
        try:
            pgid_text, began_text = line.split()
            entries.append((int(pgid_text), int(began_text)))
        except ValueError:
            continue  # a blank slot
    return entries


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
        owner_text, dot, suffix = name.partition(".")
        if dot + suffix != SUFFIX or not owner_text.isdigit():
            continue
        if owner is not None and int(owner_text) != owner:
            continue
        for pgid, began in _entries(path / name):
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
