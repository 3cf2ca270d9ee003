"""The native REST API's prompt (with session continuation and NDJSON streaming), backends and
sessions. Views parse, call the service, render."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from ...events import RunResult
from ...scratch import remove_scratch
from ...specs.prompt import plain_prompt_request
from ..http.bodies import load
from ..http.context import service
from ..http.disconnect import client_gone_token
from ..http.errors import ApiError
from . import schemas, stream

bp = Blueprint("api", __name__)

prompt_schema = schemas.PromptRequestSchema()
plain_prompt = plain_prompt_request(prompt_schema)
session_query_schema = schemas.SessionListQuerySchema()


def result_body(result: RunResult, session_id: str | None, warnings: list[str] | None = None) -> dict[str, Any]:
    body = result.to_dict(warnings)
    if session_id:
        body = {"session_id": session_id, **body}
    return body


@bp.post("/prompt")
def prompt():
    """Run one prompt on a backend, or continue a stored session.

    ---
    post:
      tags: [Custom API]
      operationId: executePrompt
      requestBody:
        required: true
        content:
          application/json:
            schema: PromptRequestSchema
      responses:
        200:
          description: The run's result (`exit_code` and `error` tell a failed run), or with
            `output_format` `stream-json` an NDJSON stream of unified events ending with `done`.
          content:
            application/json:
              schema: PromptResponseSchema
            application/x-ndjson:
              schema: StreamEventSchema
        404: {description: Unknown session_id, content: {application/problem+json: {schema: ProblemSchema}}}
        409:
          description: The session cannot be continued (error `conflict`), or another turn of it is
            running (error `session_busy`, with `Retry-After` in seconds; one turn at a time per
            session, across all workers).
          headers:
            Retry-After: {description: Seconds to wait before sending the turn again (session_busy), schema: {type: integer}}
          content: {application/problem+json: {schema: ProblemSchema}}
        422: {description: Invalid request, content: {application/problem+json: {schema: ProblemSchema}}}
        429: {description: Server busy or rate limited, content: {application/problem+json: {schema: ProblemSchema}}}
        503: {description: Backend not available, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    prepared = service().prepare(load(prompt_schema, plain=plain_prompt))
    if prepared.stream:
        run = prepared.start_stream()
        return stream.respond(run, lambda error: stream.failed(error, prepared.backend.name, prepared.session_id))
    with client_gone_token() as cancel:
        result = prepared.execute(cancel)
    return jsonify(result_body(result, prepared.session_id, prepared.notes))


@bp.get("/backends")
def backends():
    """List the backends and whether their CLI is available.

    ---
    get:
      tags: [Custom API]
      operationId: listBackends
      responses:
        200: {description: The backends, content: {application/json: {schema: BackendsResponseSchema}}}
    """
    return jsonify({"backends": service().backends()})


@bp.get("/sessions")
def list_sessions():
    """List stored sessions, newest first, with filters and pagination.

    ---
    get:
      tags: [Custom API]
      operationId: listSessions
      parameters:
        - {in: query, name: backend, schema: {type: string, enum: [claude, codex, gemini]}}
        - {in: query, name: status, schema: {type: string, enum: [active, completed, error, paused]}}
        - {in: query, name: limit, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
        - {in: query, name: offset, schema: {type: integer, minimum: 0, maximum: 9007199254740992, default: 0}}
        - {in: query, name: owner, description: "Only this tenant's sessions (an admin key sees every tenant's;
            any other key only its own)", schema: {type: string}}
      responses:
        200: {description: "A page of the caller's sessions (every tenant's for an admin key)",
              content: {application/json: {schema: SessionListResponseSchema}}}
        422: {description: Invalid query, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    query = load(session_query_schema, request.args.to_dict(), root="query")
    own = service().tenant.owner_filter
    if own is not None and query.get("owner", own) != own:  # another tenant's: nothing to see
        return jsonify({"sessions": [], "total": 0, "limit": query["limit"], "offset": query["offset"]})
    query["owner"] = query.get("owner") or own
    sessions, total = service().store.list(**query)
    return jsonify({"sessions": [s.to_dict() for s in sessions], "total": total,
                    "limit": query["limit"], "offset": query["offset"]})


def find_session(session_id: str):
    """The caller's session, or 404 for an id that names none of them (unknown, another tenant's,
    ambiguous, too short a prefix or malformed alike)."""
    try:
        return service().store.get(session_id, owner=service().tenant.owner_filter)
    except (LookupError, ValueError) as exc:
        raise ApiError(404, str(exc), errors=[{"field": "path.id", "message": str(exc)}]) from None


@bp.get("/sessions/<session_id>")
def get_session(session_id: str):
    """Get one of the caller's sessions by id or unique id prefix (at least 8 characters).

    ---
    get:
      tags: [Custom API]
      operationId: getSession
      parameters:
        - {in: path, name: session_id, required: true, schema: {type: string}}
      responses:
        200: {description: The session, content: {application/json: {schema: SessionSchema}}}
        404: {description: No such session, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    return jsonify(find_session(session_id).to_dict())


@bp.delete("/sessions/<session_id>")
def delete_session(session_id: str):
    """Delete one of the caller's sessions by id or unique id prefix (at least 8 characters).

    ---
    delete:
      tags: [Custom API]
      operationId: deleteSession
      parameters:
        - {in: path, name: session_id, required: true, schema: {type: string}}
      responses:
        200: {description: Deleted, content: {application/json: {schema: DeleteSessionResponseSchema}}}
        404: {description: No such session, content: {application/problem+json: {schema: ProblemSchema}}}
    """
    session = find_session(session_id)
    try:
        service().delete_session(session.id)
    except LookupError as exc:  # deleted by someone else meanwhile
        raise ApiError(404, str(exc)) from None
    remove_scratch(service().config.home, session.working_dir)
    return jsonify({"deleted": True, "id": session.id})
