"""The OpenAI-compatible API under /openai/v1: models and chat completions, streaming included.

Any program written for the OpenAI SDK works by pointing ``base_url`` at ``http://host:port/openai/v1``.
Every request is stateless: an ephemeral CLI run that leaves no session behind.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify

from ...config import BACKEND_NAMES
from ...events import RunResult
from .. import compat
from ..compat import Conversation, Usage
from ..http.errors import register_renderer
from ..http.context import service
from ..http.errors import ApiError
from . import stream
from .errors import render
from .schemas import OpenAIChatCompletionRequestSchema, plain_chat_completion_request

bp = Blueprint("openai", __name__, url_prefix="/openai/v1")
register_renderer(bp, render, compat.fields("messages"))

request_schema = OpenAIChatCompletionRequestSchema()
plain_request = plain_chat_completion_request(request_schema)
OWNERS = {"claude": "anthropic", "codex": "openai", "gemini": "google"}
LISTED_SINCE = int(time.time())  # `created` of the listed models: stable for the server's lifetime


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
    data = [model_entry(name, service().executable(name) is not None) for name in BACKEND_NAMES]
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
    return jsonify(model_entry(model, service().executable(model) is not None))


def conversation(messages: list[dict[str, Any]]) -> Conversation:
    system = ["\n".join(m["content"] or []) for m in messages if m["role"] in ("system", "developer")]
    turns = [(m["role"], m["content"]) for m in messages if m["role"] in ("user", "assistant")]
    return compat.fold(turns, system)


def completion(meta: dict[str, Any], chat: Conversation, result: RunResult) -> dict[str, Any]:
    return {**meta, "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": result.output, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": Usage.of(result, result.token_usage, chat).openai(), "system_fingerprint": None}


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
    data = compat.load(request_schema, plain_request)
    chat = conversation(data["messages"])
    meta = {"id": compat.new_id("chatcmpl-"), "created": int(time.time()), "model": data["model"]}
    include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
    return compat.answer(data["model"], chat, stream=bool(data.get("stream")),
                         body=lambda result: completion(meta, chat, result),
                         frames=lambda run: stream.chunks(run, meta, chat, include_usage),
                         failed=stream.failed, system_field="messages")
