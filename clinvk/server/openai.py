"""The OpenAI-compatible API under /openai/v1: models and chat completions, streaming included.

Any program written for the OpenAI SDK works by pointing ``base_url`` at ``http://host:port/openai/v1``.
Every request is stateless: an ephemeral CLI run that leaves no session behind.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator

from flask import Blueprint, jsonify

from ..config import BACKEND_NAMES
from ..service import StreamingRun
from . import compat
from .compat import Conversation, TextDeltas, Usage, sse_data
from .compat_schemas import OpenAIChatCompletionRequestSchema
from .errors import ApiError, error_body
from .streaming import stream_response

log = logging.getLogger(__name__)

bp = Blueprint("openai", __name__, url_prefix="/openai/v1")

request_schema = OpenAIChatCompletionRequestSchema()
OWNERS = {"claude": "anthropic", "codex": "openai", "gemini": "google"}
LISTED_SINCE = int(time.time())  # `created` of the listed models: stable for the server's lifetime
DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"


def model_entry(name: str, available: bool) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": LISTED_SINCE, "owned_by": OWNERS.get(name, "clinvk"),
            "available": available}


@bp.get("/models")
def list_models():
    """List the backends as models, with whether each one's CLI is available.

    ---
    get:
      tags: [OpenAI Compatible]
      operationId: openaiListModels
      responses:
        200: {description: The backends, content: {application/json: {schema: OpenAIModelListSchema}}}
    """
    service = compat.service()
    data = [model_entry(name, service.executable(name) is not None) for name in BACKEND_NAMES]
    return jsonify({"object": "list", "data": data})


@bp.get("/models/<path:model>")
def retrieve_model(model: str):
    """Get one backend as a model.

    ---
    get:
      tags: [OpenAI Compatible]
      operationId: openaiRetrieveModel
      parameters:
        - {in: path, name: model, required: true, schema: {type: string}}
      responses:
        200: {description: The backend, content: {application/json: {schema: OpenAIModelSchema}}}
        404: {description: No such model, content: {application/json: {schema: OpenAIErrorSchema}}}
    """
    if model not in BACKEND_NAMES:
        raise ApiError(404, f"model {model!r} does not exist: the models are {', '.join(BACKEND_NAMES)}",
                       code="model_not_found", errors=[{"field": "model", "message": "unknown model"}])
    return jsonify(model_entry(model, compat.service().executable(model) is not None))


def conversation(messages: list[dict[str, Any]]) -> Conversation:
    system = ["\n".join(m["content"] or []) for m in messages if m["role"] in ("system", "developer")]
    turns = [(m["role"], m["content"]) for m in messages if m["role"] in ("user", "assistant")]
    return compat.fold(turns, system)


@bp.post("/chat/completions")
def chat_completions():
    """Create a chat completion with the backend the model names, streamed as SSE with `stream: true`.

    ---
    post:
      tags: [OpenAI Compatible]
      operationId: openaiChatCompletions
      requestBody:
        required: true
        content:
          application/json:
            schema: OpenAIChatCompletionRequestSchema
      responses:
        200:
          description: >-
            The completion; with `stream` an SSE stream of `data` frames holding chunks, ending with
            `[DONE]` (preceded by an `{"error": {...}}` frame if the run failed after the stream started).
          content:
            application/json:
              schema: OpenAIChatCompletionSchema
            text/event-stream:
              schema: OpenAIChatCompletionChunkSchema
        400: {description: Invalid request or model, content: {application/json: {schema: OpenAIErrorSchema}}}
        413: {description: Request body too large, content: {application/json: {schema: OpenAIErrorSchema}}}
        429: {description: Server busy or rate limited, content: {application/json: {schema: OpenAIErrorSchema}}}
        502:
          description: CLI run failed (its error in the message)
          content: {application/json: {schema: OpenAIErrorSchema}}
        503: {description: Backend not available, content: {application/json: {schema: OpenAIErrorSchema}}}
        504: {description: The CLI run timed out, content: {application/json: {schema: OpenAIErrorSchema}}}
    """
    data = compat.load_body(request_schema)
    chat = conversation(data["messages"])
    prepared = compat.prepare(data["model"], chat, stream=bool(data.get("stream")), system_field="messages")
    meta = {"id": compat.new_id("chatcmpl-"), "created": int(time.time()), "model": data["model"]}
    if data.get("stream"):
        include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
        run = compat.start_stream(prepared)
        return stream_response(stream_chunks(run, meta, chat, include_usage), "text/event-stream", run.close)
    result = compat.execute(prepared)
    usage = Usage.of(result, result.token_usage, chat)
    return jsonify({**meta, "object": "chat.completion",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": result.output,
                                                         "refusal": None},
                                 "logprobs": None, "finish_reason": "stop"}],
                    "usage": usage.openai(), "system_fingerprint": None})


def stream_chunks(run: StreamingRun, meta: dict[str, Any], chat: Conversation,
                  include_usage: bool) -> Iterator[str]:
    """The SSE frames of a streamed completion: role, content deltas, finish, usage, [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        frame: dict[str, Any] = {**meta, "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            frame["usage"] = None
        return sse_data(frame)

    yield chunk({"role": "assistant", "content": ""})
    deltas = TextDeltas()
    try:
        for event in run.events(compat.keepalive_secs()):
            if event is None:
                yield KEEPALIVE
                continue
            text = deltas.feed(event)
            if text:
                yield chunk({"content": text})
        failure = compat.run_failure(run.result)
    except Exception:
        log.exception("streamed chat completion failed")
        failure = ApiError(500, "the run failed inside the server; the server log has the details")
    if failure:
        body, _ = error_body(failure.status, failure.code, failure.message, failure.errors, style="openai")
        yield sse_data(body)
        yield DONE
        return
    yield chunk({}, "stop")
    if include_usage:
        usage = Usage.of(run.result, run.result.token_usage, chat)
        yield sse_data({**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage.openai()})
    yield DONE
