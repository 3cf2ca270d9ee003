"""What a model name may look like: it becomes a CLI argument, so it must not read as a flag (a leading
``-``) nor hold whitespace or control characters (a second argument, a line of its own in a log)."""

from __future__ import annotations

import re

# Also the OpenAPI ``pattern`` of every ``model`` field (ECMA and Python regex alike).
MODEL_PATTERN = r"^(?!-)[^\s\x00-\x1f\x7f-\x9f]*$"
_MODEL = re.compile(MODEL_PATTERN)
MODEL_RULE = "must not start with '-' nor contain whitespace or control characters"


def model_error(value: str) -> str | None:
    """Why ``value`` is no acceptable model name, or None."""
    return None if _MODEL.match(value) else MODEL_RULE
