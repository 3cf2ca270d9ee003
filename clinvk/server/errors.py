"""Error responses, rendered in one place in the shape of the API the request was made to.

- ``/api/v1`` and meta routes: ``application/problem+json`` with ``type``/``title``/``status``/``detail``
  plus ``error`` (short code) and ``message`` (human text), and ``errors`` naming each bad field.
- ``/openai/v1``: ``{"error": {"message", "type", "param", "code"}}``.
- ``/anthropic/v1``: ``{"type": "error", "error": {"type", "message"}}``.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from ..gate import GateFull
from ..specs import flatten_validation
from ..service import ServiceError

log = logging.getLogger(__name__)

CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 408: "request_timeout", 409: "conflict", 413: "request_too_large",
         415: "unsupported_media_type", 422: "validation_failed", 429: "too_many_requests",
         500: "internal_error", 502: "backend_failed", 503: "unavailable", 504: "backend_timeout"}
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error", 500: "server_error", 502: "server_error", 503: "server_error",
                504: "server_error"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                   500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error"}


class ApiError(Exception):
    """Raise from a view to answer with an error in the surface's own shape."""

    def __init__(self, status: int, message: str, *, code: str | None = None,
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or CODES.get(status, "error")
        self.errors = errors or []
        self.headers = headers or {}


def surface(path: str | None = None) -> str:
    path = request.path if path is None else path
    if path.startswith("/openai/"):
        return "openai"
    if path.startswith("/anthropic/"):
        return "anthropic"
    return "native"


def error_body(status: int, code: str, message: str, errors: list[dict[str, str]] | None = None,
               style: str | None = None) -> tuple[dict[str, Any], str]:
    """The JSON body and content type of an error for the current request's API style."""
    style = style or surface()
    if style == "openai":
        param = errors[0]["field"] if errors else None
        kind = OPENAI_TYPES.get(status, "invalid_request_error")
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}, "application/json"
    if style == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}, "application/json"
    body: dict[str, Any] = {"type": "about:blank", "title": _title(status), "status": status, "detail": message,
                            "error": code, "message": message}
    if errors:
        body["errors"] = errors
    return body, "application/problem+json"


def error_response(status: int, message: str, *, code: str | None = None,
                   errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None) -> Response:
    body, mimetype = error_body(status, code or CODES.get(status, "error"), message, errors)
    response = Response(json.dumps(body) + "\n", status=status, mimetype=mimetype)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def validation_error(exc: ValidationError, prefix: str = "body") -> ApiError:
    errors = flatten_validation(exc.messages, prefix)
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
    status = 400 if surface() != "native" else 422
    return ApiError(status, f"invalid request: {summary}", code="validation_failed", errors=errors)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.message, code=exc.code, errors=exc.errors, headers=exc.headers)

    @app.errorhandler(ValidationError)
    def _validation(exc: ValidationError):
        return _api_error(validation_error(exc))

    @app.errorhandler(ServiceError)
    def _service_error(exc: ServiceError):
        errors = [{"field": f"body.{exc.field}", "message": exc.message}] if exc.field else None
        return error_response(exc.status, exc.message, code=exc.code, errors=errors)

    @app.errorhandler(GateFull)
    def _gate_full(exc: GateFull):
        return error_response(429, str(exc), code="too_many_requests",
                              headers={"Retry-After": str(exc.retry_after)})

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = {404: f"no such endpoint: {request.method} {request.path}",
                   405: f"method {request.method} is not allowed on {request.path}",
                   413: "request body is larger than the server accepts"}.get(status, exc.description or "")
        response = error_response(status, message)
        if status == 405 and exc.get_response().headers.get("Allow"):
            response.headers["Allow"] = exc.get_response().headers["Allow"]
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal server error; the server log has the details")
