"""Running tasks on a thread pool: :class:`ParallelRun` (results at the end) and :class:`ParallelStream`
(the tasks' unified events as they happen). Parallel and compare requests both run this way.

Each task still takes a slot of the server's concurrency gate, so a batch can never exceed
``server.max_concurrent_runs``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

from ..errors import ServiceError, ShuttingDown
from ..events import DONE, ERROR, Event, RunResult
from ..gate import GateFull
from ..lifecycle import CancelToken, PreparedRun, StreamingRun
from .outcomes import CANCELLED, FAILED, BatchOutcome, TaskOutcome, status_of

log = logging.getLogger(__name__)

TICK_SECS = 5.0

#: listener(what, index, outcome): what is "start" (outcome None) or "end"
Listener = Callable[[str, int, "TaskOutcome | None"], None]


@dataclass
class Unprepared:
    """A task that could not be prepared (compare: unknown or unavailable backend). It runs as a failure."""

    backend: str
    error: str
    model: str | None = None


Task = PreparedRun | Unprepared


def cancel_all(cancels: list[Callable[[str], None]], reason: str) -> None:
    """Cancel runs at once: each cancel may wait a grace period for its process group to end."""
    threads = [threading.Thread(target=cancel, args=(reason,), name="clinvk-cancel", daemon=True)
               for cancel in cancels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def unstarted(task: Task, reason: str, exit_code: int = -1) -> RunResult:
    backend = task.backend if isinstance(task, Unprepared) else task.backend.name
    return RunResult(backend, exit_code=exit_code, error=reason, cancelled=exit_code == -1)


def run_one(task: Task, token: CancelToken | None) -> RunResult:
    """Execute one task; a refusal (busy server, CLI that cannot start) becomes a failed result."""
    if isinstance(task, Unprepared):
        return RunResult(task.backend, exit_code=1, error=task.error, model=task.model)
    started = time.monotonic()
    try:
        return task.execute(cancel=token)
    except (GateFull, ServiceError) as exc:
        return RunResult(task.backend.name, exit_code=1, error=str(exc),
                         duration_ms=int((time.monotonic() - started) * 1000))


def describe(task: Task) -> tuple[str, str]:
    if isinstance(task, Unprepared):
        return "", ""
    return task.request.prompt, task.spec.workdir


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
        cancel_all(running, reason)

    def _notify(self, what: str, index: int, outcome: TaskOutcome | None) -> None:
        if self.listener is not None:
            try:
                self.listener(what, index, outcome)
            except Exception:  # a display problem must not break the batch
                log.exception("orchestration listener failed")

    def _work(self, index: int) -> TaskOutcome:
        task = self.tasks[index]
        prompt, workdir = describe(task)
        with self._lock:
            reason = self.reason
            if reason is None:
                self._running.add(index)
        if reason is not None:
            outcome = TaskOutcome(index, unstarted(task, reason), CANCELLED, self.names[index], prompt,
                                  workdir=workdir)
            self._notify("end", index, outcome)
            return outcome
        self._notify("start", index, None)
        started = time.time()
        try:
            result = run_one(task, self._tokens[index])
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
        self._put(index, Event(ERROR, {"message": message}, backend=backend))
        self._put(index, Event(DONE, {"exit_code": exit_code, "duration_ms": 0}, backend=backend))

    def _work(self, index: int) -> None:
        task = self.tasks[index]
        prompt, workdir = describe(task)
        try:
            with self._lock:
                reason = self.reason
            if reason is not None:
                result = unstarted(task, reason)
            elif isinstance(task, Unprepared):
                result = run_one(task, None)
            else:
                result = self._stream(index, task)
                if result is None:  # cancelled while starting
                    result = unstarted(task, self.reason or "cancelled")
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
        except (GateFull, ServiceError, ShuttingDown) as exc:
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
        cancel_all(runs, reason)

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
        data = Event(DONE, content).to_dict()
        del data["backend"]  # the batch's summary, not one backend's
        return data

    def close(self) -> None:
        """Idempotent: kill running CLIs if the batch did not finish, then wait for the task threads."""
        if any(not f.done() for f in self._futures):
            self.cancel("client disconnected")
        self._pool.shutdown(wait=True)
