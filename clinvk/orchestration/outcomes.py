"""What orchestration reports: one outcome per task or step, and the batch and chain summaries in the
JSON shapes of ``POST /api/v1/parallel``, ``/chain`` and ``/compare``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..events import RunResult

COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"


@dataclass
class TaskOutcome:
    """One finished task (or chain step): the run's result plus what orchestration knows about it."""

    index: int
    result: RunResult
    status: str
    name: str = ""
    prompt: str = ""
    warnings: list[str] = field(default_factory=list)
    started_at: float = 0.0  # wall clock (time.time()); 0 when it never started
    ended_at: float = 0.0
    workdir: str = ""

    @property
    def backend(self) -> str:
        return self.result.backend

    def to_dict(self) -> dict[str, Any]:
        body = self.result.to_dict(list(self.warnings) or None)
        body.pop("backend_session_id", None)  # ephemeral: nothing to continue
        return body


def status_of(result: RunResult) -> str:
    if result.ok:
        return COMPLETED
    return CANCELLED if result.cancelled else FAILED


@dataclass
class BatchOutcome:
    """The outcome of a parallel or compare run: one TaskOutcome per task, in input order."""

    results: list[TaskOutcome]
    total_duration_ms: int
    started_at: float
    ended_at: float

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    def summary(self) -> dict[str, Any]:
        return {"total_tasks": len(self.results), "completed": self.count(COMPLETED),
                "failed": self.count(FAILED), "cancelled": self.count(CANCELLED),
                "total_duration_ms": self.total_duration_ms}

    @property
    def ok(self) -> bool:
        return all(r.status == COMPLETED for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """The body of a ``POST /api/v1/parallel`` answer."""
        body = self.summary()
        results = []
        for item in self.results:
            result: dict[str, Any] = {"index": item.index}
            if item.name:
                result["name"] = item.name
            result["status"] = item.status
            result.update(item.to_dict())
            results.append(result)
        body["results"] = results
        return body

    def compare_dict(self, prompt: str, backends: Sequence[str]) -> dict[str, Any]:
        """The body of a ``POST /api/v1/compare`` answer."""
        results = []
        for item in self.results:
            result = item.to_dict()
            result["status"] = item.status
            results.append(result)
        return {"prompt": prompt, "backends": list(backends), "completed": self.count(COMPLETED),
                "failed": len(results) - self.count(COMPLETED), "total_duration_ms": self.total_duration_ms,
                "results": results}


@dataclass
class ChainOutcome:
    total_steps: int
    results: list[TaskOutcome]
    total_duration_ms: int
    started_at: float
    ended_at: float

    @property
    def completed_steps(self) -> int:
        return sum(1 for r in self.results if r.status == COMPLETED)

    @property
    def failed_step(self) -> int:
        """1-based number of the first step that failed; 0 when none did."""
        return next((r.index + 1 for r in self.results if r.status != COMPLETED), 0)

    @property
    def ok(self) -> bool:
        return self.completed_steps == self.total_steps

    def to_dict(self) -> dict[str, Any]:
        """The body of a ``POST /api/v1/chain`` answer."""
        results = []
        for item in self.results:
            result: dict[str, Any] = {"step": item.index + 1}
            if item.name:
                result["name"] = item.name
            result["status"] = item.status
            result.update(item.to_dict())
            results.append(result)
        return {"total_steps": self.total_steps, "completed_steps": self.completed_steps,
                "failed_step": self.failed_step, "total_duration_ms": self.total_duration_ms,
                "results": results}
