"""The session store interface: what the service, the API and the command line may ask of any store.

SQLite (:mod:`clinvk.sessions.sqlite`) is the default; a store shared by several hosts implements
the same methods. ``get``/``delete`` take a full id or a unique prefix and raise
:class:`~clinvk.sessions.model.InvalidSessionId`, ``SessionNotFound`` or ``AmbiguousSession``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from ..events import TokenUsage
from .model import Session


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
               metadata: dict[str, str] | None = None) -> Session:
        """A new ``active`` session with zero turns."""

    @abstractmethod
    def get(self, id_or_prefix: str) -> Session:
        """The session with this id or unique id prefix."""

    @abstractmethod
    def record_turn(self, session_id: str, *, status: str, backend_session_id: str | None = None,
                    token_usage: TokenUsage | None = None, error_message: str | None = None,
                    model: str | None = None) -> Session:
        """Count one finished turn and add its usage; returns the updated session."""

    @abstractmethod
    def set_status(self, session_id: str, status: str) -> None:
        """Set the status and bump last_used."""

    @abstractmethod
    def list(self, *, backend: str | None = None, status: str | None = None, limit: int = 100,
             offset: int = 0) -> tuple[list[Session], int]:
        """A page of sessions, most recently used first, and the total matching the filters."""

    @abstractmethod
    def delete(self, id_or_prefix: str) -> Session:
        """Delete one session and return it."""

    @abstractmethod
    def count(self) -> int:
        """Number of stored sessions."""

    @abstractmethod
    def clean(self, older_than_days: float) -> int:
        """Delete sessions unused for longer than this; returns how many."""

    @abstractmethod
    def latest_resumable(self, *, backend: str | None = None,
                         working_dir: str | None = None) -> Session | None:
        """The most recently used session that can be continued, or None."""

    @abstractmethod
    def check(self) -> None:
        """Raise if the store is unusable (health checks)."""

    @abstractmethod
    def close(self) -> None:
        """Release this process's resources (connections)."""

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
