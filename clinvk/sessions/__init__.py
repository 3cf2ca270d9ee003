"""Stored sessions: the model (:mod:`.model`), the store interface (:mod:`.store`) and its SQLite
(:mod:`.sqlite`) and PostgreSQL (:mod:`.postgresql`) implementations. :func:`open_store` picks the
implementation for a location."""

from __future__ import annotations

import os

from .model import DEFAULT_OWNER, MIN_PREFIX, STATUSES, AmbiguousSession, InvalidSessionId, Session, SessionNotFound
from .sqlite import SqliteSessionStore
from .store import SessionStore

__all__ = ["DEFAULT_OWNER", "MIN_PREFIX", "STATUSES", "AmbiguousSession", "InvalidSessionId", "Session", "SessionNotFound", "SessionStore",
           "SqliteSessionStore", "is_postgres_url", "open_store"]


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def open_store(location: str | os.PathLike[str], *, pool_size: int | None = None) -> SessionStore:
    """The session store at ``location``: a ``postgresql://`` URI (shared by several hosts; needs the
    ``postgresql`` extra) or a SQLite file path. ``pool_size``: connections per process (PostgreSQL)."""
    if is_postgres_url(location):
        from .postgresql import DEFAULT_POOL_SIZE, PostgresSessionStore  # psycopg only when used
        return PostgresSessionStore(str(location), pool_size=pool_size or DEFAULT_POOL_SIZE)
    return SqliteSessionStore(location)
