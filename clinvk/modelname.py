"""What a model name may look like: it becomes a CLI argument, so it must not read as a flag (a leading
``-``) nor hold whitespace or control characters (a second argument, a line of its own in a log)."""

from __future__ import annotations

import re

# Also the OpenAPI ``pattern`` of every ``model`` field (ECMA and Python regex alike). ``(?!\n)``: Python's
# ``$`` also matches before a final newline, ECMA's does not; the lookahead makes both refuse "name\n".
MODEL_PATTERN = r"^(?!-)[^\s\x00-\x1f\x7f-\x9f]*$(?!\n)"
_MODEL = re.compile(MODEL_PATTERN)
MODEL_RULE = "must not start with '-' nor contain whitespace or control characters"


def model_error(value: str) -> str | None:
    """Why ``value`` is no acceptable model name, or None."""
    return None if _MODEL.match(value) else MODEL_RULE
