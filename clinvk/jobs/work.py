"""What a job runs: a prompt, or a parallel, chain or compare request, through the same entry points as
the synchronous endpoints (:meth:`Service.prepare`, :mod:`clinvk.orchestration`).

Each kind is a :class:`Work`: built (and so validated) while the submitting request is still open, so a
bad request is still a 4xx; run later on the job's thread, giving its unified events one by one and then
the result in the shape the synchronous endpoint answers.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from typing import Any, Callable, Iterator

from .. import orchestration
from ..events import DONE, PROGRESS, Event
from ..gate import GateFull
from ..lifecycle import CancelToken, PreparedRun, StreamingRun
from ..orchestration import ParallelStream
from ..specs import ChainSpec, CompareSpec, ParallelSpec, PromptRequest
from .model import CANCELLED, COMPLETED, FAILED, INTERRUPTED

TICK_SECS = 5.0
STOPPED = "the server stopped before the job finished"
GATE_RETRY_SECS = 1.0


class Work:
    """One job's run. :meth:`events` runs it (once); then :attr:`status`, :attr:`result`, :attr:`error`."""

    kind = ""

    def __init__(self) -> None:
        self.status = FAILED
        self.result: dict[str, Any] | None = None
        self.error: str | None = None
        self.session_id: str | None = None
        self.cancelled: str | None = None
        self.on_start: Callable[[], None] = lambda: None  # called once the first CLI runs

    def events(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def cancel(self, reason: str) -> None:
        self.cancelled = self.cancelled or reason

    def _status(self, ok: bool, killed: bool = False) -> str:
        """``killed``: clinvk ended a run though nobody cancelled the job, i.e. the server is stopping."""
        if self.cancelled:
            return CANCELLED
        if killed:
            self.error = STOPPED
            return INTERRUPTED
        return COMPLETED if ok else FAILED


class PromptWork(Work):
    """One prompt, streamed (the job keeps its unified events), recorded as a session turn as usual."""

    kind = "prompt"

    def __init__(self, prepared: PreparedRun):
        super().__init__()
        self.prepared = prepared
        self._run: StreamingRun | None = None

    def _start(self) -> StreamingRun | None:
        """A run slot may be busy for a while: a job waits for one (stays ``queued``) instead of failing."""
        while not self.cancelled:
            try:
                return self.prepared.start_stream()
            except GateFull:
                time.sleep(GATE_RETRY_SECS)
        return None

    def events(self) -> Iterator[dict[str, Any]]:
        run = self._run = self._start()
        if run is None:
            self.status, self.error = CANCELLED, self.cancelled
            return
        try:
            if self.cancelled:  # cancelled while its CLI was starting
                run.cancel(self.cancelled)
            self.session_id = self.prepared.session_id
            self.on_start()
            for event in run.events(TICK_SECS):
                if event is not None:
                    yield event.to_dict()
        finally:
            run.close()
        result = run.result
        if result is not None:
            body = result.to_dict(self.prepared.notes)
            self.result = {"session_id": self.session_id, **body} if self.session_id else body
            self.error = result.error
        else:
            self.error = self.cancelled or "the run ended without a result"
        killed = result is not None and result.cancelled and not result.timed_out
        self.status = self._status(result is not None and result.ok, killed)

    def cancel(self, reason: str) -> None:
        super().cancel(reason)
        if self._run is not None:
            self._run.cancel(reason)


class BatchWork(Work):
    """A parallel or compare request: its tasks' streamed events, then the batch's answer."""

    def __init__(self, kind: str, batch: orchestration.Batch, answer: Callable[[orchestration.BatchOutcome], dict]):
        super().__init__()
        self.kind = kind
        self.batch = batch
        self.answer = answer
        self._stream: ParallelStream | None = None

    def events(self) -> Iterator[dict[str, Any]]:
        stream = self._stream = self.batch.stream()
        if self.cancelled:
            stream.cancel(self.cancelled)
        self.on_start()
        try:
            for event in stream.events(TICK_SECS):
                if event is not None:
                    yield event
        finally:
            stream.close()
        outcome = stream.outcome()
        self.result = self.answer(outcome)
        if not outcome.ok:
            self.error = self.cancelled or f"{outcome.count(FAILED)} of {len(outcome.results)} tasks failed"
        # fail-fast cancels tasks after a failure; cancelled tasks without one mean the server is stopping
        self.status = self._status(outcome.ok, outcome.count(CANCELLED) > 0 and outcome.count(FAILED) == 0)

    def cancel(self, reason: str) -> None:
        super().cancel(reason)
        if self._stream is not None:
            self._stream.cancel(reason)


class ChainWork(Work):
    """A chain: a ``progress`` event as each step starts and ends (the step's result in the latter),
    a ``done`` event summing it up, then the chain's answer."""

    kind = "chain"

    def __init__(self, chain: orchestration.Chain):
        super().__init__()
        self.chain = chain
        self.token = CancelToken()  # one token for every step: a cancelled chain starts no further step

    def events(self) -> Iterator[dict[str, Any]]:
        events: queue.Queue = queue.Queue()
        done = object()

        def listener(what: str, index: int, outcome) -> None:
            content: dict[str, Any] = {"step": index + 1, "status": "running" if what == "start" else outcome.status}
            if outcome is not None:
                content["result"] = outcome.to_dict()
            backend = self.chain.steps[index].request.backend
            events.put(Event(PROGRESS, content, backend=backend).to_dict())

        def run() -> None:
            try:
                self.outcome = self.chain.run(listener, cancel=self.token)
            finally:
                events.put(done)

        self.outcome = None
        self.on_start()
        thread = threading.Thread(target=run, name="clinvk-job-chain", daemon=True)
        thread.start()
        while (item := events.get()) is not done:
            yield item
        thread.join()
        if self.outcome is None:
            self.error = "the chain failed inside the server; the server log has the details"
            return
        self.result = self.outcome.to_dict()
        summary = {key: self.result[key] for key in ("total_steps", "completed_steps", "failed_step",
                                                     "total_duration_ms")}
        data = Event(DONE, summary).to_dict()
        del data["backend"]  # the chain's summary, not one backend's
        yield data
        if not self.outcome.ok:
            self.error = self.cancelled or f"step {self.outcome.failed_step} failed"
        self.status = self._status(self.outcome.ok, any(r.status == CANCELLED for r in self.outcome.results))

    def cancel(self, reason: str) -> None:
        super().cancel(reason)
        self.token.cancel(reason)


def prompt_work(service, request: PromptRequest) -> PromptWork:
    """Validated now (a ServiceError names the field); always streamed, so the job keeps its events."""
    return PromptWork(service.prepare(dataclasses.replace(request, stream=True)))


def parallel_work(service, spec: ParallelSpec) -> BatchWork:
    return BatchWork("parallel", orchestration.parallel(service, dataclasses.replace(spec, stream=True)),
                     lambda outcome: outcome.to_dict())


def compare_work(service, spec: CompareSpec) -> BatchWork:
    return BatchWork("compare", orchestration.compare(service, dataclasses.replace(spec, stream=True)),
                     lambda outcome: outcome.compare_dict(spec.prompt, spec.backends))


def chain_work(service, spec: ChainSpec) -> ChainWork:
    return ChainWork(orchestration.chain(service, spec))


BUILDERS = {"prompt": prompt_work, "parallel": parallel_work, "chain": chain_work, "compare": compare_work}


def build(service, kind: str, spec: Any) -> Work:
    """The work of a job of ``kind`` for its loaded request ``spec``."""
    return BUILDERS[kind](service, spec)
