"""Reading JSON request bodies: content type, malformed JSON and shape errors become clear 4xx answers."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from ...specs.fields import field_path
from ...specs.plain import PlainBody
from .errors import ApiError, invalid


def load(schema: Schema, data: Any | None = None, *, root: str | None = "body", status: int = 422,
         plain: PlainBody | None = None) -> Any:
    """Validate ``data`` (default: the JSON body) with ``schema``.

    :param root: how errors name the document: ``body.tasks[1].backend``; ``None`` names fields
        from the top (``tasks[1].backend``), as the vendor APIs do.
    :param status: the status of a schema violation (the native API answers 422, the vendor APIs 400).
    :param plain: the schema's fast path for plain bodies (:mod:`clinvk.specs.plain`), tried first.
    :raise ApiError: naming each bad field; 400/415 for a body that is no JSON object.
    """
    if data is None:
        data = json_body(root)
    if plain is not None:
        loaded = plain.load(data)
        if loaded is not None:
            return loaded
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise invalid(exc, root, status) from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None


def json_body(root: str | None = "body") -> dict[str, Any]:
    """The request body as a JSON object, or an :class:`ApiError` saying what is wrong with it."""
    # Without a JSON type a browser sends the body cross-site with no CORS preflight ("simple request").
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(415, f"Content-Type must be application/json (got {mimetype or 'none'})",
                       errors=[{"field": "header.Content-Type", "message": "must be application/json"}])
    raw = request.get_data(cache=False)
    if not raw.strip():
        raise ApiError(400, "request body is required: send a JSON object",
                       errors=_field_error(root, "required"))
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", errors=_field_error(root, "too deep"))
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        message = getattr(exc, "msg", None) or str(exc)
        raise ApiError(400, f"malformed JSON{where}: {message}",
                       errors=_field_error(root, f"malformed JSON: {message}"))
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(data).__name__}",
                       errors=_field_error(root, "must be a JSON object"))
    if b"\\u" in raw:  # only escapes can produce a lone surrogate, which no CLI (nor SQLite) can take
        where = _lone_surrogate(data, root)
        if where is not None:
            message = "invalid Unicode (a lone surrogate escape such as \\ud800)"
            raise ApiError(400, f"{where or 'body'}: {message}",
                           errors=_field_error(where, "invalid Unicode: lone surrogate"))
    return data


def _field_error(field: str | None, message: str) -> list[dict[str, str]]:
    """The error entry naming ``field``; none when the field has no name (the vendor APIs' root)."""
    return [{"field": field, "message": message}] if field else []


def _lone_surrogate(value: Any, path: str | None) -> str | None:
    """The path of the first string (or key) holding a lone UTF-16 surrogate, or None."""
    todo: list[tuple[Any, str | None]] = [(value, path)]
    while todo:
        value, path = todo.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return path or ""
        elif isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    return path or ""
                todo.append((item, field_path(path, key)))
        elif isinstance(value, list):
            todo.extend((item, field_path(path, i)) for i, item in enumerate(value))
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")

