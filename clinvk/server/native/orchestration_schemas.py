"""Marshmallow schemas of the orchestration endpoints: parallel, chain, compare (requests, responses, stream)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ...config import OUTPUT_FORMATS
from .schemas import (MAX_PROMPT_CHARS, PromptOptionsSchema, PromptResponseSchema, RequestSchema,
                      StreamEventSchema, StrictBoolean, StrictInteger, TokenUsageSchema)

OUTPUT_FORMAT = fields.String(validate=validate.OneOf(OUTPUT_FORMATS), metadata={
    "description": "`stream-json` streams the tasks' unified events as NDJSON, each with `task` (its "
                   "0-based index), and ends with one `done` event without `task` summarizing the batch."})


class ParallelTaskSchema(PromptOptionsSchema):
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


class ParallelResultSchema(PromptResponseSchema):
    index = fields.Integer(required=True, metadata={"description": "0-based position of the task."})
    name = fields.String()
    status = fields.String(required=True, validate=validate.OneOf(("completed", "failed", "cancelled")))


class ParallelResponseSchema(Schema):
    total_tasks = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    cancelled = fields.Integer(required=True, metadata={"description": "Ended or never started by fail-fast."})
    total_duration_ms = fields.Integer(required=True)
    results = fields.List(fields.Nested(ParallelResultSchema), required=True,
                          metadata={"description": "One per task, in request order."})


class ChainStepSchema(PromptOptionsSchema):
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


class ChainStepResultSchema(Schema):
    step = fields.Integer(required=True, metadata={"description": "1-based step number."})
    name = fields.String()
    backend = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("completed", "failed", "cancelled")))
    exit_code = fields.Integer(required=True)
    duration_ms = fields.Integer(required=True)
    output = fields.String()
    error = fields.String()
    token_usage = fields.Nested(TokenUsageSchema)
    model = fields.String()
    warnings = fields.List(fields.String())


class ChainResponseSchema(Schema):
    total_steps = fields.Integer(required=True)
    completed_steps = fields.Integer(required=True)
    failed_step = fields.Integer(required=True, metadata={
        "description": "1-based number of the first failed step; 0 when none failed."})
    total_duration_ms = fields.Integer(required=True)
    results = fields.List(fields.Nested(ChainStepResultSchema), required=True,
                          metadata={"description": "The steps that ran (fewer than `total_steps` after a stop)."})


class CompareRequestSchema(RequestSchema):
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROMPT_CHARS))
    backends = fields.List(fields.String(validate=validate.Length(min=1, max=64)), required=True,
                           validate=validate.Length(min=1), metadata={
                               "description": "Backends to ask, in the order of the results. An unknown or "
                                              "unavailable one yields a result with its `error`."})
    model = fields.String(validate=validate.Length(max=200), metadata={"description": "Model for every backend."})
    workdir = fields.String(validate=validate.Length(max=4096))
    sequential = StrictBoolean(metadata={"description": "One backend after the other instead of all at once."})
    dry_run = StrictBoolean()
    output_format = OUTPUT_FORMAT


class CompareResultSchema(PromptResponseSchema):
    status = fields.String(required=True, validate=validate.OneOf(("completed", "failed", "cancelled")))


class CompareResponseSchema(Schema):
    prompt = fields.String(required=True)
    backends = fields.List(fields.String(), required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    total_duration_ms = fields.Integer(required=True)
    results = fields.List(fields.Nested(CompareResultSchema), required=True,
                          metadata={"description": "One per requested backend, in request order."})


class TaskStreamEventSchema(StreamEventSchema):
    task = fields.Integer(metadata={"description": "0-based index of the task (or compared backend); absent "
                                                   "on keep-alive lines and on the final summary `done`."})


__all__ = [name for name in dir() if name.endswith("Schema") and name not in (
    "Schema", "RequestSchema", "PromptOptionsSchema", "PromptResponseSchema", "StreamEventSchema",
    "TokenUsageSchema")]
