"""A chain: steps run one after the other, ``{{previous}}`` in a prompt being the previous step's output."""

from __future__ import annotations

import dataclasses
import time

from ..errors import ServiceError
from ..events import RunResult
from ..specs import ChainSpec, PromptRequest, Step
from ..lifecycle import CancelToken
from .batch import Listener, run_one
from .outcomes import COMPLETED, ChainOutcome, TaskOutcome, status_of
from .limits import check_count

PREVIOUS = "{{previous}}"
SESSION = "{{session}}"


class Chain:
    """A validated chain request: every step was checked before the first runs (so a typo in step 3
    costs no run of steps 1-2). Run it once with :meth:`run`."""

    def __init__(self, service, spec: ChainSpec):
        self.service = service
        self.spec = spec
        self.steps = spec.steps
        check_count(service, len(self.steps), "steps")
        for i, step in enumerate(self.steps):
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
            service.prepare(self._request(step, prompt, step.request.workdir), field_prefix=f"steps[{i}].")

    def _request(self, step: Step, prompt: str, workdir: str) -> PromptRequest:
        return dataclasses.replace(step.request, prompt=prompt, workdir=workdir, ephemeral=True, stream=False,
                                   dry_run=step.request.dry_run or self.spec.dry_run)

    def run(self, listener: Listener | None = None, cancel: CancelToken | None = None) -> ChainOutcome:
        """Run the steps in order. A step that fails to prepare at run time (its prompt became empty,
        its CLI vanished) is a failed step, not an exception. ``cancel`` ends the running step and
        the chain: later steps do not start."""
        started, clock = time.time(), time.monotonic()
        results: list[TaskOutcome] = []
        previous_output, previous_workdir = "", ""
        for i, step in enumerate(self.steps):
            prompt = step.request.prompt
            if i > 0:
                prompt = prompt.replace(PREVIOUS, previous_output)
            workdir = step.request.workdir or (previous_workdir if self.spec.pass_working_dir else "")
            if listener:
                listener("start", i, None)
            step_started = time.time()
            warnings: list[str] = []
            try:
                prepared = self.service.prepare(self._request(step, prompt, workdir), field_prefix=f"steps[{i}].")
                workdir, warnings = prepared.spec.workdir, prepared.notes
                result = run_one(prepared, cancel)
            except ServiceError as exc:
                result = RunResult(step.request.backend or self.service.config.default_backend, exit_code=1,
                                   error=f"{exc.field}: {exc.message}" if exc.field else exc.message)
            outcome = TaskOutcome(i, result, status_of(result), step.name, prompt, warnings, step_started,
                                  time.time(), workdir)
            results.append(outcome)
            if listener:
                listener("end", i, outcome)
            previous_output, previous_workdir = result.output, workdir
            if outcome.status != COMPLETED and (self.spec.stop_on_failure or (cancel and cancel.reason)):
                break
        return ChainOutcome(len(self.steps), results, int((time.monotonic() - clock) * 1000), started,
                            time.time())
