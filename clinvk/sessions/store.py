"""The session store interface: what the service, the API and the command line may ask of any store.

SQLite (:mod:`clinvk.sessions.sqlite`) is the default; a store shared by several hosts implements
the same methods. ``get``/``delete`` take a full id or a unique prefix of at least
:data:`~clinvk.sessions.model.MIN_PREFIX` characters and raise
:class:`~clinvk.sessions.model.InvalidSessionId`, ``SessionNotFound`` or ``AmbiguousSession``.

``owner`` is a tenant's name (:mod:`clinvk.tenants`). Where a method takes ``owner=None`` it means
"every owner" (an admin, retention); a name restricts the lookup to that tenant's sessions, so
another tenant's session is exactly as absent as one that never existed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..events import TokenUsage
from .model import DEFAULT_OWNER, Session


@dataclass(frozen=True)
class TurnLease:
    """Who holds a session's turn (an opaque holder id) and until when (Unix time, seconds)."""

    session_id: str
    holder: str
    expires_at: float


class SessionStore(ABC):
    @abstractmethod
    def create(self, *, backend: str, working_dir: str = "", model: str | None = None,
               initial_prompt: str = "", tags: list[str] | None = None,
               metadata: dict[str, str] | None = None, owner: str = DEFAULT_OWNER) -> Session:
        """A new ``active`` session with zero turns, belonging to ``owner``."""

    @abstractmethod
    def get(self, id_or_prefix: str, *, owner: str | None = None) -> Session:
        """The session with this id or unique id prefix (among ``owner``'s sessions)."""

    @abstractmethod
    def record_turn(self, session_id: str, *, status: str, backend_session_id: str | None = None,
                    token_usage: TokenUsage | None = None, error_message: str | None = None,
                    model: str | None = None) -> Session:
        """Count one finished turn and add its usage; returns the updated session."""

    @abstractmethod
    def set_status(self, session_id: str, status: str) -> None:
        """Set the status and bump last_used."""

    @abstractmethod
    def list(self, *, backend: str | None = None, status: str | None = None, owner: str | None = None,
             limit: int = 100, offset: int = 0) -> tuple[list[Session], int]:
        """A page of sessions, most recently used first, and the total matching the filters."""

    @abstractmethod
    def delete(self, id_or_prefix: str, *, owner: str | None = None) -> Session:
        """Delete one session and return it."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored sessions."""

    @abstractmethod
    def clean(self, older_than_days: float) -> int:
        """Delete sessions unused for longer than this; returns how many."""

    @abstractmethod
    def latest_resumable(self, *, backend: str | None = None, working_dir: str | None = None,
                         owner: str | None = None) -> Session | None:
        """The most recently used session that can be continued, or None."""

    @abstractmethod
    def working_dirs_under(self, prefix: str) -> set[str]:
        """The working directories of stored sessions that lie under ``prefix`` (scratch dirs in use)."""

    @abstractmethod
    def check(self) -> None:
        """Raise if the store is unusable (health checks)."""

    @abstractmethod
    def close(self) -> None:
        """Release this process's resources (connections)."""

    # -- one turn at a time: a lease per session ----------------------------------------------------
    # A turn runs the CLI on the session's backend transcript; two at once would fork it. The holder
    # renews its lease while the turn runs; an expired lease is free to take. One conditional write
    # each (SQL: an upsert/UPDATE with "WHERE expires_at < now OR holder = ..."), so any store shared
    # by several processes or hosts can implement it.

    @abstractmethod
    def acquire_turn(self, session_id: str, holder: str, ttl_secs: float, *,
                     replacing: str | None = None) -> TurnLease:
        """Take the turn of ``session_id`` for ``ttl_secs`` if it is free, expired, already
        ``holder``'s, or held by ``replacing`` (a holder known to be dead). Returns the lease as it
        now stands: ``lease.holder == holder`` when taken, else the other holder's lease."""

    @abstractmethod
    def renew_turn(self, session_id: str, holder: str, ttl_secs: float) -> bool:
        """Extend ``holder``'s lease to now + ``ttl_secs``; False if it no longer holds it."""

    @abstractmethod
    def release_turn(self, session_id: str, holder: str) -> None:
        """Give the turn back (nothing happens if ``holder`` does not hold it)."""

    # -- archives of a session's local directories (stores shared by several hosts) ----------------
    # A store shared by several hosts carries each session's CLI home from host to host as an
    # archive (clinvk.sessions.archive). A single-host store keeps nothing: the home stays local.

    shares_local_state = False  # True: save an archive after each turn, restore a newer one before

    def save_archive(self, session_id: str, turn: int, data: bytes) -> bool:
        """Store the archive of the session's directories as of ``turn`` (unless a newer one is stored)."""
        raise NotImplementedError

    def archive_turn(self, session_id: str) -> int | None:
        """The turn of the stored archive, or None."""
        raise NotImplementedError

    def load_archive(self, session_id: str) -> tuple[int, bytes] | None:
        """The stored archive and its turn, or None."""
        raise NotImplementedError
