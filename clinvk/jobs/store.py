"""What a session store must offer to hold jobs, their events and results (so any host can answer for them).

Every lookup takes the ``owner`` (the caller's tenant): a job of another owner does not exist for it.
Event positions (``seq``) start at 1 and grow by one per event of a job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from .model import Job


class JobStore(ABC):
    @abstractmethod
    def create_job(self, *, owner: str, kind: str, request: dict[str, Any], host: str, pid: int,
                   max_active: int) -> Job:
        """A new ``queued`` job; raises :class:`~clinvk.jobs.model.JobLimit` when ``owner`` already has
        ``max_active`` queued or running jobs (checked and inserted atomically)."""

    @abstractmethod
    def get_job(self, job_id: str, owner: str) -> Job:
        """Raises :class:`~clinvk.jobs.model.JobNotFound`."""

    @abstractmethod
    def list_jobs(self, owner: str, *, status: str | None = None, kind: str | None = None, limit: int = 100,
                  offset: int = 0) -> tuple[list[Job], int]:
        """A page of the owner's jobs, newest first, and the total matching the filters."""

    @abstractmethod
    def update_job(self, job_id: str, **fields: Any) -> None:
        """Set columns of a job: status, started_at, finished_at, session_id, error, result, cancel_requested."""

    @abstractmethod
    def finish_job(self, job_id: str, status: str, *, error: str | None = None,
                   result: dict[str, Any] | None = None) -> bool:
        """End a job that is still queued or running; False when it had already ended (e.g. interrupted)."""

    @abstractmethod
    def append_job_event(self, job_id: str, event: dict[str, Any]) -> int:
        """Store the job's next event; returns its position."""

    @abstractmethod
    def job_events(self, job_id: str, after: int = 0, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        """Events with a position greater than ``after``, in order: (seq, event)."""

    @abstractmethod
    def heartbeat_jobs(self, job_ids: list[str]) -> list[str]:
        """Mark these jobs alive now; returns those whose cancellation was requested."""

    @abstractmethod
    def interrupt_jobs(self, *, stale_before: datetime | None = None, host: str | None = None,
                       dead_pids: list[int] | None = None) -> int:
        """Mark queued/running jobs ``interrupted``: those whose heartbeat is older than ``stale_before``,
        and those of ``host`` run by one of ``dead_pids``. Returns how many."""

    @abstractmethod
    def active_job_pids(self, host: str) -> list[int]:
        """The process ids running queued/running jobs on ``host``."""

    @abstractmethod
    def delete_job(self, job_id: str, owner: str) -> None:
        """Delete a job and its events."""

    @abstractmethod
    def clean_jobs(self, older_than_days: float) -> int:
        """Delete finished jobs that ended longer ago than this; returns how many."""
