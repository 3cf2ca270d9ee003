"""The Anthropic-compatible API under /anthropic/v1: messages, streaming included.

The Anthropic SDK appends ``/v1/messages`` to its base URL, so ``base_url="http://host:port/anthropic"``
is the natural one; ``/anthropic/v1/v1/messages`` is served too, so snippets written with
``base_url=".../anthropic/v1"`` work as they are. Every request is stateless (an ephemeral CLI run).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from ...events import RunResult
from .. import compat
from ..compat import Conversation, Usage
from ..http.errors import register_renderer
from . import stream
from .errors import render
from .schemas import AnthropicMessagesRequestSchema, plain_messages_request

bp = Blueprint("anthropic", __name__, url_prefix="/anthropic/v1")
register_renderer(bp, render, compat.fields())

request_schema = AnthropicMessagesRequestSchema()
plain_request = plain_messages_request(request_schema)


def conversation(data: dict[str, Any]) -> Conversation:
    messages = data["messages"]
    system = ["\n".join(data.get("system") or [])]
    # Not in Anthropic's API, but clients converted from OpenAI's format send it: take it as system.
    system += ["\n".join(m["content"]) for m in messages if m["role"] == "system"]
    return compat.fold(((m["role"], m["content"]) for m in messages if m["role"] != "system"), system)


def whole(message: dict[str, Any], chat: Conversation, result: RunResult) -> dict[str, Any]:
    return {**message, "content": [{"type": "text", "text": result.output}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": Usage.of(result, result.token_usage, chat).anthropic()}


@bp.post("/messages")
def messages():
    """Create a message with the backend the model names, streamed as SSE events with `stream: true`.

    ---
    post:
      tags: [Anthropic Compatible]
      operationId: anthropicMessages
      requestBody:
        required: true
        content:
          application/json:
            schema: AnthropicMessagesRequestSchema
      responses:
        200:
          description: >-
            The message; with `stream` an SSE stream of named events (message_start,
            content_block_start, ping, content_block_delta..., content_block_stop, message_delta,
            message_stop; an `error` event if the run failed after the stream started).
          content:
            application/json:
              schema: AnthropicMessageSchema
            text/event-stream:
              schema: AnthropicStreamEventSchema
        400: {description: Invalid request or model, content: {application/json: {schema: AnthropicErrorSchema}}}
        413: {description: Request body too large, content: {application/json: {schema: AnthropicErrorSchema}}}
        429: {description: Server busy or rate limited, content: {application/json: {schema: AnthropicErrorSchema}}}
        502:
          description: CLI run failed (its error in the message)
          content: {application/json: {schema: AnthropicErrorSchema}}
        503: {description: Backend not available, content: {application/json: {schema: AnthropicErrorSchema}}}
        504: {description: The CLI run timed out, content: {application/json: {schema: AnthropicErrorSchema}}}
    """
    data = compat.load(request_schema, plain_request)
    chat = conversation(data)
    message = {"id": compat.new_id("msg_"), "type": "message", "role": "assistant", "model": data["model"]}
    return compat.answer(data["model"], chat, stream=bool(data.get("stream")),
                         body=lambda result: whole(message, chat, result),
                         frames=lambda run: stream.events(run, message, chat), failed=stream.failed)


@bp.post("/v1/messages")
def messages_alias():
    """The same as POST /anthropic/v1/messages, for SDKs given base_url ".../anthropic/v1" (as in the seed
    docs): the SDK appends its own "/v1/messages". Left out of the OpenAPI document (no YAML here)."""
    return messages()
