"""The Anthropic-compatible API under /anthropic/v1: views (:mod:`.views`), request and response
schemas (:mod:`.schemas`), Anthropic's error shape (:mod:`.errors`) and SSE events (:mod:`.stream`)."""

from .views import bp

__all__ = ["bp"]
