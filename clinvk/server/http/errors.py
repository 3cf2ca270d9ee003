"""Errors, rendered in one place per API style.

Every failure becomes an :class:`ApiError` (status, short code, message, the fields at fault, extra
headers); each API style owns a renderer that turns it into its wire shape (``native.errors``,
``openai.errors``, ``anthropic.errors``) and registers it on its blueprint with :func:`register_renderer`.
Blueprints never see routing errors (404/405) nor requests outside them, so :func:`init_app` adds an
app-level handler that picks the renderer by path prefix.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Callable, Mapping

from flask import Blueprint, Flask, Response, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ...errors import ShuttingDown
from ...gate import GateFull
from ...lifecycle import SHUTTING_DOWN
from ...service import ServiceError
from ...specs import flatten_validation

log = logging.getLogger(__name__)

CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "request_too_large",
         415: "unsupported_media_type", 422: "validation_failed", 429: "too_many_requests",
         500: "internal_error", 502: "backend_failed", 503: "unavailable", 504: "backend_timeout"}


class ApiError(Exception):
    """Raise from a view or a request hook to answer with an error in the API style's own shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")
        self.errors = errors or []
        self.headers = headers or {}


Renderer = Callable[[ApiError], Response]


def error_response(error: ApiError, body: dict[str, Any], mimetype: str = "application/json") -> Response:
    """The response of ``error`` with ``body``, its renderer's wire shape of it."""
    response = Response(json.dumps(body) + "\n", status=error.status, mimetype=mimetype)
    response.headers.update(error.headers)
    return response


def title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def invalid(exc: ValidationError, root: str | None = "body", status: int = 422) -> ApiError:
    """The error for a request that failed its schema, naming every bad field."""
    errors = flatten_validation(exc.messages, root)
    summary = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors[:5])
    return ApiError(status, f"invalid request: {summary}", code="validation_failed", errors=errors)


def service_error(exc: ServiceError, fields: Callable[[str], str | None]) -> ApiError:
    """The service's refusal, its field named as the request names it (``fields``: service → request)."""
    field = fields(exc.field) if exc.field else None
    return ApiError(exc.status, exc.message, code=exc.code,
                    errors=[{"field": field, "message": exc.message}] if field else None,
                    headers=dict(getattr(exc, "headers", {})))


# Exceptions raised by libraries (the rate limiter, the body reader) that a plumbing module knows how
# to explain: each registers a converter with :func:`converts`.
_CONVERTERS: dict[type[BaseException], Callable[[Any], ApiError]] = {}


def converts(kind: type[BaseException]):
    """Decorator: ``fn(exc) -> ApiError`` explains exceptions of ``kind`` (and its subclasses)."""

    def register_converter(fn: Callable[[Any], ApiError]) -> Callable[[Any], ApiError]:
        _CONVERTERS[kind] = fn
        return fn

    return register_converter


@converts(GateFull)
def _gate_full(exc: GateFull) -> ApiError:
    return ApiError(429, str(exc), code="too_many_requests", headers={"Retry-After": str(exc.retry_after)})


@converts(ShuttingDown)
def _shutting_down(exc: ShuttingDown) -> ApiError:
    # Another instance (the next one of a rolling deploy) may take the request at once.
    return ApiError(503, str(exc), code=SHUTTING_DOWN, headers={"Retry-After": "1"})


@converts(HTTPException)
def _http_error(exc: HTTPException) -> ApiError:
    status = exc.code or 500
    message = {404: f"no such endpoint: {request.method} {request.path}",
               405: f"method {request.method} is not allowed on {request.path}",
               413: "request body is larger than the server accepts"}.get(status, exc.description or "")
    allow = exc.get_response().headers.get("Allow") if status == 405 else None
    return ApiError(status, message, headers={"Allow": allow} if allow else None)


def to_api_error(exc: BaseException, fields: Callable[[str], str | None]) -> ApiError:
    """Any exception a request raised, as the error to answer; an unexpected one is logged, once."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ServiceError):
        return service_error(exc, fields)
    for kind in type(exc).__mro__:
        if kind in _CONVERTERS:
            return _CONVERTERS[kind](exc)
    log.exception("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    return ApiError(500, "internal server error; the server log has the details")


def register_renderer(bp: Blueprint, render: Renderer, fields: Callable[[str], str | None]) -> None:
    """Answer every error raised while ``bp`` handles a request with ``render``.

    :param fields: maps a service field name (``prompt``) to the name this API gives it.
    """
    bp.register_error_handler(Exception, lambda exc: render(to_api_error(exc, fields)))


def init_app(app: Flask, default: Renderer, by_prefix: Mapping[str, Renderer]) -> None:
    """Errors outside every API blueprint (unknown paths, wrong methods, hooks on unmatched paths,
    meta routes): rendered in the style of the API the path belongs to."""

    def render(exc: Exception) -> Response:
        renderer = next((r for prefix, r in by_prefix.items() if request.path.startswith(prefix)), default)
        return renderer(to_api_error(exc, lambda name: name))

    app.register_error_handler(Exception, render)
