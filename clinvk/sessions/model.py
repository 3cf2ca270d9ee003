"""A stored session (one conversation with one backend) and the rules every store applies to it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..events import TokenUsage

STATUSES = ("active", "completed", "error", "paused")
TITLE_MAX = 60
DISPLAY_MAX = 50
TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
_ID_RE = re.compile(r"[0-9a-f]{1,32}")
# A shorter prefix would let a caller sweep the id space (16 guesses find a session by its first
# character); eight characters is also what the lists show.
MIN_PREFIX = 8
DEFAULT_OWNER = "local"  # the tenant of a server without API keys and of the command line

class SessionNotFound(LookupError):
    """No session has this id (or an id starting with this prefix)."""


class AmbiguousSession(LookupError):
    """The prefix matches more than one session."""


class InvalidSessionId(ValueError):
    """The id or prefix is not 1-32 lowercase hex characters."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def format_time(dt: datetime) -> str:
    # Same string as strftime("%Y-%m-%dT%H:%M:%S.%fZ"), at half the cost (a 1000-session page formats 2000).
    return dt.astimezone(timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)  # 3.11+ reads the trailing Z; ~50x faster than strptime


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def derive_title(prompt: str) -> str:
    """First non-blank line of the prompt, whitespace collapsed, at most TITLE_MAX characters."""
    for line in prompt.splitlines():
        line = " ".join(line.split())
        if line:
            return cut(line, TITLE_MAX)
    return ""


def check_id(value: Any) -> str:
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        raise InvalidSessionId(f"invalid session id {value!r}: must be 1-32 lowercase hex characters")
    return value


def check_lookup(value: Any) -> str:
    """A full id or a prefix of at least :data:`MIN_PREFIX` characters; a shorter one finds nothing."""
    prefix = check_id(value)
    if len(prefix) < MIN_PREFIX:
        raise SessionNotFound(f"no session found with id or prefix {prefix!r} "
                              f"(a prefix needs at least {MIN_PREFIX} characters)")
    return prefix


def check_status(status: Any) -> str:
    if status not in STATUSES:
        raise ValueError(f"invalid session status {status!r}: must be one of {', '.join(STATUSES)}")
    return status


@dataclass
class Session:
    id: str
    backend: str
    created_at: datetime
    last_used: datetime
    working_dir: str = ""
    backend_session_id: str | None = None
    model: str | None = None
    initial_prompt: str = ""
    title: str = ""
    status: str = "active"
    turn_count: int = 0
    token_usage: TokenUsage = field(default_factory=TokenUsage)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    error_message: str | None = None
    owner: str = DEFAULT_OWNER  # the tenant that created it (clinvk.tenants)

    def to_dict(self) -> dict[str, Any]:
        """All fields, JSON-ready: times as 'YYYY-MM-DDTHH:MM:SS.ffffffZ', token_usage as a dict."""
        return {
            "id": self.id, "backend": self.backend,
            "created_at": format_time(self.created_at), "last_used": format_time(self.last_used),
            "working_dir": self.working_dir, "backend_session_id": self.backend_session_id,
            "model": self.model, "initial_prompt": self.initial_prompt, "title": self.title,
            "status": self.status, "turn_count": self.turn_count, "token_usage": self.token_usage.to_dict(),
            "tags": list(self.tags), "metadata": dict(self.metadata), "error_message": self.error_message,
            "owner": self.owner,
        }

    @property
    def display_name(self) -> str:
        """Title, else the initial prompt cut to 50 characters, else the first 8 characters of the id."""
        prompt = " ".join(self.initial_prompt.split())
        return self.title or (cut(prompt, DISPLAY_MAX) if prompt else self.id[:8])

