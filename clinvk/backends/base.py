"""What every backend adapter provides: argv/env/stdin for a run, final-output parsing, stream parsing.

Nothing outside ``clinvk/backends`` knows a CLI flag. The service hands an adapter a :class:`RunSpec`
(unified options, already validated) and gets back an :class:`Invocation`; after the run it hands the
adapter the raw output and gets back a :class:`ParsedOutput`.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..events import MESSAGE, Event, TokenUsage
from ..modelname import model_error


@dataclass
class RunSpec:
    """Unified options of one run, after config defaults were applied."""

    prompt: str
    model: str = ""
    workdir: str = ""
    approval_mode: str = "default"
    sandbox_mode: str = "default"
    max_turns: int = 0
    system_prompt: str = ""
    allowed_tools: str = ""
    extra: list[str] = field(default_factory=list)
    operator_flags: list[str] = field(default_factory=list)
    stream: bool = False
    ephemeral: bool = False
    resume_id: str | None = None
    verbose: bool = False


@dataclass
class Invocation:
    """A ready-to-spawn command. The prompt travels on stdin, never in argv."""

    argv: list[str]
    stdin_text: str
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class ParsedOutput:
    text: str = ""
    error: str | None = None
    backend_session_id: str | None = None
    token_usage: TokenUsage | None = None
    model: str | None = None


class UnsupportedOption(ValueError):
    """A request asked for something this backend cannot do safely; ``field`` names the request field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


class StreamParser(ABC):
    """Turns a CLI's stream lines into unified events and remembers what the final result needs."""

    def __init__(self) -> None:
        self.backend_session_id: str | None = None
        self.token_usage: TokenUsage | None = None
        self.error: str | None = None
        self.text_parts: list[str] = []
        self.final_text: str | None = None
        self.model: str | None = None

    def feed(self, line: str) -> list[Event]:
        line = line.strip()
        if not line:
            return []
        try:
            data = json.loads(line)
        except ValueError:
            return []  # CLI noise on stdout (warnings, banners) is not part of the answer
        if not isinstance(data, dict):
            return []
        return list(self.handle(data))

    @abstractmethod
    def handle(self, data: dict[str, Any]) -> Iterable[Event]:
        """Map one decoded JSON line to zero or more events."""

    def message(self, text: str, partial: bool) -> Event:
        self.text_parts.append(text)
        content: dict[str, Any] = {"text": text, "role": "assistant"}
        if partial:
            content["is_partial"] = True
        return Event(MESSAGE, content)

    @property
    def text(self) -> str:
        return self.final_text if self.final_text is not None else "".join(self.text_parts)


class Backend(ABC):
    """One CLI. Subclasses fill in the flag tables and parsers."""

    name: str = ""
    #: extra flags a request may pass: flag -> whether it takes a value
    allowed_extra_flags: dict[str, bool] = {}
    #: extra flags that widen the agent's powers, allowed only with backends.<name>.allow_dangerous_flags
    dangerous_extra_flags: dict[str, bool] = {}
    #: usage reported by the CLI is the thread's running total, not the turn's
    cumulative_usage: bool = False
    #: environment added to every run unless the operator's config sets the variable
    default_env: dict[str, str] = {}

    @abstractmethod
    def build(self, spec: RunSpec, executable: str, allow_dangerous: bool) -> Invocation:
        """Command line for a new run or, when ``spec.resume_id`` is set, a resumed one."""

    @abstractmethod
    def parse_output(self, stdout: str, stderr: str, exit_code: int) -> ParsedOutput:
        """Final result of a non-streaming run."""

    @abstractmethod
    def stream_parser(self) -> StreamParser:
        """A fresh parser for one streaming run."""

    def finish_stream(self, parser: StreamParser, stderr: str, exit_code: int) -> ParsedOutput:
        """Final result of a streaming run, from what the parser saw plus exit code and stderr."""
        error = parser.error
        if exit_code != 0 and not error:
            error = describe_failure(self.name, stderr, exit_code)
        return ParsedOutput(parser.text, error, parser.backend_session_id, parser.token_usage, parser.model)

    def before_run(self, env: dict[str, str]) -> None:
        """Hook to repair CLI state before a run (gemini's stale lock)."""

    def after_run(self, env: dict[str, str]) -> None:
        """Called once for every :meth:`before_run`, when the process has ended."""

    def cleanup_ephemeral(self, backend_session_id: str | None, env: dict[str, str], workdir: str) -> None:
        """Remove the transcript an ephemeral run left behind, where the CLI cannot be told not to write one."""

    def forget_workdir(self, env: dict[str, str], workdir: str) -> None:
        """Remove what the CLI keeps per working directory for a directory that is gone for good (an
        ephemeral run's scratch directory)."""

    def mode_flag(self, field_name: str, value: str, table: dict[str, str], dangerous: str, allow: bool,
                  risk: str) -> str | None:
        """The CLI's value for a unified mode (None: this CLI has no mapping for it). The ``dangerous``
        value, which ``risk`` describes, needs the operator's ``allow_dangerous_flags``."""
        if value not in table:
            return None
        if value == dangerous and not allow:
            raise UnsupportedOption(field_name, f"{field_name} {value!r} {risk}; the operator has not set "
                                                f"backends.{self.name}.allow_dangerous_flags")
        return table[value]

    def check_extra(self, extra: list[str], allow_dangerous: bool = False) -> None:
        """Reject request ``extra`` tokens that are not on this backend's allowlist; flags that widen the
        agent's powers (:attr:`dangerous_extra_flags`) need the operator's ``allow_dangerous_flags``."""
        expect_value_for: str | None = None
        for index, token in enumerate(extra):
            where = f"extra[{index}]"
            if expect_value_for is not None:
                if token.startswith("-"):
                    raise UnsupportedOption(where, f"flag {expect_value_for} needs a value, got {token!r}")
                self._check_value(expect_value_for, token, where)
                expect_value_for = None
                continue
            if not token.startswith("-"):
                raise UnsupportedOption(where, f"invalid flag {token!r}: flags must start with - or --")
            name, has_inline_value = token.split("=", 1)[0], "=" in token
            takes_value = self.allowed_extra_flags.get(name)
            if takes_value is None and name in self.dangerous_extra_flags:
                if not allow_dangerous:
                    raise UnsupportedOption(where, f"flag {name} widens what {self.name} may do (tools, directories, "
                                                   "permissions, MCP servers, settings or config); the operator has "
                                                   f"not set backends.{self.name}.allow_dangerous_flags")
                takes_value = self.dangerous_extra_flags[name]
            if takes_value is None:
                allowed = ", ".join(sorted(self.allowed_extra_flags)) or "none"
                raise UnsupportedOption(where, f"flag {name} is not allowed for {self.name} (allowed: {allowed})")
            if takes_value and not has_inline_value:
                expect_value_for = name
            elif not takes_value and has_inline_value:
                raise UnsupportedOption(where, f"flag {name} takes no value")
            elif has_inline_value:
                self._check_value(name, token.split("=", 1)[1], where)
        if expect_value_for is not None:
            raise UnsupportedOption(f"extra[{len(extra)}]", f"flag {expect_value_for} needs a value")

    def _check_value(self, flag: str, value: str, where: str) -> None:
        if flag in MODEL_FLAGS:
            problem = model_error(value)
            if problem:
                raise UnsupportedOption(where, f"{flag} value {value!r}: a model name {problem}")


# Flags whose value is a model name, checked like the request's ``model``.
MODEL_FLAGS = frozenset({"--model", "-m", "--fallback-model"})


def slash_as_text(prompt: str) -> str:
    """A prompt starting with "/" is a command to claude -p and headless gemini (project commands can
    run shell code); one leading space makes it plain text for both, as measured with the pinned CLIs
    (tests/fixtures/prompt-commands/)."""
    return " " + prompt if prompt.startswith("/") else prompt


STDERR_NOISE = (
    "Warning: 256-color support",
    "Ripgrep is not available",
    "[STARTUP]",
    "YOLO mode is enabled",
    "Reading additional input from stdin",
    "WARNING: proceeding, even though",
    "Basic terminal detected",
)


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def describe_failure(backend: str, stderr: str, exit_code: int) -> str:
    """A one-paragraph error message from a failed CLI's stderr, without the known noise lines."""
    lines = [line.rstrip() for line in ANSI_ESCAPE.sub("", stderr).splitlines()]
    useful = [line for line in lines if line.strip() and not line.startswith(STDERR_NOISE)]
    # Rust/Node backtraces follow the message; keep what comes before them.
    for marker in ("Stack backtrace:", "    at "):
        for i, line in enumerate(useful):
            if line.startswith(marker):
                useful = useful[:i]
                break
    message = "\n".join(useful[-5:]).strip()
    if exit_code < 0:
        status = f"was killed by signal {-exit_code}"
    else:
        status = f"exited with status {exit_code}"
    return f"{backend} {status}: {message}" if message else f"{backend} {status}"


def usage_from(data: dict[str, Any] | None, *, input_key: str, output_key: str, cached_key: str = "",
               reasoning_key: str = "") -> TokenUsage | None:
    if not isinstance(data, dict):
        return None

    def number(key: str) -> int:
        value = data.get(key) if key else 0
        return int(value) if isinstance(value, (int, float)) else 0

    return TokenUsage(number(input_key), number(output_key), number(cached_key), number(reasoning_key))
