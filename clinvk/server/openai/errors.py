"""The OpenAI-compatible API's errors: ``{"error": {"message", "type", "param", "code"}}``, so the
OpenAI SDK raises its proper exception class with a readable message."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..http.errors import ApiError, error_response

TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         429: "rate_limit_error", 500: "server_error", 502: "server_error", 503: "server_error",
         504: "server_error"}


def body(error: ApiError) -> dict[str, Any]:
    param = error.errors[0]["field"] if error.errors else None
    return {"error": {"message": error.message, "type": TYPES.get(error.status, "invalid_request_error"),
                      "param": param, "code": error.code}}


def render(error: ApiError) -> Response:
    return error_response(error, body(error))
