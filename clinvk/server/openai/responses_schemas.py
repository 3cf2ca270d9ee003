"""Marshmallow schemas of the OpenAI Responses API (``/openai/v1/responses``): the request as the OpenAI
SDKs send it, and the response, stream event and deletion shapes documented in /openapi.json."""

from __future__ import annotations

from dataclasses import dataclass

from marshmallow import Schema, ValidationError, fields, validate

from ..compat_schemas import Lenient, StrictBoolean, StrictInteger, StrictNumber

INPUT_ROLES = ("user", "assistant", "system", "developer")
TEXT_PARTS = ("input_text", "output_text", "text")


@dataclass
class InputMessage:
    role: str
    texts: list[str]


class ResponseInput(fields.Field):
    """``input``: a string (one user message) or a list of items.

    Message items (``{"role", "content"}``, ``type`` ``message`` or absent) are used, their content a
    string or a list of parts of which the text ones (``input_text``, ``output_text``) are used; other
    parts (images, files) and other item types (tool outputs, reasoning) are accepted and ignored: the
    CLIs take text only. Deserializes to a list of :class:`InputMessage`.
    """

    default_error_messages = {"invalid": "Must be a string or a list of input items."}

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return [InputMessage("user", [value])]
        if not isinstance(value, list):
            raise self.make_error("invalid")
        messages, errors = [], {}
        for index, item in enumerate(value):
            try:
                message = self._item(item)
            except ValidationError as exc:
                errors[index] = exc.messages
                continue
            if message is not None:
                messages.append(message)
        if errors:
            raise ValidationError(errors)
        return messages

    @staticmethod
    def _item(item) -> InputMessage | None:
        if not isinstance(item, dict):
            raise ValidationError(["Must be an object (an input item)."])
        kind = item.get("type", "message")
        if not isinstance(kind, str):
            raise ValidationError({"type": ["Not a string."]})
        if kind != "message":
            return None
        role = item.get("role")
        if role not in INPUT_ROLES:
            raise ValidationError({"role": [f"Must be one of: {', '.join(INPUT_ROLES)}."]})
        content = item.get("content")
        if isinstance(content, str):
            return InputMessage(role, [content])
        if not isinstance(content, list):
            raise ValidationError({"content": ["Must be a string or a list of content parts."]})
        texts, errors = [], {}
        for index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                errors[index] = ["Must be an object with a string `type`."]
            elif part["type"] in TEXT_PARTS:
                if not isinstance(part.get("text"), str):
                    errors[index] = {"text": ["Missing or not a string."]}
                else:
                    texts.append(part["text"])
        if errors:
            raise ValidationError({"content": errors})
        return InputMessage(role, texts)


class OpenAIResponseRequestSchema(Lenient):
    """Create a response. Fields not listed here are accepted and ignored."""

    model = fields.String(validate=validate.Length(min=1, max=200), metadata={
        "description": "As for chat completions: `claude`, `codex`, `gemini` or a model name that names one. "
                       "Optional with `previous_response_id` (the conversation's backend)."})
    input = ResponseInput(required=True, metadata={
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}],
        "description": "A string, or a list of message items; the text of their content is used."})
    instructions = fields.String(allow_none=True, metadata={"description": "The system prompt of this turn."})
    previous_response_id = fields.String(allow_none=True, validate=validate.Length(min=1, max=200), metadata={
        "description": "Continue the conversation of this stored response: the same backend resumes its own "
                       "session, so only the new `input` is sent."})
    store = StrictBoolean(allow_none=True, metadata={
        "description": "Default true: the response is a turn of a clinvk session, retrievable and continuable. "
                       "`false`: an ephemeral run that leaves nothing behind."})
    stream = StrictBoolean(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True)
    temperature = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    top_p = StrictNumber(allow_none=True, metadata={"description": "Accepted and ignored."})
    max_output_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1),
                                      metadata={"description": "Accepted; no CLI can cap its answer's length."})
    tools = fields.List(fields.Dict(), allow_none=True, metadata={"description": "Accepted and ignored."})
    parallel_tool_calls = StrictBoolean(allow_none=True)
    user = fields.String(allow_none=True)


class ResponseOutputTextSchema(Schema):
    type = fields.String(required=True, validate=validate.Equal("output_text"))
    text = fields.String(required=True)
    annotations = fields.List(fields.Dict(), required=True)
    logprobs = fields.List(fields.Dict())


class ResponseOutputMessageSchema(Schema):
    id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.Equal("message"))
    role = fields.String(required=True, validate=validate.Equal("assistant"))
    status = fields.String(required=True, validate=validate.OneOf(("in_progress", "completed", "incomplete")))
    content = fields.List(fields.Nested(ResponseOutputTextSchema), required=True)


class ResponseUsageSchema(Schema):
    input_tokens = fields.Integer(required=True)
    input_tokens_details = fields.Dict(required=True)
    output_tokens = fields.Integer(required=True)
    output_tokens_details = fields.Dict(required=True)
    total_tokens = fields.Integer(required=True)


class ResponseErrorDetailSchema(Schema):
    code = fields.String(required=True)
    message = fields.String(required=True)


class OpenAIResponseSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("response"))
    created_at = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("completed", "failed", "in_progress")))
    error = fields.Nested(ResponseErrorDetailSchema, required=True, allow_none=True)
    incomplete_details = fields.Dict(required=True, allow_none=True)
    instructions = fields.String(required=True, allow_none=True)
    model = fields.String(required=True)
    output = fields.List(fields.Nested(ResponseOutputMessageSchema), required=True)
    parallel_tool_calls = fields.Boolean(required=True)
    previous_response_id = fields.String(required=True, allow_none=True)
    store = fields.Boolean(required=True)
    tool_choice = fields.String(required=True)
    tools = fields.List(fields.Dict(), required=True)
    usage = fields.Nested(ResponseUsageSchema, required=True, allow_none=True)
    metadata = fields.Dict(required=True)


class OpenAIResponseStreamEventSchema(Schema):
    """One SSE frame (`event:` is its `type`): `response.created`, `response.in_progress`,
    `response.output_item.added`, `response.content_part.added`, `response.output_text.delta`…,
    `response.output_text.done`, `response.content_part.done`, `response.output_item.done`, then
    `response.completed` (or `response.failed` with the response's `error`)."""

    type = fields.String(required=True)
    sequence_number = fields.Integer(required=True)
    response = fields.Nested(OpenAIResponseSchema)
    delta = fields.String()


class OpenAIResponseDeletedSchema(Schema):
    id = fields.String(required=True)
    object = fields.String(required=True, validate=validate.Equal("response"))
    deleted = fields.Boolean(required=True, validate=validate.Equal(True))
