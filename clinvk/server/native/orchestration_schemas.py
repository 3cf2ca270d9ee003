"""Marshmallow schemas of the orchestration endpoints' responses and stream events (parallel, chain, compare)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

# The request schemas are shared with the command line (clinvk.specs); listed here for the OpenAPI spec.
from ...specs import (ChainRequestSchema, ChainStepSchema, CompareRequestSchema,  # noqa: F401
                     ParallelRequestSchema, ParallelTaskSchema)
from .schemas import PromptResponseSchema, StreamEventSchema, TokenUsageSchema


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
