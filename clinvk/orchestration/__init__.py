"""Parallel, chain and compare: one entry point per operation, used by the HTTP views and the command line.

Each takes the service and a validated spec (:mod:`clinvk.specs`), checks every task before any runs
(a :class:`~clinvk.errors.ServiceError` names the field, e.g. ``tasks[3].backend``), and returns an
object to run once: ``.run(listener)`` for the whole outcome, or ``.stream()`` for the tasks' events.
Every run here is ephemeral. Knows nothing about Flask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ServiceError
from ..specs import ChainSpec, CompareSpec, ParallelSpec, PromptRequest
from .batch import Listener, ParallelRun, ParallelStream, Task, Unprepared
from .chain import Chain
from .limits import check_count, max_workers
from .outcomes import CANCELLED, COMPLETED, FAILED, BatchOutcome, ChainOutcome, TaskOutcome

__all__ = ["CANCELLED", "COMPLETED", "FAILED", "Batch", "BatchOutcome", "Chain", "ChainOutcome", "Listener",
           "ParallelStream", "TaskOutcome", "chain", "compare", "parallel"]


@dataclass
class Batch:
    """Prepared tasks of a parallel or compare request, with how many run at once."""

    tasks: list[Task]
    workers: int
    fail_fast: bool = False
    names: list[str] = field(default_factory=list)

    def run(self, listener: Listener | None = None) -> BatchOutcome:
        return ParallelRun(self.tasks, self.workers, fail_fast=self.fail_fast, names=self.names,
                           listener=listener).run()

    def stream(self) -> ParallelStream:
        return ParallelStream(self.tasks, self.workers, fail_fast=self.fail_fast, names=self.names)


def parallel(service, spec: ParallelSpec) -> Batch:
    """Tasks are ephemeral, inherit the request's ``dry_run``, and stream when the request does."""
    check_count(service, len(spec.tasks), "tasks")
    tasks: list[Task] = []
    for i, task in enumerate(spec.tasks):
        if task.request.session_id:
            raise ServiceError("tasks are ephemeral and cannot continue a session", f"tasks[{i}].session_id")
        request = dataclasses.replace(task.request, ephemeral=True, stream=spec.stream,
                                      dry_run=task.request.dry_run or spec.dry_run)
        tasks.append(service.prepare(request, field_prefix=f"tasks[{i}]."))
    fail_fast = spec.fail_fast if spec.fail_fast is not None else service.config.parallel.fail_fast
    return Batch(tasks, max_workers(service, spec.max_parallel, len(tasks)), fail_fast,
                 [task.name for task in spec.tasks])


def chain(service, spec: ChainSpec) -> Chain:
    return Chain(service, spec)


def compare(service, spec: CompareSpec) -> Batch:
    """One task per backend, in order. An unknown or unavailable backend is a task that fails with its
    error; a bad prompt or workdir concerns every backend, so it is the request's error."""
    check_count(service, len(spec.backends), "backends")
    if not spec.prompt or not spec.prompt.strip():
        raise ServiceError("prompt must not be empty", "prompt")
    tasks: list[Task] = []
    for name in spec.backends:
        request = PromptRequest(prompt=spec.prompt, backend=name, model=spec.model, workdir=spec.workdir,
                                ephemeral=True, dry_run=spec.dry_run, stream=spec.stream)
        try:
            tasks.append(service.prepare(request))
        except ServiceError as exc:
            if exc.field not in ("backend", "model"):
                raise
            tasks.append(Unprepared(name, exc.message, spec.model or None))
    workers = 1 if spec.sequential else max(1, min(len(tasks), service.gate.limit))
    return Batch(tasks, workers)
