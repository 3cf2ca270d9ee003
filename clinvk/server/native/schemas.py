"""Marshmallow schemas of every request and response body of the native API and meta routes.

Request schemas reject unknown fields and wrong types (no silent coercion of "true" or "5"), so a
client's typo is a clear 4xx naming the field instead of an option quietly ignored.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate, validates_schema

from ...config import APPROVAL_MODES, BACKEND_NAMES, OUTPUT_FORMATS, SANDBOX_MODES

MAX_EXTRA_FLAGS = 32
MAX_PROMPT_CHARS = 8 * 1024 * 1024
MAX_SYSTEM_PROMPT_CHARS = 100_000  # passed in argv: the kernel caps one argument at 128 KiB


class StrictBoolean(fields.Boolean):
    """Only JSON true/false: marshmallow would otherwise accept "yes", 1, "0"..."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInteger(fields.Integer):
    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class RequestSchema(Schema):
    class Meta:
        unknown = RAISE


def _choice(values, **kwargs):
    return fields.String(validate=validate.OneOf(values), **kwargs)


class PromptOptionsSchema(RequestSchema):
    """Fields shared by a prompt, a parallel task and a chain step."""

    backend = fields.String(validate=validate.Length(max=64), metadata={
        "description": f"Backend to run: one of {', '.join(BACKEND_NAMES)}. Defaults to the configured "
                       "default backend, or the session's backend when session_id is given."})
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROMPT_CHARS),
                           metadata={"description": "The prompt, passed to the CLI on stdin."})
    model = fields.String(validate=validate.Length(max=200), metadata={"description": "Model override."})
    workdir = fields.String(validate=validate.Length(max=4096), metadata={
        "description": "Absolute working directory; checked against the allowed/blocked prefixes."})
    approval_mode = _choice(APPROVAL_MODES, metadata={"description": "Tool approval policy."})
    sandbox_mode = _choice(SANDBOX_MODES, metadata={"description": "Sandbox policy (codex)."})
    output_format = fields.String(validate=validate.OneOf(OUTPUT_FORMATS), metadata={
        "description": "`stream-json` streams NDJSON unified events; anything else returns one JSON result."})
    max_tokens = StrictInteger(validate=validate.Range(min=0), metadata={
        "description": "Accepted for compatibility; no CLI has a flag for it."})
    max_turns = StrictInteger(validate=validate.Range(min=0, max=1000), metadata={
        "description": "Maximum agentic turns (claude)."})
    system_prompt = fields.String(validate=validate.Length(max=MAX_SYSTEM_PROMPT_CHARS))
    verbose = StrictBoolean()
    dry_run = StrictBoolean(metadata={"description": "Return the command line instead of running it."})
    extra = fields.List(fields.String(validate=validate.Length(max=4096)),
                        validate=validate.Length(max=MAX_EXTRA_FLAGS),
                        metadata={"description": "Extra CLI flags, checked against a per-backend allowlist."})


class PromptRequestSchema(PromptOptionsSchema):
    ephemeral = StrictBoolean(metadata={"description": "Store no session (and leave no CLI transcript)."})
    session_id = fields.String(validate=validate.Regexp(r"^[0-9a-f]{1,32}$", error="must be 1-32 lowercase hex "
                                                                                    "characters"),
                               metadata={"description": "Continue this stored session (full id or unique prefix)."})
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(max=256)),
                           values=fields.String(validate=validate.Length(max=4096)),
                           validate=validate.Length(max=64), metadata={"description": "Stored with the session."})

    @validates_schema
    def _backend_or_session(self, data, **kwargs):
        if "backend" not in data and "session_id" not in data:
            raise ValidationError("required unless session_id is given", "backend")


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


MAX_OFFSET = 2 ** 53  # larger offsets overflow SQLite's integers (a 500 before this bound)


class SessionListQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    backend = fields.String(validate=validate.OneOf(BACKEND_NAMES))
    status = fields.String(validate=validate.OneOf(("active", "completed", "error", "paused")))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


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


class HealthResponseSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(("ok", "degraded", "unhealthy")))
    version = fields.String(required=True)
    uptime = fields.String(required=True)
    uptime_millis = fields.Integer(required=True)
    backends = fields.List(fields.Nested(HealthBackendSchema), required=True)
    session_store = fields.Nested(SessionStoreHealthSchema, required=True)


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
