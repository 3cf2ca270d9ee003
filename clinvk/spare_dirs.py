"""Empty private directories handed to the next ephemeral run instead of being removed and made again.

Every ephemeral run gets a throwaway CLI home (:mod:`clinvk.homes`) and a scratch working directory
(:mod:`clinvk.scratch`): four directories made and removed per run. Making a directory is not cheap
everywhere: ext4 without a journal, for one, passes over every inode freed in the last 30 s when it
picks one, so at a few hundred runs per second each ``mkdir`` costs the server hundreds of µs.

A directory a run gives back is kept only when the run left it exactly as it got it — still a 0700
directory of this user, holding nothing but the empty 0700 subdirectories it was made with, and no
extended attributes (ACLs included) on any of them — so nothing of one run reaches the next. A run
that wrote anything gets its directories removed as before.

Listing every directory of a home takes some 30 system calls. Once a directory has been found
untouched twice, :data:`SETTLE_SECS` apart, with the same inode and change time (ctime) for each of
its directories, one ``lstat`` each is enough: anything a later run does to a directory — an entry
added or removed, its mode, owner, extended attributes or ACL changed — gives it a new ctime, and by
then the file system's clock has moved past the one it holds, whatever its timestamp granularity. At most :data:`LIMIT` are kept per kind
and process; one whose mtime is :data:`MAX_AGE_SECS` old is removed instead (the retention sweeps
remove what is a day old by its mtime, which an untouched directory keeps); a process removes its
spares when it exits, and a forked child does not inherit them.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass
from typing import Hashable

LIMIT = 64
MAX_AGE_SECS = 3600.0
SETTLE_SECS = 2.0
MODE = 0o700


def _private_dir(path: str) -> os.stat_result | None:
    """lstat of ``path`` when it is a 0700 directory of this user with no extended attributes but
    the security module's label, else None."""
    try:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != MODE:
            return None
        names = _xattrs(path)
    except OSError:
        return None
    return st if all(name.startswith("security.") for name in names) else None


def _xattrs(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):  # a file system without them
            return []
        raise


def _entries(path: str) -> list[os.DirEntry] | None:
    try:
        with os.scandir(path) as found:
            return list(found)
    except OSError:
        return None


def untouched(path: str, subdirs: tuple[str, ...]) -> list[os.stat_result] | None:
    """The lstat of ``path`` and of each of ``subdirs`` when it holds exactly the empty ``subdirs`` and
    every one of them is a private directory (see the module docstring); None otherwise."""
    top = _private_dir(path)
    entries = _entries(path) if top is not None else None
    if entries is None or sorted(e.name for e in entries) != sorted(subdirs):
        return None
    if any(not e.is_dir(follow_symlinks=False) for e in entries):
        return None
    found = [top]
    for name in subdirs:
        inner = os.path.join(path, name)
        st = _private_dir(inner)
        if st is None or _entries(inner) != []:
            return None
        found.append(st)
    return found


def _stamps(found: list[os.stat_result]) -> tuple[tuple[int, int, int], ...]:
    return tuple((st.st_dev, st.st_ino, st.st_ctime_ns) for st in found)


def _unchanged(path: str, subdirs: tuple[str, ...], stamps: tuple) -> list[os.stat_result] | None:
    """The lstat of ``path`` and its ``subdirs`` when they still carry ``stamps``, else None."""
    try:
        found = [os.lstat(path), *(os.lstat(os.path.join(path, name)) for name in subdirs)]
    except OSError:
        return None
    return found if _stamps(found) == stamps else None


@dataclass
class _Seen:
    """What the last full check of a spare directory found."""
    stamps: tuple
    since: float  # time.monotonic() of the first full check that found these stamps
    settled: bool = False  # found again SETTLE_SECS later: an lstat of each directory is enough now


def remove(path: str, subdirs: tuple[str, ...] = ()) -> None:
    """Remove a directory made with ``subdirs``: one call each when they are empty, else the whole tree."""
    try:
        for name in subdirs:
            os.rmdir(os.path.join(path, name))
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


class SpareDirs:
    """The spare directories of this process, by kind (a kind: directories made alike, e.g. the
    throwaway homes of one backend under one state directory)."""

    def __init__(self, limit: int = LIMIT, max_age_secs: float = MAX_AGE_SECS, settle_secs: float = SETTLE_SECS):
        self.limit, self.max_age_secs, self.settle_secs = limit, max_age_secs, settle_secs
        self._spare: dict[Hashable, list[tuple[str, tuple[str, ...], float]]] = {}
        self._seen: dict[str, _Seen] = {}  # by path: spare directories and those handed out
        self._lock = threading.Lock()

    def take(self, kind: Hashable) -> tuple[str, tuple[str, ...]] | None:
        """A spare directory of ``kind`` and the (empty) subdirectories it holds, or None."""
        while True:
            with self._lock:
                spare = self._spare.get(kind)
                if not spare:
                    return None
                path, subdirs, mtime = spare.pop()
            if time.time() - mtime < self.max_age_secs:
                return path, subdirs
            self._forget(path)
            remove(path, subdirs)

    def give_back(self, kind: Hashable, path: str, subdirs: tuple[str, ...] = ()) -> bool:
        """Keep ``path`` for the next :meth:`take` of ``kind`` if it is untouched (True); False when the
        caller must remove it."""
        with self._lock:
            seen = self._seen.get(path)
        found = _unchanged(path, subdirs, seen.stamps) if seen is not None and seen.settled else None
        if found is None:
            found = untouched(path, subdirs)
            seen = self._check_settled(seen, found)
        if found is None or time.time() - found[0].st_mtime >= self.max_age_secs:
            self._forget(path)
            return False
        with self._lock:
            spare = self._spare.setdefault(kind, [])
            if len(spare) >= self.limit:
                self._seen.pop(path, None)
                return False
            spare.append((path, subdirs, found[0].st_mtime))
            if len(self._seen) > 16 * self.limit:  # handed out and never given back (a crash): start over
                self._seen.clear()
            self._seen[path] = seen
        return True

    def _check_settled(self, seen: _Seen | None, found: list[os.stat_result] | None) -> _Seen | None:
        """What a full check found: the stamps, settled when an earlier check found the same ones long enough ago."""
        if found is None:
            return None
        stamps, now = _stamps(found), time.monotonic()
        if seen is not None and seen.stamps == stamps:
            seen.settled = now - seen.since >= self.settle_secs
            return seen
        return _Seen(stamps, now)

    def _forget(self, path: str) -> None:
        with self._lock:
            self._seen.pop(path, None)

    def held(self) -> set[str]:
        """The paths kept now."""
        with self._lock:
            return {path for entries in self._spare.values() for path, _, _ in entries}

    def clear(self) -> None:
        """Remove every spare directory."""
        with self._lock:
            spares = [entry for entries in self._spare.values() for entry in entries]
            self._spare.clear()
            self._seen.clear()
        for path, subdirs, _ in spares:
            remove(path, subdirs)

    def forget(self) -> None:
        """Drop the spares without removing them (a forked child: they are its parent's)."""
        self._lock = threading.Lock()
        self._spare = {}
        self._seen = {}


SPARES = SpareDirs()
atexit.register(SPARES.clear)
os.register_at_fork(after_in_child=SPARES.forget)
