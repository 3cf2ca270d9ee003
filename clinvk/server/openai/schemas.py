"""Marshmallow schemas of the OpenAI-compatible API: the chat completion request (what the OpenAI SDK
and common clients send), and the response, chunk, model and error shapes documented in /openapi.json."""

from __future__ import annotations

import re

from marshmallow import Schema, fields, validate

from ...modelname import MODEL_PATTERN
from ...specs.fields import model_name
from ...specs.plain import PlainBody, boolean, choice, integer, nested, number, objects, text, text_content
from ..compat_schemas import CONTENT_DOC, Lenient, StrictBoolean, StrictInteger, StrictNumber, TextContent


class StringOrStrings(fields.Field):
    """A string or a list of strings (OpenAI ``stop``)."""

    default_error_messages = {"invalid": "Must be a string or a list of strings."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise self.make_error("invalid")


class StringOrObject(fields.Field):
    """A string or a JSON object (OpenAI ``tool_choice``)."""

    default_error_messages = {"invalid": "Must be a string or an object."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, (str, dict)):
            return value
        raise self.make_error("invalid")


OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class OpenAIMessageSchema(Lenient):
    role = fields.String(required=True, validate=validate.OneOf(OPENAI_ROLES))
    content = TextContent("content part", allow_none=True, load_default=None, metadata={
        **CONTENT_DOC, "description": "A string or a list of parts; `text` parts are used, others ignored. "
                                       "May be null on assistant turns."})
    name = fields.String(allow_none=True)


class OpenAIStreamOptionsSchema(Lenient):
    include_usage = StrictBoolean(allow_none=True, metadata={
        "description": "Send a last chunk with `usage` and an empty `choices` before `[DONE]`."})


class OpenAIChatCompletionRequestSchema(Lenient):
    """Chat completion request. Fields not listed here are accepted and ignored."""

    model = fields.String(required=True, validate=model_name(min_length=1), metadata={
        "description": "`claude`, `codex` or `gemini` (run with that backend's configured model), or a model "
                       "name passed to the CLI: containing `claude`/`sonnet`/`opus`/`haiku` → claude; "
                       "`gpt`, `o<digit>` or `codex` → codex; `gemini` → gemini."})
    messages = fields.List(fields.Nested(OpenAIMessageSchema), required=True, validate=validate.Length(min=1),
                           metadata={"description": "system/developer messages become the system prompt; "
                                                    "user and assistant turns are folded into one prompt."})
    stream = StrictBoolean(allow_none=True)
    stream_options = fields.Nested(OpenAIStreamOptionsSchema, allow_none=True)
    max_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1),
                               metadata={"description": "Accepted; no CLI can cap its answer's length."})
    max_completion_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    temperature = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    top_p = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    presence_penalty = StrictNumber(allow_none=True)
    frequency_penalty = StrictNumber(allow_none=True)
    n = StrictInteger(allow_none=True, validate=validate.Range(min=1),
                      metadata={"description": "Accepted; one choice is returned."})
    stop = StringOrStrings(allow_none=True, metadata={
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": "Accepted and ignored."})
    seed = StrictInteger(allow_none=True)
    user = fields.String(allow_none=True)
    logprobs = StrictBoolean(allow_none=True)
    top_logprobs = StrictInteger(allow_none=True)
    logit_bias = fields.Dict(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    response_format = fields.Dict(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True, metadata={"description": "Accepted and ignored."})
    tool_choice = StringOrObject(allow_none=True, metadata={"oneOf": [{"type": "string"}, {"type": "object"}]})
    parallel_tool_calls = StrictBoolean(allow_none=True)
    store = StrictBoolean(allow_none=True)
    reasoning_effort = fields.String(allow_none=True)


def plain_chat_completion_request(schema: OpenAIChatCompletionRequestSchema) -> PlainBody:
    """The fast path of ``schema`` (:mod:`clinvk.specs.plain`): messages with string content, and the
    scalar options; tools, stop, response_format and the like go through the schema."""
    message = PlainBody(OpenAIMessageSchema(), {"role": choice(OPENAI_ROLES), "content": text_content(allow_none=True),
                                                "name": text(allow_none=True)},
                        required=("role",), defaults={"content": None})
    stream_options = PlainBody(OpenAIStreamOptionsSchema(), {"include_usage": boolean(allow_none=True)})
    optional_number, optional_count = number(allow_none=True), integer(1, allow_none=True)
    return PlainBody(schema, {
        "model": text(1, 200, re.compile(MODEL_PATTERN)), "messages": objects(message, min_length=1),
        "stream": boolean(allow_none=True), "stream_options": nested(stream_options, allow_none=True),
        "max_tokens": optional_count, "max_completion_tokens": optional_count, "n": optional_count,
        "temperature": optional_number, "top_p": optional_number, "presence_penalty": optional_number,
        "frequency_penalty": optional_number, "seed": integer(allow_none=True), "top_logprobs": integer(allow_none=True),
        "user": text(allow_none=True), "reasoning_effort": text(allow_none=True), "logprobs": boolean(allow_none=True),
        "parallel_tool_calls": boolean(allow_none=True), "store": boolean(allow_none=True),
    }, required=("model", "messages"))


class OpenAIModelSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("model"))
    created = fields.Integer(required=True)
    owned_by = fields.String(required=True)
    available = fields.Boolean(required=True, metadata={"description": "The backend's CLI was found (clinvk "
                                                                       "extension)."})


class OpenAIModelListSchema(Schema):
    object = fields.String(required=True, validate=validate.Equal("list"))
    data = fields.List(fields.Nested(OpenAIModelSchema), required=True)


class OpenAIPromptTokensDetailsSchema(Schema):
    cached_tokens = fields.Integer()


class OpenAICompletionTokensDetailsSchema(Schema):
    reasoning_tokens = fields.Integer()


class OpenAIUsageSchema(Schema):
    prompt_tokens = fields.Integer(required=True)
    completion_tokens = fields.Integer(required=True)
    total_tokens = fields.Integer(required=True)
    prompt_tokens_details = fields.Nested(OpenAIPromptTokensDetailsSchema)
    completion_tokens_details = fields.Nested(OpenAICompletionTokensDetailsSchema)


class OpenAIAssistantMessageSchema(Schema):
    role = fields.String(required=True, validate=validate.Equal("assistant"))
    content = fields.String(required=True, allow_none=True)
    refusal = fields.String(allow_none=True)


class OpenAIChoiceSchema(Schema):
    index = fields.Integer(required=True)
    message = fields.Nested(OpenAIAssistantMessageSchema, required=True)
    logprobs = fields.Dict(allow_none=True)
    finish_reason = fields.String(required=True)


class OpenAIChatCompletionSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("chat.completion"))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(OpenAIChoiceSchema), required=True)
    usage = fields.Nested(OpenAIUsageSchema, required=True)
    system_fingerprint = fields.String(allow_none=True)


class OpenAIDeltaSchema(Schema):
    role = fields.String()
    content = fields.String(allow_none=True)


class OpenAIChunkChoiceSchema(Schema):
    index = fields.Integer(required=True)
    delta = fields.Nested(OpenAIDeltaSchema, required=True)
    logprobs = fields.Dict(allow_none=True)
    finish_reason = fields.String(required=True, allow_none=True)


class OpenAIChatCompletionChunkSchema(Schema):
    """One `data:` frame of a stream. The stream ends with `data: [DONE]`; a failure after the stream
    started is a frame `{"error": {...}}` (OpenAIErrorSchema) followed by `[DONE]`."""

    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("chat.completion.chunk"))
    created = fields.Integer(required=True)
    model = fields.String(required=True)
    choices = fields.List(fields.Nested(OpenAIChunkChoiceSchema), required=True)
    usage = fields.Nested(OpenAIUsageSchema, allow_none=True)


class OpenAIErrorDetailSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(allow_none=True)
    code = fields.String(allow_none=True)


class OpenAIErrorSchema(Schema):
    error = fields.Nested(OpenAIErrorDetailSchema, required=True)


__all__ = [name for name in dir() if name.startswith("OpenAI") and name.endswith("Schema")]
