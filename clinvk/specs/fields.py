"""Strict marshmallow building blocks shared by every request schema, and the flattening of their errors.

Strict types: a client's ``"true"`` or ``"5"`` is a clear error naming the field, never an option
quietly coerced.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from ..modelname import MODEL_PATTERN, MODEL_RULE

MAX_EXTRA_FLAGS = 32
MAX_PROMPT_CHARS = 8 * 1024 * 1024
MAX_SYSTEM_PROMPT_CHARS = 100_000  # passed in argv: the kernel caps one argument at 128 KiB


def model_name(min_length: int = 0) -> list[validate.Validator]:
    """The validators of a ``model`` field: at most 200 characters, nothing that reads as a flag
    (documented as the field's ``pattern``)."""
    return [validate.Length(min=min_length or None, max=200),
            validate.Regexp(MODEL_PATTERN, error=f"model {MODEL_RULE}")]


class StrictBoolean(fields.Boolean):
    """Only JSON true/false: marshmallow would otherwise accept "yes", 1, "0"..."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInteger(fields.Integer):
    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class RequestSchema(Schema):
    class Meta:
        unknown = RAISE


def field_path(root: str | None, key: str | int) -> str:
    """``body`` + ``tasks`` → ``body.tasks``; ``body.tasks`` + 1 → ``body.tasks[1]``; no root → ``tasks``."""
    if isinstance(key, int):
        return f"{root or ''}[{key}]"
    return f"{root}.{key}" if root else key


def flatten_validation(messages: Any, prefix: str | None = "body") -> list[dict[str, str]]:
    """marshmallow's nested error dict → [{"field": "body.tasks[1].backend", "message": ...}].

    ``prefix`` names the root (``body``, ``query``); without one, fields are named as the vendor
    APIs do (``messages[0].role``) and an error about the whole document names no field.
    """
    out: list[dict[str, str]] = []
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key == "_schema":
                out += flatten_validation(value, prefix)
            else:
                out += flatten_validation(value, field_path(prefix, key))
    elif isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages):
        out.append({"field": prefix or "", "message": " ".join(_friendly(m) for m in messages)})
    elif isinstance(messages, list):
        for item in messages:
            out += flatten_validation(item, prefix)
    else:
        out.append({"field": prefix or "", "message": str(messages)})
    return out


def _friendly(message: str) -> str:
    return "unknown field" if message == "Unknown field." else message
