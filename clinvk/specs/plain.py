"""A fast path for the request bodies clients send most: plain fields only.

A marshmallow ``load`` walks a schema's every field and validator; for a chat request of three
fields that costs the server more than all its other request parsing. :class:`PlainBody` checks the
fields the common bodies hold (strings, choices, numbers, booleans, lists of such objects) directly
and builds what the schema would load. Whatever it is not sure of — a field it has no check for, an
unknown field where the schema refuses them, any value it would not accept — it leaves to the
schema, which gives the error messages. So a body it accepts loads exactly as through the schema
(tests/test_plain_bodies.py compares the two on generated bodies), and every error is the schema's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from marshmallow import RAISE, Schema

# A check of one value: (True, the loaded value), or NO (not sure: ask the schema).
Check = Callable[[Any], "tuple[bool, Any]"]
NO: tuple[bool, Any] = (False, None)
LARGEST_EXACT_FLOAT = 2 ** 53


def text(min_length: int = 0, max_length: int | None = None, pattern: re.Pattern[str] | None = None,
         allow_none: bool = False) -> Check:
    """A ``fields.String`` with Length(min_length, max_length) and Regexp(pattern) validators."""
    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        if type(value) is not str or len(value) < min_length or (max_length is not None and len(value) > max_length):
            return NO
        if pattern is not None and not pattern.match(value):
            return NO
        return True, value
    return check


def choice(values: tuple[str, ...] | list[str], allow_none: bool = False) -> Check:
    """A ``fields.String`` with a OneOf(values) validator."""
    allowed = frozenset(values)

    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        return (True, value) if type(value) is str and value in allowed else NO
    return check


def boolean(allow_none: bool = False) -> Check:
    """A ``StrictBoolean``."""
    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        return (True, value) if value is True or value is False else NO
    return check


def integer(minimum: int | None = None, maximum: int | None = None, allow_none: bool = False) -> Check:
    """A ``StrictInteger`` with a Range(minimum, maximum) validator."""
    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        if type(value) is not int or (minimum is not None and value < minimum) or \
                (maximum is not None and value > maximum):
            return NO
        return True, value
    return check


def number(allow_none: bool = False) -> Check:
    """A ``StrictNumber`` (a float field: loads as a float; no NaN, no infinity)."""
    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        if type(value) is int and -LARGEST_EXACT_FLOAT < value < LARGEST_EXACT_FLOAT:
            return True, float(value)
        if type(value) is float and math.isfinite(value):
            return True, value
        return NO
    return check


def text_content(allow_none: bool = False) -> Check:
    """A ``TextContent`` given as a plain string (loads as a list of one piece); parts go to the schema."""
    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        return (True, [value]) if type(value) is str else NO
    return check


def nested(body: "PlainBody", allow_none: bool = False) -> Check:
    """A ``fields.Nested`` object ``body`` checks."""
    def check(value: Any) -> tuple[bool, Any]:
        if value is None:
            return (True, None) if allow_none else NO
        loaded = body.load(value)
        return NO if loaded is None else (True, loaded)
    return check


def objects(body: "PlainBody", min_length: int = 0) -> Check:
    """A ``fields.List(fields.Nested(...))`` of objects ``body`` checks, with Length(min=min_length)."""
    def check(value: Any) -> tuple[bool, Any]:
        if type(value) is not list or len(value) < min_length:
            return NO
        loaded = []
        for item in value:
            one = body.load(item)
            if one is None:
                return NO
            loaded.append(one)
        return True, loaded
    return check


@dataclass
class PlainBody:
    """The fast path of one schema: ``checks`` for the fields it handles, ``required`` fields,
    ``defaults`` for fields the schema fills in when absent (``load_default``), and ``finish`` for what
    the schema does with the loaded fields (its ``post_load``, ``validates_schema``: return None to
    leave the body to the schema)."""

    schema: Schema
    checks: dict[str, Check]
    required: tuple[str, ...] = ()
    defaults: dict[str, Any] = field(default_factory=dict)
    finish: Callable[[dict[str, Any]], Any] | None = None

    def __post_init__(self) -> None:
        self.known = frozenset(self.schema.load_fields)
        self.refuse_unknown = self.schema.unknown == RAISE

    def load(self, data: Any) -> Any | None:
        """What the schema would load from ``data``, or None when the schema must decide."""
        if type(data) is not dict:
            return None
        loaded: dict[str, Any] = {}
        checks = self.checks
        for name, value in data.items():
            check = checks.get(name)
            if check is not None:
                ok, loaded[name] = check(value)
                if not ok:
                    return None
            elif name in self.known or self.refuse_unknown:
                return None  # a field this path has no check for, or one the schema refuses
        for name in self.required:
            if name not in loaded:
                return None
        for name, value in self.defaults.items():
            loaded.setdefault(name, value)
        return loaded if self.finish is None else self.finish(loaded)
