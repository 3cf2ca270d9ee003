"""The native API's errors: ``application/problem+json`` with ``type``/``title``/``status``/``detail``
plus ``error`` (short code) and ``message`` (human text), and ``errors`` naming each bad field, so both
documented error shapes hold. Meta routes (/health, /metrics, /docs) answer the same way."""

from __future__ import annotations

from typing import Any

from flask import Response

from ..http.errors import ApiError, error_response, title


def body(error: ApiError) -> dict[str, Any]:
    data: dict[str, Any] = {"type": "about:blank", "title": title(error.status), "status": error.status,
                            "detail": error.message, "error": error.code, "message": error.message}
    if error.errors:
        data["errors"] = error.errors
    return data


def render(error: ApiError) -> Response:
    return error_response(error, body(error), "application/problem+json")


def field(name: str) -> str:
    """A service field (``session_id``) as this API names it (``body.session_id``)."""
    return f"body.{name}"
