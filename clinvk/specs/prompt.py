"""A prompt request: the unified options of one run, and the schema that reads them from JSON.

Used by the native API, the orchestration specs and the command line; knows nothing about Flask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from ..config import APPROVAL_MODES, BACKEND_NAMES, OUTPUT_FORMATS, SANDBOX_MODES
from ..modelname import MODEL_PATTERN
from .fields import (MAX_EXTRA_FLAGS, model_name, MAX_PROMPT_CHARS, MAX_SYSTEM_PROMPT_CHARS, RequestSchema, StrictBoolean,
                     StrictInteger)
from .plain import PlainBody, boolean, choice, integer, text

STREAM_FORMAT = "stream-json"


@dataclass
class PromptRequest:
    """Unified prompt options, as the REST API and the command line take them.

    ``stream`` None leaves the choice to the config (``output.format``). An ephemeral run stores no
    session and leaves no CLI transcript where the CLI allows it.
    """

    prompt: str
    backend: str = ""
    model: str = ""
    workdir: str = ""
    session_id: str = ""
    ephemeral: bool = False
    stream: bool | None = None
    approval_mode: str = "default"
    sandbox_mode: str = "default"
    max_turns: int = 0
    system_prompt: str = ""
    verbose: bool = False
    dry_run: bool = False
    extra: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def stream_of(output_format: str | None) -> bool | None:
    """A wire ``output_format`` → :attr:`PromptRequest.stream` (None: ``default`` or absent)."""
    fmt = (output_format or "default").strip().lower()
    return None if fmt == "default" else fmt == STREAM_FORMAT


def _choice(values, **kwargs):
    return fields.String(validate=validate.OneOf(values), **kwargs)


class PromptOptionsSchema(RequestSchema):
    """Fields shared by a prompt, a parallel task and a chain step; loads a :class:`PromptRequest`."""

    backend = fields.String(validate=validate.Length(max=64), metadata={
        "description": f"Backend to run: one of {', '.join(BACKEND_NAMES)}. Defaults to the configured "
                       "default backend, or the session's backend when session_id is given."})
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=MAX_PROMPT_CHARS),
                           metadata={"description": "The prompt, passed to the CLI on stdin."})
    model = fields.String(validate=model_name(), metadata={"description": "Model override."})
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

    @post_load
    def _load(self, data, **kwargs):
        return to_request(data)


def to_request(data: dict) -> PromptRequest:
    """Schema-validated fields → :class:`PromptRequest`."""
    data = dict(data)
    data.pop("max_tokens", None)  # validated for the client's sake, but no CLI can honour it
    data["stream"] = stream_of(data.pop("output_format", None))
    return PromptRequest(**data)


SESSION_ID_PATTERN = r"^[0-9a-f]{1,32}$"


class PromptRequestSchema(PromptOptionsSchema):
    ephemeral = StrictBoolean(metadata={"description": "Store no session (and leave no CLI transcript)."})
    session_id = fields.String(validate=validate.Regexp(SESSION_ID_PATTERN, error="must be 1-32 lowercase hex "
                                                                                  "characters"),
                               metadata={"description": "Continue this stored session (full id or unique prefix)."})
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(max=256)),
                           values=fields.String(validate=validate.Length(max=4096)),
                           validate=validate.Length(max=64), metadata={"description": "Stored with the session."})

    @validates_schema
    def _backend_or_session(self, data, **kwargs):
        if "backend" not in data and "session_id" not in data:
            raise ValidationError("required unless session_id is given", "backend")


def _plain_prompt(loaded: dict) -> PromptRequest | None:
    """PromptRequestSchema's own checks and post_load, on what the plain path loaded."""
    if "backend" not in loaded and "session_id" not in loaded:
        return None
    return to_request(loaded)


def plain_prompt_request(schema: PromptRequestSchema) -> PlainBody:
    """The fast path of ``schema`` (:mod:`clinvk.specs.plain`): every field but ``extra`` and ``metadata``."""
    return PlainBody(schema, {
        "backend": text(max_length=64), "prompt": text(1, MAX_PROMPT_CHARS),
        "model": text(max_length=200, pattern=re.compile(MODEL_PATTERN)), "workdir": text(max_length=4096),
        "approval_mode": choice(APPROVAL_MODES), "sandbox_mode": choice(SANDBOX_MODES),
        "output_format": choice(OUTPUT_FORMATS), "max_tokens": integer(0), "max_turns": integer(0, 1000),
        "system_prompt": text(max_length=MAX_SYSTEM_PROMPT_CHARS), "verbose": boolean(), "dry_run": boolean(),
        "ephemeral": boolean(), "session_id": text(pattern=re.compile(SESSION_ID_PATTERN)),
    }, required=("prompt",), finish=_plain_prompt)
