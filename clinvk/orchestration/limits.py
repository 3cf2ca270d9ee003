"""How much one orchestration request may ask for: tasks per request and tasks at once."""

from __future__ import annotations

from ..errors import LimitExceeded, ServiceError


def check_count(service, count: int, what: str) -> None:
    """At most ``parallel.max_tasks`` tasks/steps/backends in one request, and at least one."""
    limit = service.config.parallel.max_tasks
    if count > limit:
        raise LimitExceeded(f"{what}: at most {limit} per request (parallel.max_tasks), got {count}", what)
    if count == 0:
        raise ServiceError(f"{what}: at least one is required", what)


def max_workers(service, requested: int | None, tasks: int) -> int:
    """The pool size: ``requested`` (0/None: ``parallel.max_workers``), never above the server's gate."""
    limit = service.gate.limit
    if requested and requested > limit:
        raise LimitExceeded(f"max_parallel must be at most {limit} (server.max_concurrent_runs)", "max_parallel")
    value = requested or service.config.parallel.max_workers or 3
    return max(1, min(value, limit, tasks))
