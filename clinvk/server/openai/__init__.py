"""The OpenAI-compatible API under /openai/v1: views (:mod:`.views`), request and response schemas
(:mod:`.schemas`), OpenAI's error shape (:mod:`.errors`) and SSE chunks (:mod:`.stream`)."""

from .views import bp

__all__ = ["bp"]
