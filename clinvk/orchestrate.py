"""Parallel, chain and compare runs on top of the service: used by the HTTP views and the command line.

Every run here is ephemeral (``prepare(..., persist=False)``). Tasks run on a thread pool; each one
still takes a slot of the server's concurrency gate, so a batch can never exceed
``server.max_concurrent_runs``. Knows nothing about Flask.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .events import Event, RunResult
from .gate import GateFull
from .service import CancelToken, PreparedRun, PromptRequest, Service, ServiceError, StreamingRun

log = logging.getLogger(__name__)

COMPLETED, FAILED, CANCELLED = "completed", "failed", "cancelled"
PREVIOUS = "{{previous}}"
TICK_SECS = 5.0
SESSION = "{{session}}"

#: listener(what, index, outcome): what is "start" (outcome None) or "end"
Listener = Callable[[str, int, "TaskOutcome | None"], None]


class LimitExceeded(ServiceError):
    """A request asks for more than the server's limits allow (tasks per request, parallelism)."""

    status, code = 422, "validation_failed"


@dataclass
class Unprepared:
    """A task that could not be prepared (compare: unknown or unavailable backend). It runs as a failure."""

    backend: str
    error: str
    model: str | None = None


Task = PreparedRun | Unprepared


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
        body = result_dict(self.result, self.warnings)
        body.pop("backend_session_id", None)  # ephemeral: nothing to continue
        return body


def result_dict(result: RunResult, warnings: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON shape of one run, as ``POST /api/v1/prompt`` answers it (without a session)."""
    return result.to_dict(list(warnings) if warnings else None)


def status_of(result: RunResult) -> str:
    if result.ok:
        return COMPLETED
    return CANCELLED if result.cancelled else FAILED


def request_from(data: dict[str, Any]) -> PromptRequest:
    """A PromptRequest from validated schema data (fields PromptRequest does not know are dropped)."""
    return PromptRequest(**{k: v for k, v in data.items() if k in PromptRequest.__dataclass_fields__})


# -- limits ---------------------------------------------------------------------------------------


def check_count(service: Service, count: int, what: str) -> None:
    """At most ``parallel.max_tasks`` tasks/steps/backends in one request."""
    limit = service.config.parallel.max_tasks
    if count > limit:
        raise LimitExceeded(f"{what}: at most {limit} per request (parallel.max_tasks), got {count}", what)
    if count == 0:
        raise ServiceError(f"{what}: at least one is required", what)


def max_workers(service: Service, requested: int | None, tasks: int) -> int:
    """The pool size: ``requested`` (0/None: ``parallel.max_workers``), never above the server's gate."""
    limit = service.gate.limit
    if requested and requested > limit:
        raise LimitExceeded(f"max_parallel must be at most {limit} (server.max_concurrent_runs)", "max_parallel")
    value = requested or service.config.parallel.max_workers or 3
    return max(1, min(value, limit, tasks))


def prepare_tasks(service: Service, requests: Sequence[PromptRequest], *, dry_run: bool = False,
                  stream: bool = False, what: str = "tasks") -> list[PreparedRun]:
    """Validate every task before any runs; a :class:`ServiceError` names the field (``tasks[3].backend``).

    Tasks are ephemeral and inherit the request's ``dry_run``; the request's ``output_format`` (not the
    task's) decides whether they stream.
    """
    check_count(service, len(requests), what)
    prepared = []
    for i, req in enumerate(requests):
        prefix = f"{what}[{i}]."
        if req.session_id:
            raise ServiceError(f"{what} are ephemeral and cannot continue a session", f"{prefix}session_id")
        req.ephemeral = True
        req.dry_run = req.dry_run or dry_run
        req.output_format = "stream-json" if stream else "json"
        prepared.append(service.prepare(req, persist=False, field_prefix=prefix))
    return prepared


def _cancel_all(cancels: list[Callable[[str], None]], reason: str) -> None:
    """Cancel runs at once: each cancel may wait a grace period for its process group to end."""
    threads = [threading.Thread(target=cancel, args=(reason,), name="clinvk-cancel", daemon=True)
               for cancel in cancels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _unstarted(task: Task, reason: str, exit_code: int = -1) -> RunResult:
    backend = task.backend if isinstance(task, Unprepared) else task.backend.name
    return RunResult(backend, exit_code=exit_code, error=reason, cancelled=exit_code == -1)


def _run_one(task: Task, token: CancelToken | None) -> RunResult:
    """Execute one task; a refusal (busy server, CLI that cannot start) becomes a failed result."""
    if isinstance(task, Unprepared):
        return RunResult(task.backend, exit_code=1, error=task.error, model=task.model)
    started = time.monotonic()
    try:
        return task.execute(cancel=token)
    except (GateFull, ServiceError) as exc:
        return RunResult(task.backend.name, exit_code=1, error=str(exc),
                         duration_ms=int((time.monotonic() - started) * 1000))


def _describe(task: Task) -> tuple[str, str]:
    if isinstance(task, Unprepared):
        return "", ""
    return task.request.prompt, task.spec.workdir


# -- parallel (and compare) -----------------------------------------------------------------------


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


class ParallelRun:
    """Run tasks on a pool of ``max_parallel`` threads; results in input order.

    With ``fail_fast`` the first failed task cancels the rest: running CLIs have their process groups
    killed at once, waiting tasks never start. Both end as ``cancelled``.
    """

    def __init__(self, tasks: Sequence[Task], max_parallel: int, *, fail_fast: bool = False,
                 names: Sequence[str] | None = None, listener: Listener | None = None):
        self.tasks = list(tasks)
        self.max_parallel = max(1, max_parallel)
        self.fail_fast = fail_fast
        self.names = list(names) if names else [""] * len(self.tasks)
        self.listener = listener
        self.reason: str | None = None
        self._tokens = [CancelToken() for _ in self.tasks]
        self._running: set[int] = set()
        self._lock = threading.Lock()

    def cancel(self, reason: str) -> None:
        """End the batch: kill what runs, start nothing more. Idempotent, callable from any thread."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            running = [self._tokens[i].cancel for i in sorted(self._running)]
        _cancel_all(running, reason)

    def _notify(self, what: str, index: int, outcome: TaskOutcome | None) -> None:
        if self.listener is not None:
            try:
                self.listener(what, index, outcome)
            except Exception:  # a display problem must not break the batch
                log.exception("orchestration listener failed")

    def _work(self, index: int) -> TaskOutcome:
        task = self.tasks[index]
        prompt, workdir = _describe(task)
        with self._lock:
            reason = self.reason
            if reason is None:
                self._running.add(index)
        if reason is not None:
            outcome = TaskOutcome(index, _unstarted(task, reason), CANCELLED, self.names[index], prompt,
                                  workdir=workdir)
            self._notify("end", index, outcome)
            return outcome
        self._notify("start", index, None)
        started = time.time()
        try:
            result = _run_one(task, self._tokens[index])
        finally:
            with self._lock:
                self._running.discard(index)
        warnings = [] if isinstance(task, Unprepared) else task.notes
        outcome = TaskOutcome(index, result, status_of(result), self.names[index], prompt, warnings,
                              started, time.time(), workdir)
        self._notify("end", index, outcome)
        if outcome.status == FAILED and self.fail_fast:
            self.cancel(f"cancelled (fail-fast: tasks[{index}] failed)")
        return outcome

    def run(self) -> BatchOutcome:
        started, clock = time.time(), time.monotonic()
        pool = ThreadPoolExecutor(max_workers=min(self.max_parallel, len(self.tasks)) or 1,
                                  thread_name_prefix="clinvk-task")
        try:
            futures = [pool.submit(self._work, i) for i in range(len(self.tasks))]
            wait(futures)
        except BaseException:  # Ctrl+C in the command line: no CLI may outlive us
            self.cancel("interrupted")
            raise
        finally:
            pool.shutdown(wait=True)
        results = [f.result() for f in futures]
        return BatchOutcome(results, int((time.monotonic() - clock) * 1000), started, time.time())


class ParallelStream:
    """Run tasks as streams; :meth:`events` merges their unified events, each tagged with ``task``.

    Yields event dicts and ``None`` (keep-alive: no task said anything for ``keepalive`` seconds);
    ends with one ``done`` event without ``task`` that summarizes the batch. :meth:`close` (client
    gone) kills every running CLI and starts no more.
    """

    _END = object()

    def __init__(self, tasks: Sequence[Task], max_parallel: int, *, fail_fast: bool = False,
                 names: Sequence[str] | None = None):
        self.tasks = list(tasks)
        self.fail_fast = fail_fast
        self.names = list(names) if names else [""] * len(self.tasks)
        self.reason: str | None = None
        self.outcomes: list[TaskOutcome | None] = [None] * len(self.tasks)
        self._queue: queue.Queue = queue.Queue()
        self._runs: dict[int, StreamingRun] = {}
        self._lock = threading.Lock()
        self._started = time.time()
        self._clock = time.monotonic()
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(max_parallel, len(self.tasks))),
                                        thread_name_prefix="clinvk-stream")
        self._futures = [self._pool.submit(self._work, i) for i in range(len(self.tasks))]

    # -- producer side (one thread per running task) ----------------------------------------------

    def _put(self, index: int, event: Event) -> None:
        data = event.to_dict()
        self._queue.put({"type": data.pop("type"), "task": index, **data})

    def _fail(self, index: int, backend: str, message: str, exit_code: int) -> None:
        self._put(index, Event("error", {"message": message}, backend=backend))
        self._put(index, Event("done", {"exit_code": exit_code, "duration_ms": 0}, backend=backend))

    def _work(self, index: int) -> None:
        task = self.tasks[index]
        prompt, workdir = _describe(task)
        try:
            with self._lock:
                reason = self.reason
            if reason is not None:
                result = _unstarted(task, reason)
            elif isinstance(task, Unprepared):
                result = _run_one(task, None)
            else:
                result = self._stream(index, task)
                if result is None:  # cancelled while starting
                    result = _unstarted(task, self.reason or "cancelled")
            if not self._streamed(index):
                self._fail(index, result.backend, result.error or "failed", result.exit_code)
            outcome = TaskOutcome(index, result, status_of(result), self.names[index], prompt, workdir=workdir)
            self.outcomes[index] = outcome
            if outcome.status == FAILED and self.fail_fast:
                self.cancel(f"cancelled (fail-fast: tasks[{index}] failed)")
        except Exception as exc:  # never leave the consumer waiting for a task that died
            log.exception("stream task %d failed", index)
            backend = task.backend if isinstance(task, Unprepared) else task.backend.name
            self.outcomes[index] = TaskOutcome(index, RunResult(backend, exit_code=1, error=str(exc)), FAILED,
                                               self.names[index], prompt)
            self._fail(index, backend, f"internal error: {exc}", 1)
        finally:
            self._queue.put((self._END, index))

    def _streamed(self, index: int) -> bool:
        return index in self._runs

    def _stream(self, index: int, task: PreparedRun) -> RunResult | None:
        try:
            run = task.start_stream()  # takes a gate slot and spawns the CLI
        except (GateFull, ServiceError) as exc:
            return RunResult(task.backend.name, exit_code=1, error=str(exc))
        with self._lock:
            self._runs[index] = run
            reason = self.reason
        try:
            if reason is not None:
                run.cancel(reason)
            for event in run.events(TICK_SECS):  # its keep-alive ticks are dropped: events() makes ours
                if event is not None:
                    self._put(index, event)
        finally:
            run.close()
        return run.result or RunResult(task.backend.name, exit_code=-1, error=self.reason or "cancelled",
                                       cancelled=True)

    # -- consumer side -----------------------------------------------------------------------------

    def cancel(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            runs = [run.cancel for i, run in self._runs.items() if self.outcomes[i] is None]
        _cancel_all(runs, reason)

    def events(self, keepalive: float) -> Iterator[dict[str, Any] | None]:
        remaining = len(self.tasks)
        while remaining:
            try:
                item = self._queue.get(timeout=keepalive)
            except queue.Empty:
                yield None
                continue
            if isinstance(item, tuple) and item[0] is self._END:
                remaining -= 1
                continue
            yield item
        yield self.summary_event()

    def outcome(self) -> BatchOutcome:
        results = [o for o in self.outcomes if o is not None]
        return BatchOutcome(results, int((time.monotonic() - self._clock) * 1000), self._started, time.time())

    def summary_event(self) -> dict[str, Any]:
        batch = self.outcome()
        content = batch.summary()
        content["results"] = [{"task": o.index, "backend": o.backend, "status": o.status,
                               "exit_code": o.result.exit_code, "duration_ms": o.result.duration_ms}
                              for o in batch.results]
        data = Event("done", content).to_dict()
        del data["backend"]  # the batch's summary, not one backend's
        return data

    def close(self) -> None:
        """Idempotent: kill running CLIs if the batch did not finish, then wait for the task threads."""
        if any(not f.done() for f in self._futures):
            self.cancel("client disconnected")
        self._pool.shutdown(wait=True)


# -- chain ----------------------------------------------------------------------------------------


@dataclass
class ChainStep:
    request: PromptRequest
    name: str = ""


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


def check_chain(service: Service, steps: Sequence[ChainStep], *, dry_run: bool = False) -> None:
    """Validate every step before the first runs (so a typo in step 3 costs no run of steps 1-2)."""
    check_count(service, len(steps), "steps")
    for i, step in enumerate(steps):
        prompt = step.request.prompt or ""
        if i == 0 and PREVIOUS in prompt:
            raise ServiceError(f"steps[0].prompt uses {PREVIOUS} but the first step has no previous step",
                               "steps[0].prompt")
        if SESSION in prompt:
            raise ServiceError(f"steps[{i}].prompt uses {SESSION} but chain steps are ephemeral (no sessions)",
                               f"steps[{i}].prompt")
        if step.request.session_id:
            raise ServiceError("chain steps are ephemeral and cannot continue a session",
                               f"steps[{i}].session_id")
        service.prepare(_step_request(step, prompt, step.request.workdir, dry_run), persist=False,
                        field_prefix=f"steps[{i}].")


def _step_request(step: ChainStep, prompt: str, workdir: str, dry_run: bool) -> PromptRequest:
    fields = {k: getattr(step.request, k) for k in PromptRequest.__dataclass_fields__}
    fields.update(prompt=prompt, workdir=workdir, ephemeral=True, output_format="json",
                  dry_run=step.request.dry_run or dry_run)
    return PromptRequest(**fields)


def run_chain(service: Service, steps: Sequence[ChainStep], *, stop_on_failure: bool = False,
              pass_working_dir: bool = False, dry_run: bool = False, listener: Listener | None = None,
              cancel: CancelToken | None = None) -> ChainOutcome:
    """Run the steps in order; ``{{previous}}`` in a prompt becomes the previous step's output.

    Call :func:`check_chain` first. A step that fails to prepare at run time (its prompt became empty,
    its CLI vanished) is a failed step, not an exception.
    """
    started, clock = time.time(), time.monotonic()
    results: list[TaskOutcome] = []
    previous_output, previous_workdir = "", ""
    for i, step in enumerate(steps):
        if cancel is not None and cancel.reason:
            break
        prompt = step.request.prompt
        if i > 0:
            prompt = prompt.replace(PREVIOUS, previous_output)
        workdir = step.request.workdir or (previous_workdir if pass_working_dir else "")
        if listener:
            listener("start", i, None)
        step_started = time.time()
        warnings: list[str] = []
        try:
            prepared = service.prepare(_step_request(step, prompt, workdir, dry_run), persist=False,
                                       field_prefix=f"steps[{i}].")
            workdir, warnings = prepared.spec.workdir, prepared.notes
            result = _run_one(prepared, cancel)
        except ServiceError as exc:
            result = RunResult(step.request.backend or service.config.default_backend, exit_code=1,
                               error=f"{exc.field}: {exc.message}" if exc.field else exc.message)
        outcome = TaskOutcome(i, result, status_of(result), step.name, prompt, warnings, step_started,
                              time.time(), workdir)
        results.append(outcome)
        if listener:
            listener("end", i, outcome)
        previous_output, previous_workdir = result.output, workdir
        if outcome.status != COMPLETED and stop_on_failure:
            break
    return ChainOutcome(len(steps), results, int((time.monotonic() - clock) * 1000), started, time.time())


# -- compare --------------------------------------------------------------------------------------


def compare_tasks(service: Service, prompt: str, backends: Sequence[str], *, model: str = "", workdir: str = "",
                  dry_run: bool = False, stream: bool = False) -> list[Task]:
    """One task per backend, in order. An unknown or unavailable backend is a task that fails with its
    error; a bad prompt or workdir concerns every backend, so it is the request's error."""
    check_count(service, len(backends), "backends")
    if not prompt or not prompt.strip():
        raise ServiceError("prompt must not be empty", "prompt")
    tasks: list[Task] = []
    for i, name in enumerate(backends):
        request = PromptRequest(prompt=prompt, backend=name, model=model, workdir=workdir, ephemeral=True,
                                dry_run=dry_run, output_format="stream-json" if stream else "json")
        try:
            tasks.append(service.prepare(request, persist=False))
        except ServiceError as exc:
            if exc.field not in ("backend", "model"):
                raise
            tasks.append(Unprepared(name, exc.message, model or None))
    return tasks


def compare_workers(service: Service, tasks: int, sequential: bool) -> int:
    return 1 if sequential else max(1, min(tasks, service.gate.limit))
