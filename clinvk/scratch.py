"""Scratch working directories for runs that name no workdir: never the server's own directory.

Each lives under ``<clinvk home>/scratch`` (0700): an ephemeral run gets an empty one of its own that
is removed when the run ends (or, left untouched, handed to the next ephemeral run:
:mod:`clinvk.spare_dirs`); a session keeps one for all its turns (a CLI resumes a conversation only from the
same directory) and loses it when the session is deleted or pruned by retention.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time
from pathlib import Path

from .private_dirs import make_private_dirs
from .spare_dirs import SPARES
from .sessions import SessionStore

# An unreferenced scratch dir younger than this may belong to a run still starting in another worker.
PRUNE_GRACE_SECS = 24 * 3600


def scratch_root(home: str | os.PathLike[str]) -> Path:
    return Path(home) / "scratch"


def take_scratch_dir(home: str | os.PathLike[str]) -> str:
    """An empty, private directory for one ephemeral run: a spare one a run left untouched
    (:mod:`clinvk.spare_dirs`), else a new one. Give it back with :func:`release_scratch_dir`."""
    spare = SPARES.take(("scratch", str(home)))
    return spare[0] if spare is not None else new_scratch_dir(home)


def release_scratch_dir(home: str | os.PathLike[str], path: str) -> None:
    """An ephemeral run's scratch directory after the run: kept for the next one when the run left it
    empty, else removed."""
    if is_scratch(home, path) and not SPARES.give_back(("scratch", str(home)), path):
        remove_scratch(home, path)


def new_scratch_dir(home: str | os.PathLike[str]) -> str:
    """A fresh, empty, private directory for one run or session."""
    root = scratch_root(home)
    try:
        return tempfile.mkdtemp(prefix="run-", dir=root)  # mkdtemp makes it 0700
    except FileNotFoundError:  # the first one: make the root (and the state dir) private first
        return tempfile.mkdtemp(prefix="run-", dir=make_private_dirs(root))


def is_scratch(home: str | os.PathLike[str], path: str) -> bool:
    if not path:
        return False
    head, _, name = path.rpartition("/")
    if name not in ("", ".") and head == _root_text(home):  # as new_scratch_dir makes them: no Path needed
        return True
    return Path(path).parent == scratch_root(home)


@functools.lru_cache(maxsize=64)
def _root_text(home: str | os.PathLike[str]) -> str:
    return str(scratch_root(home))


def remove_scratch(home: str | os.PathLike[str], path: str) -> None:
    """Remove ``path`` if it is one of clinvk's scratch dirs (a session's own workdir is never touched)."""
    if is_scratch(home, path):
        try:
            os.rmdir(path)  # one call when the run left it empty, as a plain chat run does
        except OSError:
            shutil.rmtree(path, ignore_errors=True)


def prune_scratch(home: str | os.PathLike[str], store: SessionStore) -> int:
    """Remove the scratch dirs no stored session uses (left by deleted or expired sessions, or a crash);
    returns how many."""
    root = scratch_root(home)
    if not root.is_dir():
        return 0
    used = store.working_dirs_under(str(root))
    now = time.time()
    removed = 0
    for entry in root.iterdir():
        try:
            young = now - entry.lstat().st_mtime < PRUNE_GRACE_SECS
        except FileNotFoundError:
            continue
        if str(entry) in used or young:
            continue
        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed += 1
    return removed
