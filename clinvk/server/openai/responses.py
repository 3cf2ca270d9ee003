"""The OpenAI Responses API under /openai/v1/responses: create (whole or streamed), retrieve, delete.

With ``store`` (the default) a response is one turn of a clinvk session, kept in the session store
under the caller's tenant: ``previous_response_id`` continues that session on the same backend through
the CLI's own resume, so only the new input is sent. ``store: false`` is an ephemeral run, as a chat
completion is.
"""

from __future__ import annotations

import time
from typing import Any

from flask import jsonify

from ...events import RunResult
from ...service import PromptRequest, ServiceError
from ...sessions.responses import ResponseNotFound, StoredResponse
from .. import compat
from ..compat import Conversation, Usage
from ..http.context import service, tenant
from ..http.errors import ApiError, service_error
from ..http.streaming import stream_response
from .responses_schemas import OpenAIResponseRequestSchema
from .responses_stream import ResponseEvents, output_text
from .views import bp

request_schema = OpenAIResponseRequestSchema()
# The service's field names as this API names them.
FIELDS = {"backend": "model", "prompt": "input", "system_prompt": "instructions",
          "session_id": "previous_response_id", "ephemeral": "store"}


def api_error(exc: ServiceError) -> ApiError:
    error = service_error(exc, lambda name: FIELDS.get(name, name))
    if exc.status >= 500:
        error.headers.update(compat.NO_RETRY)
    return error


def bad(field: str, message: str, code: str | None = None, status: int = 400) -> ApiError:
    return ApiError(status, message, code=code, errors=[{"field": field, "message": message}])


def conversation(data: dict[str, Any]) -> Conversation:
    messages = data["input"]
    system = [data.get("instructions") or ""]
    system += ["\n".join(m.texts) for m in messages if m.role in ("system", "developer")]
    turns = [(m.role, m.texts) for m in messages if m.role in ("user", "assistant")]
    try:
        return compat.fold(turns, system)
    except ApiError:
        raise bad("input", "input must contain a user message with text content") from None


def previous_turn(data: dict[str, Any]) -> StoredResponse | None:
    previous_id = data.get("previous_response_id")
    if not previous_id:
        return None
    if data.get("store") is False:
        raise bad("store", "store: false cannot continue a stored conversation (previous_response_id): "
                           "the continued turn is part of its session")
    try:
        return service().store.get_response(previous_id, tenant())
    except ResponseNotFound:
        raise bad("previous_response_id", f"Previous response with id '{previous_id}' not found.",
                  code="previous_response_not_found") from None


def backend_and_model(data: dict[str, Any], previous: StoredResponse | None) -> tuple[str, str]:
    model = data.get("model")
    if not model:
        if previous is None:
            raise bad("model", "model is required (claude, codex, gemini or a model name)")
        return previous.backend, ""
    backend, cli_model = compat.backend_for_model(model)
    if previous is not None and backend != previous.backend:
        raise bad("model", f"model {model!r} runs on {backend}, but response {previous.id} was made by "
                           f"{previous.backend}: a conversation stays on its backend")
    return backend, cli_model


class ResponseTurn:
    """One create request: the run, and the response object that describes it."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.previous = previous_turn(data)
        self.backend, cli_model = backend_and_model(data, self.previous)
        self.store = data.get("store") is not False
        self.chat = conversation(data)
        compat.check_system_prompt(self.backend, self.chat, "instructions")
        request = PromptRequest(prompt=self.chat.prompt, backend=self.backend, model=cli_model,
                                system_prompt=self.chat.system, stream=bool(data.get("stream")),
                                ephemeral=not self.store,
                                session_id=self.previous.session_id if self.previous else None)
        try:
            self.prepared = service().prepare(request)
        except ServiceError as exc:
            raise api_error(exc) from None
        self.id = compat.new_id("resp_")
        self.item_id = compat.new_id("msg_")
        self.created_at = int(time.time())
        self.model = data.get("model") or self.backend
        self.owner = tenant()  # read now: a stream ends after its request context

    def body(self, status: str, text: str | None, result: RunResult | None = None) -> dict[str, Any]:
        """The response object; ``text`` None = no output item yet."""
        output = [] if text is None else [{"id": self.item_id, "type": "message", "role": "assistant",
                                           "status": "completed", "content": [output_text(text)]}]
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "completed_at": int(time.time()) if status == "completed" else None,
                "error": None, "incomplete_details": None, "instructions": self.data.get("instructions"),
                "max_output_tokens": self.data.get("max_output_tokens"), "model": self.model,
                "output": output, "parallel_tool_calls": False,
                "previous_response_id": self.previous.id if self.previous else None,
                "reasoning": {"effort": None, "summary": None}, "store": self.store,
                "temperature": self.data.get("temperature"), "text": {"format": {"type": "text"}},
                "tool_choice": "auto", "tools": [], "top_p": self.data.get("top_p"), "truncation": "disabled",
                "usage": usage(result, self.chat) if result is not None else None,
                "user": self.data.get("user"), "metadata": self.data.get("metadata") or {}}

    def finished(self, result: RunResult, text: str) -> dict[str, Any]:
        """The completed response; stored (as a turn of its session) unless ``store`` is false."""
        body = self.body("completed", text, result)
        session_id = self.prepared.session_id
        if self.store and session_id:
            self.prepared.service.store.save_response(
                StoredResponse(self.id, self.owner, session_id, self.backend, body))
        return body

    def answer(self):
        if not self.prepared.stream:
            result = compat.execute(self.prepared)
            return jsonify(self.finished(result, result.output))
        run = compat.start_stream(self.prepared)
        events = ResponseEvents(lambda status, text: self.body(status, text), self.item_id,
                                lambda text: self.finished(run.result, text))
        return stream_response(events.frames(run), "text/event-stream", run.close, events.failed, run.cancel)


def usage(result: RunResult, chat: Conversation) -> dict[str, Any]:
    counts = Usage.of(result, result.token_usage, chat)
    return {"input_tokens": counts.input_tokens,
            "input_tokens_details": {"cached_tokens": counts.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": counts.output_tokens,
            "output_tokens_details": {"reasoning_tokens": counts.reasoning_tokens},
            "total_tokens": counts.input_tokens + counts.output_tokens}


@bp.post("/responses")
def create_response():
    """Create a model response with the backend the model names; a stored one can be continued.

    ---
    post:
      tags: [OpenAI Compatible]
      operationId: openaiCreateResponse
      requestBody:
        required: true
        content:
          application/json:
            schema: OpenAIResponseRequestSchema
      responses:
        200:
          description: >-
            The response; with `stream` an SSE stream of Responses events ending with `response.completed`
            (or `response.failed` if the run failed after the stream started).
          content:
            application/json:
              schema: OpenAIResponseSchema
            text/event-stream:
              schema: OpenAIResponseStreamEventSchema
        400: {description: Invalid request, model or previous_response_id, content: {application/json: {schema: OpenAIErrorSchema}}}
        409: {description: The conversation cannot be continued, content: {application/json: {schema: OpenAIErrorSchema}}}
        502: {description: CLI run failed (its error in the message), content: {application/json: {schema: OpenAIErrorSchema}}}
        503: {description: Backend not available, content: {application/json: {schema: OpenAIErrorSchema}}}
        504: {description: The CLI run timed out, content: {application/json: {schema: OpenAIErrorSchema}}}
    """
    return ResponseTurn(compat.load(request_schema)).answer()


def find_response(response_id: str) -> StoredResponse:
    try:
        return service().store.get_response(response_id, tenant())
    except ResponseNotFound:
        raise ApiError(404, f"Response with id '{response_id}' not found.",
                       errors=[{"field": "response_id", "message": "no such response"}]) from None


@bp.get("/responses/<response_id>")
def retrieve_response(response_id: str):
    """Get a stored response.

    ---
    get:
      tags: [OpenAI Compatible]
      operationId: openaiRetrieveResponse
      parameters:
        - {in: path, name: response_id, required: true, schema: {type: string}}
      responses:
        200: {description: The response, content: {application/json: {schema: OpenAIResponseSchema}}}
        404: {description: No such response, content: {application/json: {schema: OpenAIErrorSchema}}}
    """
    return jsonify(find_response(response_id).body)


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str):
    """Delete a stored response: it can no longer be retrieved nor continued (its session stays).

    ---
    delete:
      tags: [OpenAI Compatible]
      operationId: openaiDeleteResponse
      parameters:
        - {in: path, name: response_id, required: true, schema: {type: string}}
      responses:
        200: {description: Deleted, content: {application/json: {schema: OpenAIResponseDeletedSchema}}}
        404: {description: No such response, content: {application/json: {schema: OpenAIErrorSchema}}}
    """
    stored = find_response(response_id)
    try:
        service().store.delete_response(stored.id, tenant())
    except ResponseNotFound:  # deleted by someone else meanwhile
        raise ApiError(404, f"Response with id '{response_id}' not found.") from None
    return jsonify({"id": stored.id, "object": "response", "deleted": True})
