"""Stored sessions: the model (:mod:`.model`), the store interface (:mod:`.store`) and its SQLite
implementation (:mod:`.sqlite`). :func:`open_store` picks the implementation for a location."""

from __future__ import annotations

import os

from .model import DEFAULT_OWNER, MIN_PREFIX, STATUSES, AmbiguousSession, InvalidSessionId, Session, SessionNotFound
from .sqlite import SqliteSessionStore
from .store import SessionStore

__all__ = ["DEFAULT_OWNER", "MIN_PREFIX", "STATUSES", "AmbiguousSession", "InvalidSessionId", "Session", "SessionNotFound", "SessionStore",
           "SqliteSessionStore", "open_store"]


def open_store(location: str | os.PathLike[str]) -> SessionStore:
    """The session store at ``location``: today always a SQLite file path."""
    return SqliteSessionStore(location)
