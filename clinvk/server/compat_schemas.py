"""Marshmallow schemas of the OpenAI- and Anthropic-compatible APIs.

Requests take what the official SDKs and common clients send: unknown fields are ignored at every
level (SDKs add new ones all the time), but a known field of the wrong type is a 400 naming it.
The response schemas document the wire formats in ``/openapi.json``.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from .schemas import StrictBoolean, StrictInteger


class Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class StrictNumber(fields.Float):
    """A JSON number: marshmallow would otherwise accept "0.5" and true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


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


class TextContent(fields.Field):
    """Message content: a string, or a list of typed parts of which the text ones are used.

    Deserializes to a list of the text pieces (a string gives one piece). Parts of other types
    (images, audio, tool results...) are accepted and ignored: the CLIs take text only.
    """

    default_error_messages = {"invalid": "Must be a string or a list of content parts."}

    def __init__(self, part_name: str, **kwargs):
        super().__init__(**kwargs)
        self.part_name = part_name

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.make_error("invalid")
        texts, errors = [], {}
        for index, part in enumerate(value):
            if not isinstance(part, dict):
                errors[index] = [f"Must be an object (a {self.part_name})."]
            elif not isinstance(part.get("type"), str):
                errors[index] = {"type": ["Missing or not a string."]}
            elif part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    errors[index] = {"text": ["Missing or not a string."]}
                else:
                    texts.append(part["text"])
        if errors:
            raise ValidationError(errors)
        return texts


_CONTENT_DOC = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}

# -- OpenAI ----------------------------------------------------------------------------------------------

OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


class OpenAIMessageSchema(Lenient):
    role = fields.String(required=True, validate=validate.OneOf(OPENAI_ROLES))
    content = TextContent("content part", allow_none=True, load_default=None, metadata={
        **_CONTENT_DOC, "description": "A string or a list of parts; `text` parts are used, others ignored. "
                                       "May be null on assistant turns."})
    name = fields.String(allow_none=True)


class OpenAIStreamOptionsSchema(Lenient):
    include_usage = StrictBoolean(allow_none=True, metadata={
        "description": "Send a last chunk with `usage` and an empty `choices` before `[DONE]`."})


class OpenAIChatCompletionRequestSchema(Lenient):
    """Chat completion request. Fields not listed here are accepted and ignored."""

    model = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={
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


# -- Anthropic -------------------------------------------------------------------------------------------

class AnthropicMessageParamSchema(Lenient):
    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant", "system")))
    content = TextContent("content block", required=True, metadata={
        **_CONTENT_DOC, "description": "A string or content blocks; `text` blocks are used, others ignored."})


class AnthropicMessagesRequestSchema(Lenient):
    """Messages request. Fields not listed here are accepted and ignored."""

    model = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={
        "description": "Same mapping as the OpenAI API: `claude`, `codex`, `gemini` or a model name."})
    max_tokens = StrictInteger(required=True, validate=validate.Range(min=1, error="Must be greater than 0."),
                               metadata={"description": "Required, > 0; no CLI can cap its answer's length."})
    messages = fields.List(fields.Nested(AnthropicMessageParamSchema), required=True,
                           validate=validate.Length(min=1))
    system = TextContent("text block", allow_none=True, metadata={
        **_CONTENT_DOC, "description": "The system prompt: a string or text blocks."})
    stream = StrictBoolean(allow_none=True)
    temperature = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    top_p = StrictNumber(allow_none=True)
    top_k = StrictInteger(allow_none=True)
    stop_sequences = fields.List(fields.String(), allow_none=True, metadata={"description": "Accepted and ignored."})
    metadata = fields.Dict(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True, metadata={"description": "Accepted and ignored."})
    tool_choice = fields.Dict(allow_none=True)
    thinking = fields.Dict(allow_none=True)


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


__all__ = [name for name in dir() if name.endswith("Schema")]
