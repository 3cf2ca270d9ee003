"""Reading JSON request bodies: content type, malformed JSON and shape errors become clear 4xx answers."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from .errors import ApiError, validation_error


def json_body() -> dict[str, Any]:
    """The request body as a JSON object, or an :class:`ApiError` saying what is wrong with it."""
    mimetype = request.mimetype or ""
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json (got {mimetype})",
                       errors=[{"field": "header.Content-Type", "message": "must be application/json"}])
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise ApiError(400, "request body is required: send a JSON object",
                       errors=[{"field": "body", "message": "required"}])
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", errors=[{"field": "body", "message": "too deep"}])
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        message = getattr(exc, "msg", None) or str(exc)
        raise ApiError(400, f"malformed JSON{where}: {message}",
                       errors=[{"field": "body", "message": f"malformed JSON: {message}"}])
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(data).__name__}",
                       errors=[{"field": "body", "message": "must be a JSON object"}])
    if b"\\u" in raw:  # only escapes can produce a lone surrogate, which no CLI (nor SQLite) can take
        where = _lone_surrogate(data, "body")
        if where:
            raise ApiError(400, f"{where}: invalid Unicode (a lone surrogate escape such as \\ud800)",
                           errors=[{"field": where, "message": "invalid Unicode: lone surrogate"}])
    return data


def _lone_surrogate(value: Any, path: str) -> str | None:
    """The path of the first string (or key) holding a lone UTF-16 surrogate, or None."""
    todo = [(value, path)]
    while todo:
        value, path = todo.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return path
                todo.append((item, f"{path}.{key}"))
        elif isinstance(value, list):
            todo.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def load(schema: Schema, data: Any | None = None) -> dict[str, Any]:
    """Validate ``data`` (default: the JSON body) with ``schema``; errors name each field."""
    if data is None:
        data = json_body()
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
