"""Unified event and result types shared by every backend, the service and the renderers."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

# Event types of the unified NDJSON stream: the public contract of every streaming endpoint.
INIT = "init"
MESSAGE = "message"
TOOL_USE = "tool_use"
TOOL_RESULT = "tool_result"
THINKING = "thinking"
ERROR = "error"
DONE = "done"
PROGRESS = "progress"
EVENT_TYPES = (INIT, MESSAGE, TOOL_USE, TOOL_RESULT, THINKING, ERROR, DONE, PROGRESS)


@dataclass
class TokenUsage:
    """Token counts of one run (or the sum over a session's turns)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: "TokenUsage") -> "TokenUsage":
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, int]:
        # Spelled out: dataclasses.asdict deep-copies and costs 40x more on a 1000-session page.
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cached_tokens": self.cached_tokens, "reasoning_tokens": self.reasoning_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TokenUsage":
        data = data or {}
        return cls(**{f.name: int(data.get(f.name) or 0) for f in dataclasses.fields(cls)})


@dataclass
class Event:
    """One unified stream event. ``content`` holds the type-specific fields."""

    type: str
    content: dict[str, Any] = field(default_factory=dict)
    backend: str = ""
    session_id: str | None = None
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "backend": self.backend}
        if self.session_id:
            data["session_id"] = self.session_id
        data["timestamp"] = _iso(self.timestamp)
        if self.content:
            data["content"] = self.content
        return data


@dataclass
class RunResult:
    """The outcome of one CLI run, whatever the backend.

    ``exit_code`` is the process status (-1 when clinvk killed it); ``error`` is set whenever the run
    failed, with the CLI's own message where it gave one, so callers never have to read ``exit_code``
    alone to know that something went wrong.
    """

    backend: str
    exit_code: int = 0
    output: str = ""
    error: str | None = None
    backend_session_id: str | None = None
    token_usage: TokenUsage | None = None
    duration_ms: int = 0
    model: str | None = None
    timed_out: bool = False
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.error

    def to_dict(self, warnings: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
        """The JSON shape of a run, as ``POST /api/v1/prompt`` answers it (the caller adds ``session_id``)."""
        body: dict[str, Any] = {"backend": self.backend, "exit_code": self.exit_code,
                                "duration_ms": self.duration_ms, "output": self.output}
        if self.error:
            body["error"] = self.error
        if self.token_usage is not None:
            body["token_usage"] = self.token_usage.to_dict()
        if self.backend_session_id:
            body["backend_session_id"] = self.backend_session_id
        if self.model:
            body["model"] = self.model
        if warnings:
            body["warnings"] = list(warnings)
        return body


def _iso(ts: float) -> str:
    """RFC 3339 UTC timestamp with milliseconds."""
    whole = time.gmtime(ts)
    return time.strftime("%Y-%m-%dT%H:%M:%S", whole) + f".{int((ts % 1) * 1000):03d}Z"
