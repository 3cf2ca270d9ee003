"""A job (a run detached from the request that asked for it) and the statuses it goes through."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..sessions.model import format_time

QUEUED, RUNNING = "queued", "running"
COMPLETED, FAILED, CANCELLED, INTERRUPTED = "completed", "failed", "cancelled", "interrupted"
ACTIVE = (QUEUED, RUNNING)
FINISHED = (COMPLETED, FAILED, CANCELLED, INTERRUPTED)
STATUSES = ACTIVE + FINISHED
KINDS = ("prompt", "parallel", "chain", "compare")


class JobNotFound(LookupError):
    """No job of this owner has this id."""


class JobLimit(Exception):
    """The owner already has as many queued and running jobs as allowed."""


@dataclass
class Job:
    id: str
    owner: str
    kind: str
    status: str
    created_at: datetime
    request: dict[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    host: str = ""
    pid: int = 0
    cancel_requested: bool = False
    session_id: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    event_count: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        """The job as ``GET /api/v1/jobs/{id}`` answers it (``result`` in its synchronous endpoint's shape)."""
        duration = None
        if self.started_at and self.finished_at:
            duration = int((self.finished_at - self.started_at).total_seconds() * 1000)
        return {"id": self.id, "kind": self.kind, "status": self.status,
                "created_at": format_time(self.created_at),
                "started_at": format_time(self.started_at) if self.started_at else None,
                "finished_at": format_time(self.finished_at) if self.finished_at else None,
                "duration_ms": duration, "session_id": self.session_id, "events": self.event_count,
                "error": self.error, "result": self.result}
