"""The OpenAI-compatible API under /openai/v1: views (:mod:`.views`), request and response schemas
(:mod:`.schemas`), OpenAI's error shape (:mod:`.errors`) and SSE chunks (:mod:`.stream`); the Responses
API (:mod:`.responses`, :mod:`.responses_schemas`, :mod:`.responses_stream`)."""

from . import responses  # noqa: F401 (its routes join the blueprint)
from .views import bp

__all__ = ["bp"]
