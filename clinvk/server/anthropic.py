"""The Anthropic-compatible API under /anthropic/v1: messages, streaming included.

The Anthropic SDK appends ``/v1/messages`` to its base URL, so ``base_url="http://host:port/anthropic"``
is the natural one; ``/anthropic/v1/v1/messages`` is served too, so snippets written with
``base_url=".../anthropic/v1"`` work as they are. Every request is stateless (an ephemeral CLI run).
"""

from __future__ import annotations

import logging
from typing import Any, Iterator

from flask import Blueprint, jsonify

from ..service import StreamingRun
from . import compat
from .compat import Conversation, TextDeltas, Usage, sse_event
from .compat_schemas import AnthropicMessagesRequestSchema
from .errors import ApiError, error_body
from .streaming import stream_response

log = logging.getLogger(__name__)

bp = Blueprint("anthropic", __name__, url_prefix="/anthropic/v1")

request_schema = AnthropicMessagesRequestSchema()
PING = sse_event("ping", {"type": "ping"})


def conversation(data: dict[str, Any]) -> Conversation:
    messages = data["messages"]
    system = ["\n".join(data.get("system") or [])]
    # Not in Anthropic's API, but clients converted from OpenAI's format send it: take it as system.
    system += ["\n".join(m["content"]) for m in messages if m["role"] == "system"]
    return compat.fold(((m["role"], m["content"]) for m in messages if m["role"] != "system"), system)


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
    data = compat.load_body(request_schema)
    chat = conversation(data)
    prepared = compat.prepare(data["model"], chat, stream=bool(data.get("stream")))
    message = {"id": compat.new_id("msg_"), "type": "message", "role": "assistant", "model": data["model"]}
    if data.get("stream"):
        run = compat.start_stream(prepared)
        return stream_response(stream_events(run, message, chat), "text/event-stream", run.close)
    result = compat.execute(prepared)
    usage = Usage.of(result, result.token_usage, chat)
    return jsonify({**message, "content": [{"type": "text", "text": result.output}], "stop_reason": "end_turn",
                    "stop_sequence": None, "usage": usage.anthropic()})


@bp.post("/v1/messages")
def messages_alias():
    """The same as POST /anthropic/v1/messages, for SDKs given base_url ".../anthropic/v1" (as in the seed
    docs): the SDK appends its own "/v1/messages". Left out of the OpenAPI document (no YAML here)."""
    return messages()


def stream_events(run: StreamingRun, message: dict[str, Any], chat: Conversation) -> Iterator[str]:
    """The SSE events of a streamed message, in Anthropic's order, pings while the CLI is silent."""
    yield sse_event("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}})
    yield sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
    yield PING
    deltas = TextDeltas()
    try:
        for event in run.events(compat.keepalive_secs()):
            if event is None:
                yield PING
                continue
            text = deltas.feed(event)
            if text:
                yield sse_event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                        "delta": {"type": "text_delta", "text": text}})
        failure = compat.run_failure(run.result)
    except Exception:
        log.exception("streamed message failed")
        failure = ApiError(500, "the run failed inside the server; the server log has the details")
    if failure:
        body, _ = error_body(failure.status, failure.code, failure.message, failure.errors, style="anthropic")
        yield sse_event("error", body)
        return
    usage = Usage.of(run.result, run.result.token_usage, chat)
    yield sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse_event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": usage.anthropic()})
    yield sse_event("message_stop", {"type": "message_stop"})
