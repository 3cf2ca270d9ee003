"""Backend adapters, one module per CLI, and the registry the service looks them up in."""

from __future__ import annotations

from .base import Backend, Invocation, ParsedOutput, RunSpec, StreamParser, UnsupportedOption
from .claude import ClaudeBackend
from .codex import CodexBackend
from .gemini import GeminiBackend

BACKENDS: dict[str, Backend] = {b.name: b for b in (ClaudeBackend(), CodexBackend(), GeminiBackend())}

__all__ = ["BACKENDS", "Backend", "Invocation", "ParsedOutput", "RunSpec", "StreamParser", "UnsupportedOption"]
