"""What a parallel, chain or compare request asks for: validated specs with one set of defaults.

The HTTP views and the command line load the same JSON/YAML shape through these schemas and pass the
resulting spec to :mod:`clinvk.orchestration`.
"""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from ..config import OUTPUT_FORMATS
from .fields import MAX_PROMPT_CHARS, model_name, RequestSchema, StrictBoolean, StrictInteger
from .prompt import PromptOptionsSchema, PromptRequest, stream_of, to_request


@dataclass
class Step:
    """A parallel task or a chain step: a prompt request with an optional label."""

    request: PromptRequest
    name: str = ""


@dataclass
class ParallelSpec:
    tasks: list[Step]
    max_parallel: int = 0  # 0: parallel.max_workers
    fail_fast: bool | None = None  # None: parallel.fail_fast
    dry_run: bool = False
    stream: bool = False


@dataclass
class ChainSpec:
    steps: list[Step]
    #: Continue past a failed step unless asked to stop: a later step may not depend on the failed
    #: one, and the outcome still names the failed step. The command line uses the same default.
    stop_on_failure: bool = False
    pass_working_dir: bool = False
    dry_run: bool = False


@dataclass
class CompareSpec:
    prompt: str
    backends: list[str]
    model: str = ""
    workdir: str = ""
    sequential: bool = False
    dry_run: bool = False
    stream: bool = False


OUTPUT_FORMAT = fields.String(validate=validate.OneOf(OUTPUT_FORMATS), metadata={
    "description": "`stream-json` streams the tasks' unified events as NDJSON, each with `task` (its "
                   "0-based index), and ends with one `done` event without `task` summarizing the batch."})


class _StepSchema(PromptOptionsSchema):
    @post_load
    def _load(self, data, **kwargs):
        name = data.pop("name", "")
        return Step(to_request(data), name)


class ParallelTaskSchema(_StepSchema):
    """A task: the prompt fields. It is always ephemeral; its `output_format` is ignored."""

    backend = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(validate=validate.Length(max=200), metadata={"description": "A label for the task."})
    ephemeral = StrictBoolean(metadata={"description": "Tasks are always ephemeral; `false` is refused."})

    @validates_schema
    def _ephemeral(self, data, **kwargs):
        if data.get("ephemeral") is False:
            raise ValidationError("parallel tasks are always ephemeral", "ephemeral")


class ParallelRequestSchema(RequestSchema):
    tasks = fields.List(fields.Nested(ParallelTaskSchema), required=True, validate=validate.Length(min=1),
                        metadata={"description": "The tasks (at most `parallel.max_tasks`, 32 by default)."})
    max_parallel = StrictInteger(validate=validate.Range(min=0), metadata={
        "description": "Tasks running at once; 0 or absent: `parallel.max_workers` (3). At most "
                       "`server.max_concurrent_runs`."})
    fail_fast = StrictBoolean(metadata={
        "description": "On the first failed task, kill the running ones and start no more (they end "
                       "`cancelled`). Default: `parallel.fail_fast`."})
    dry_run = StrictBoolean(metadata={"description": "Return each task's command line instead of running it."})
    output_format = OUTPUT_FORMAT

    @post_load
    def _load(self, data, **kwargs):
        data["stream"] = bool(stream_of(data.pop("output_format", None)))
        return ParallelSpec(**data)


class ChainStepSchema(_StepSchema):
    """A step: the prompt fields plus `name`. `{{previous}}` in its prompt is replaced by the previous
    step's output. Always ephemeral; `output_format` is ignored."""

    backend = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(validate=validate.Length(max=200), metadata={"description": "A label for the step."})


class ChainRequestSchema(RequestSchema):
    steps = fields.List(fields.Nested(ChainStepSchema), required=True, validate=validate.Length(min=1),
                        metadata={"description": "The steps, run in order (at most `parallel.max_tasks`)."})
    stop_on_failure = StrictBoolean(metadata={"description": "Stop after the first failed step (default false)."})
    pass_working_dir = StrictBoolean(metadata={
        "description": "A step without `workdir` runs in the previous step's workdir."})
    dry_run = StrictBoolean(metadata={"description": "Return each step's command line instead of running it."})
    pass_session_id = StrictBoolean(metadata={"description": "Not supported: chains are ephemeral. Only `false`."})
    persist_sessions = StrictBoolean(metadata={"description": "Not supported: chains are ephemeral. Only `false`."})

    @validates_schema
    def _ephemeral(self, data, **kwargs):
        for name in ("pass_session_id", "persist_sessions"):
            if data.get(name):
                raise ValidationError("chains are always ephemeral; sessions are not supported", name)

    @post_load
    def _load(self, data, **kwargs):
        data.pop("pass_session_id", None)
        data.pop("persist_sessions", None)
        return ChainSpec(**data)


class CompareRequestSchema(RequestSchema):
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROMPT_CHARS))
    backends = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True,
                           validate=validate.Length(min=1), metadata={
                               "description": "Backends to ask, in the order of the results. An unknown or "
                                              "unavailable one yields a result with its `error`."})
    model = fields.String(validate=model_name(), metadata={"description": "Model for every backend."})
    workdir = fields.String(validate=validate.Length(max=4096))
    sequential = StrictBoolean(metadata={"description": "One backend after the other instead of all at once."})
    dry_run = StrictBoolean()
    output_format = OUTPUT_FORMAT

    @post_load
    def _load(self, data, **kwargs):
        data["stream"] = bool(stream_of(data.pop("output_format", None)))
        return CompareSpec(**data)


__all__ = ["Step", "ParallelSpec", "ChainSpec", "CompareSpec", "ParallelTaskSchema", "ParallelRequestSchema",
           "ChainStepSchema", "ChainRequestSchema", "CompareRequestSchema"]
