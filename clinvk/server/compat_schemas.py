"""What the OpenAI- and Anthropic-compatible request schemas share.

Requests take what the official SDKs and common clients send: unknown fields are ignored at every
level (SDKs add new ones all the time), but a known field of the wrong type is a 400 naming it.
"""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields

from ..specs import StrictBoolean, StrictInteger


class Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class StrictNumber(fields.Float):
    """A JSON number: marshmallow would otherwise accept "0.5" and true."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class TextContent(fields.Field):
    """Message content: a string, or a list of typed parts of which the text ones are used.

    Deserializes to a list of the text pieces (a string gives one piece). Parts of other types
    (images, audio, tool results...) are accepted and ignored: the CLIs take text only.
    """

    default_error_messages = {"invalid": "Must be a string or a list of content parts."}

    def __init__(self, part_name: str, **kwargs):
        super().__init__(**kwargs)
        self.part_name = part_name

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.make_error("invalid")
        texts, errors = [], {}
        for index, part in enumerate(value):
            if not isinstance(part, dict):
                errors[index] = [f"Must be an object (a {self.part_name})."]
            elif not isinstance(part.get("type"), str):
                errors[index] = {"type": ["Missing or not a string."]}
            elif part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    errors[index] = {"text": ["Missing or not a string."]}
                else:
                    texts.append(part["text"])
        if errors:
            raise ValidationError(errors)
        return texts


CONTENT_DOC = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}


__all__ = ["CONTENT_DOC", "Lenient", "StrictBoolean", "StrictInteger", "StrictNumber", "TextContent"]
