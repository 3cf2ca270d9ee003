"""The Anthropic-compatible API's errors: ``{"type": "error", "error": {"type", "message"}}``, so the
Anthropic SDK raises its proper exception class with a readable message."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..http.errors import ApiError, error_response

TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
         404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
         500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error"}


def body(error: ApiError) -> dict[str, Any]:
    kind = TYPES.get(error.status, "invalid_request_error" if error.status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def render(error: ApiError) -> Response:
    return error_response(error, body(error))
