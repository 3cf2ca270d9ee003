"""What a backend's long-lived mode must provide so a warm process can stand in for a one-shot run.

A :class:`Protocol` is one process's conversation state (one instance per warm process). It turns
the one-shot command line into the long-lived one, speaks the handshake while the process waits, and
translates the long-lived mode's messages back into the *one-shot output lines* the backend's own
parsers already read (``parse_output``/``stream_parser``), so a pooled run produces the same
:class:`~clinvk.events.RunResult` and unified events as a cold one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Step:
    """What one message from the process leads to."""

    output: list[str] = field(default_factory=list)  # one-shot-format stdout lines for the run's consumer
    send: list[str] = field(default_factory=list)  # lines to write to the process's stdin
    done: bool = False  # the run's answer is complete (the result line)


class Protocol:
    """One warm process's side of a long-lived CLI mode. Subclasses: one per backend."""

    #: set when the handshake failed: the process must not be handed a run
    failure: str | None = None

    def opening(self) -> list[str]:
        """Lines written right after spawn (the handshake's first message)."""
        return []

    def start(self, prompt: str) -> Step:
        """Hand the run's prompt to the process (a protocol may hold it until its handshake ends)."""
        raise NotImplementedError

    def receive(self, message: dict[str, Any], line: str, running: bool) -> Step:
        """React to one line of the process's stdout (``message`` is it decoded); ``running``: a run
        owns the process."""
        raise NotImplementedError
