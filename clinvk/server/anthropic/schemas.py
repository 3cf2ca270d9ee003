"""Marshmallow schemas of the Anthropic-compatible API: the messages request (what the Anthropic SDK
sends), and the message, stream event and error shapes documented in /openapi.json."""

from __future__ import annotations

import re

from marshmallow import Schema, fields, validate

from ...modelname import MODEL_PATTERN
from ...specs.fields import model_name
from ...specs.plain import PlainBody, boolean, choice, integer, number, objects, text, text_content
from ..compat_schemas import CONTENT_DOC, Lenient, StrictBoolean, StrictInteger, StrictNumber, TextContent


class AnthropicMessageParamSchema(Lenient):
    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant", "system")))
    content = TextContent("content block", required=True, metadata={
        **CONTENT_DOC, "description": "A string or content blocks; `text` blocks are used, others ignored."})


class AnthropicMessagesRequestSchema(Lenient):
    """Messages request. Fields not listed here are accepted and ignored."""

    model = fields.String(required=True, validate=model_name(min_length=1), metadata={
        "description": "Same mapping as the OpenAI API: `claude`, `codex`, `gemini` or a model name."})
    max_tokens = StrictInteger(required=True, validate=validate.Range(min=1, error="Must be greater than 0."),
                               metadata={"description": "Required, > 0; no CLI can cap its answer's length."})
    messages = fields.List(fields.Nested(AnthropicMessageParamSchema), required=True,
                           validate=validate.Length(min=1))
    system = TextContent("text block", allow_none=True, metadata={
        **CONTENT_DOC, "description": "The system prompt: a string or text blocks."})
    stream = StrictBoolean(allow_none=True)
    temperature = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    top_p = StrictNumber(allow_none=True)
    top_k = StrictInteger(allow_none=True)
    stop_sequences = fields.List(fields.String(), allow_none=True, metadata={"description": "Accepted and ignored."})
    metadata = fields.Dict(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True, metadata={"description": "Accepted and ignored."})
    tool_choice = fields.Dict(allow_none=True)
    thinking = fields.Dict(allow_none=True)


def plain_messages_request(schema: AnthropicMessagesRequestSchema) -> PlainBody:
    """The fast path of ``schema`` (:mod:`clinvk.specs.plain`): messages and system as strings, and the
    scalar options; content blocks, tools and the like go through the schema."""
    message = PlainBody(AnthropicMessageParamSchema(), {"role": choice(("user", "assistant", "system")),
                                                        "content": text_content()}, required=("role", "content"))
    return PlainBody(schema, {
        "model": text(1, 200, re.compile(MODEL_PATTERN)), "max_tokens": integer(1),
        "messages": objects(message, min_length=1), "system": text_content(allow_none=True),
        "stream": boolean(allow_none=True), "temperature": number(allow_none=True), "top_p": number(allow_none=True),
        "top_k": integer(allow_none=True),
    }, required=("model", "max_tokens", "messages"))


class AnthropicTextBlockSchema(Schema):
    type = fields.String(required=True, validate=validate.Equal("text"))
    text = fields.String(required=True)


class AnthropicUsageSchema(Schema):
    input_tokens = fields.Integer(required=True)
    output_tokens = fields.Integer(required=True)
    cache_creation_input_tokens = fields.Integer(allow_none=True)
    cache_read_input_tokens = fields.Integer(allow_none=True)


class AnthropicMessageSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.Equal("message"))
    role = fields.String(required=True, validate=validate.Equal("assistant"))
    model = fields.String(required=True)
    content = fields.List(fields.Nested(AnthropicTextBlockSchema), required=True)
    stop_reason = fields.String(required=True, allow_none=True)
    stop_sequence = fields.String(required=True, allow_none=True)
    usage = fields.Nested(AnthropicUsageSchema, required=True)


class AnthropicStreamEventSchema(Schema):
    """The `data:` of one SSE event; its `event:` line repeats `type`. Order: message_start,
    content_block_start, ping, content_block_delta..., content_block_stop, message_delta,
    message_stop; pings while the CLI is silent; a failure after the stream started is an `error`
    event (AnthropicErrorSchema) that ends the stream."""

    type = fields.String(required=True, validate=validate.OneOf((
        "message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop", "error")))
    message = fields.Nested(AnthropicMessageSchema)
    index = fields.Integer()
    content_block = fields.Dict()
    delta = fields.Dict()
    usage = fields.Nested(AnthropicUsageSchema)


class AnthropicErrorDetailSchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True)


class AnthropicErrorSchema(Schema):
    type = fields.String(required=True, validate=validate.Equal("error"))
    error = fields.Nested(AnthropicErrorDetailSchema, required=True)


__all__ = [name for name in dir() if name.startswith("Anthropic") and name.endswith("Schema")]
