"""Marshmallow schemas of every request and response body of the native API and meta routes.

Request schemas reject unknown fields and wrong types (no silent coercion of "true" or "5"), so a
client's typo is a clear 4xx naming the field instead of an option quietly ignored.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

from ...config import BACKEND_NAMES, TENANT_NAME_PATTERN
# The request schemas shared with the command line live in clinvk.specs; listed here for the OpenAPI spec.
from ...specs import (MAX_PROMPT_CHARS, MAX_SYSTEM_PROMPT_CHARS, PromptOptionsSchema, PromptRequestSchema,  # noqa: F401
                     RequestSchema, StrictBoolean, StrictInteger)


class TokenUsageSchema(Schema):
    input_tokens = fields.Integer()
    output_tokens = fields.Integer()
    cached_tokens = fields.Integer()
    reasoning_tokens = fields.Integer()


class PromptResponseSchema(Schema):
    session_id = fields.String(metadata={"description": "Present when the run was stored as a session."})
    backend = fields.String(required=True)
    exit_code = fields.Integer(required=True, metadata={"description": "CLI exit status; -1 if clinvk ended it."})
    duration_ms = fields.Integer(required=True)
    output = fields.String()
    error = fields.String(metadata={"description": "Why the run failed, in the CLI's words where it gave any."})
    token_usage = fields.Nested(TokenUsageSchema)
    backend_session_id = fields.String()
    model = fields.String()
    warnings = fields.List(fields.String(), metadata={"description": "Options the backend could not apply."})


class StreamEventSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(
        ("init", "message", "tool_use", "tool_result", "thinking", "error", "done", "progress", "keepalive")))
    backend = fields.String()
    session_id = fields.String()
    timestamp = fields.String()
    content = fields.Dict()


class BackendSchema(Schema):
    name = fields.String(required=True)
    available = fields.Boolean(required=True)
    enabled = fields.Boolean()
    command = fields.String()
    model = fields.String()


class BackendsResponseSchema(Schema):
    backends = fields.List(fields.Nested(BackendSchema), required=True)


class SessionSchema(Schema):
    id = fields.String(required=True)
    backend = fields.String(required=True)
    created_at = fields.String(required=True)
    last_used = fields.String(required=True)
    working_dir = fields.String()
    backend_session_id = fields.String(allow_none=True)
    model = fields.String(allow_none=True)
    initial_prompt = fields.String()
    title = fields.String()
    status = fields.String()
    turn_count = fields.Integer()
    token_usage = fields.Nested(TokenUsageSchema)
    tags = fields.List(fields.String())
    metadata = fields.Dict(keys=fields.String(), values=fields.String())
    error_message = fields.String(allow_none=True)
    owner = fields.String(metadata={"description": "The tenant (API key owner) the session belongs to."})


MAX_OFFSET = 2 ** 53  # larger offsets overflow SQLite's integers (a 500 before this bound)


class SessionListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    backend = fields.String(validate=validate.OneOf(BACKEND_NAMES))
    status = fields.String(validate=validate.OneOf(("active", "completed", "error", "paused")))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))
    owner = fields.String(validate=validate.Regexp(rf"^{TENANT_NAME_PATTERN}\Z"), metadata={
        "description": "Only this tenant's sessions. Other tenants' sessions are listed for admin keys only."})


class SessionListResponseSchema(Schema):
    sessions = fields.List(fields.Nested(SessionSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class DeleteSessionResponseSchema(Schema):
    deleted = fields.Boolean(required=True)
    id = fields.String(required=True)


class HealthBackendSchema(Schema):
    name = fields.String(required=True)
    available = fields.Boolean(required=True)


class SessionStoreHealthSchema(Schema):
    available = fields.Boolean(required=True)
    session_count = fields.Integer()
    error = fields.String()


class SandboxHealthSchema(Schema):
    mode = fields.String(required=True, validate=validate.OneOf(("bwrap", "off")),
                         metadata={"description": "`bwrap`: every CLI run is sandboxed with bubblewrap."})
    reason = fields.String(required=True)


class HealthResponseSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("ok", "degraded", "unhealthy")))
    version = fields.String(required=True)
    uptime = fields.String(required=True)
    uptime_millis = fields.Integer(required=True)
    backends = fields.List(fields.Nested(HealthBackendSchema), required=True)
    session_store = fields.Nested(SessionStoreHealthSchema, required=True)
    sandbox = fields.Nested(SandboxHealthSchema, required=True)


class ProblemFieldSchema(Schema):
    field = fields.String()
    message = fields.String()


class ProblemSchema(Schema):
    """RFC 7807 problem details, plus `error`/`message` so the seed docs' error shape holds too."""

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    error = fields.String(required=True)
    message = fields.String(required=True)
    errors = fields.List(fields.Nested(ProblemFieldSchema))


__all__ = [name for name in dir() if name.endswith("Schema")] + ["EXCLUDE"]
