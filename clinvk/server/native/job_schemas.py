"""Marshmallow schemas of the job endpoints (``/api/v1/jobs``), for validation and /openapi.json.

A job's request is the body of the synchronous endpoint of its ``kind`` plus ``kind``; the ``Job*Request``
schemas below only document that (the body is loaded by the kind's own schema once ``kind`` is taken off).
"""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from ...jobs.model import KINDS, STATUSES
from ...specs import ChainRequestSchema, CompareRequestSchema, ParallelRequestSchema, PromptRequestSchema
from .schemas import MAX_OFFSET

REQUEST_SCHEMAS = {"prompt": PromptRequestSchema(), "parallel": ParallelRequestSchema(),
                   "chain": ChainRequestSchema(), "compare": CompareRequestSchema()}


def _kind(name: str, required: bool = True) -> fields.String:
    return fields.String(required=required, validate=validate.Equal(name), metadata={
        "description": f"`{name}`" + ("" if required else " (the default)")})


class JobPromptRequestSchema(PromptRequestSchema):
    """A prompt job: the body of `POST /api/v1/prompt` (its `output_format` does not matter: a job
    always keeps the unified events)."""

    kind = _kind("prompt", required=False)


class JobParallelRequestSchema(ParallelRequestSchema):
    """The body of `POST /api/v1/parallel`."""

    kind = _kind("parallel")


class JobChainRequestSchema(ChainRequestSchema):
    """The body of `POST /api/v1/chain`."""

    kind = _kind("chain")


class JobCompareRequestSchema(CompareRequestSchema):
    """The body of `POST /api/v1/compare`."""

    kind = _kind("compare")


class JobSchema(Schema):
    id = fields.String(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    status = fields.String(required=True, validate=validate.OneOf(STATUSES), metadata={
        "description": "`queued` (waiting for a run slot), `running`, then `completed`, `failed`, "
                       "`cancelled` or `interrupted` (the server running it went away)."})
    created_at = fields.String(required=True)
    started_at = fields.String(required=True, allow_none=True)
    finished_at = fields.String(required=True, allow_none=True)
    duration_ms = fields.Integer(required=True, allow_none=True)
    session_id = fields.String(required=True, allow_none=True, metadata={
        "description": "A prompt job's session (continue it with `POST /api/v1/prompt`)."})
    events = fields.Integer(required=True, metadata={"description": "How many events the job has stored."})
    error = fields.String(required=True, allow_none=True)
    result = fields.Dict(required=True, allow_none=True, metadata={
        "description": "Once finished: the answer of the kind's synchronous endpoint (PromptResponseSchema, "
                       "ParallelResponseSchema, ChainResponseSchema or CompareResponseSchema)."})
    request = fields.Dict(metadata={"description": "The submitted body (`GET /api/v1/jobs/{id}` only)."})


class JobListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    status = fields.String(validate=validate.OneOf(STATUSES))
    kind = fields.String(validate=validate.OneOf(KINDS))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


class JobListResponseSchema(Schema):
    jobs = fields.List(fields.Nested(JobSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class JobEventsQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    after = fields.Integer(validate=validate.Range(min=0, max=MAX_OFFSET), metadata={
        "description": "Only events after this position (`seq`); default 0, or `Last-Event-ID`."})
    follow = fields.Boolean(load_default=True, truthy={"true", "1"}, falsy={"false", "0"}, metadata={
        "description": "Keep the stream open until the job ends (default), or end after the stored events."})


class JobEventSchema(Schema):
    """One NDJSON line: a unified event (StreamEventSchema; a parallel/compare task's carries `task`)
    with its position `seq`. In SSE the position is the frame's `id:` and `data:` holds the event."""

    seq = fields.Integer(required=True)
    type = fields.String(required=True)
    backend = fields.String()
    task = fields.Integer()
    session_id = fields.String()
    timestamp = fields.String()
    content = fields.Dict()


class DeleteJobResponseSchema(Schema):
    deleted = fields.Boolean(required=True, validate=validate.Equal(True))
    id = fields.String(required=True)
