"""Claude Code (`claude -p`): JSON result object, or stream-json with token-level partial messages."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..events import ERROR, INIT, PROGRESS, THINKING, TOOL_RESULT, TOOL_USE, Event
from .base import Backend, Invocation, ParsedOutput, RunSpec, StreamParser, \
    describe_failure, slash_as_text, usage_from

PERMISSION_MODES = {"auto": "acceptEdits", "always": "default", "none": "bypassPermissions"}


def _usage(data: dict[str, Any]):
    return usage_from(data.get("usage"), input_key="input_tokens", output_key="output_tokens",
                      cached_key="cache_read_input_tokens")


def _first_model(data: dict[str, Any]) -> str | None:
    models = data.get("modelUsage")
    return next(iter(models), None) if isinstance(models, dict) and models else None


def _result_error(data: dict[str, Any]) -> str | None:
    """`subtype` says success even for API errors: `is_error` is what tells (see the CLI notes)."""
    if not data.get("is_error"):
        return None
    errors = data.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)
    return str(data.get("result") or data.get("subtype") or "claude reported an error")


class ClaudeBackend(Backend):
    name = "claude"
    # "@path" in a prompt attaches any file the service user can read, outside the workdir too
    # (measured with 2.1.330); this turns that off, so the text reaches the model as written.
    default_env = {"CLAUDE_CODE_DISABLE_FILE_MENTIONS": "1"}
    # Audited against the pinned --help (tests/fixtures/claude/help.txt).
    allowed_extra_flags = {
        "--append-system-prompt": True,
        "--disallowedTools": True,
        "--disallowed-tools": True,
        "--effort": True,
        "--fallback-model": True,
        "--model": True,
        "--verbose": False,
    }
    dangerous_extra_flags = {
        "--allowedTools": True,  # pre-approves tools: Bash(*) is any shell command
        "--allowed-tools": True,
        "--add-dir": True,
        "--permission-mode": True,
        "--mcp-config": True,
        "--settings": True,
        "--setting-sources": True,
        "--plugin-dir": True,
        "--agents": True,
        "--dangerously-skip-permissions": False,
        "--allow-dangerously-skip-permissions": False,
    }

    def build(self, spec: RunSpec, executable: str, allow_dangerous: bool) -> Invocation:
        argv = [executable, "-p"]
        notes: list[str] = []
        if spec.stream:
            argv += ["--output-format", "stream-json", "--verbose", "--include-partial-messages"]
        else:
            argv += ["--output-format", "json"]
        if spec.resume_id:
            argv += ["--resume", spec.resume_id]
        if spec.model:
            argv += ["--model", spec.model]
        permission = self.mode_flag("approval_mode", spec.approval_mode, PERMISSION_MODES, "none", allow_dangerous,
                                    "skips claude's permission checks")
        if permission:
            argv += ["--permission-mode", permission]
        if spec.sandbox_mode not in ("", "default"):
            notes.append(f"claude has no sandbox flag: sandbox_mode {spec.sandbox_mode!r} was not applied")
        if spec.max_turns > 0:
            # Hidden in --help but accepted by 2.1.197 and 2.1.330 (tests/e2e run the genuine CLI with it).
            argv += ["--max-turns", str(spec.max_turns)]
        if spec.system_prompt:
            argv += ["--system-prompt", spec.system_prompt]
        if spec.allowed_tools:
            argv += ["--allowedTools", spec.allowed_tools]
        if spec.ephemeral:
            argv.append("--no-session-persistence")
        argv += spec.operator_flags + spec.extra
        return Invocation(argv, slash_as_text(spec.prompt), spec.workdir or None, notes=notes)

    def parse_output(self, stdout: str, stderr: str, exit_code: int) -> ParsedOutput:
        data = _last_json_object(stdout)
        if data is None or data.get("type") != "result":
            # Usage errors and failures before the first API call print plain text (stderr or stdout).
            if exit_code != 0:
                return ParsedOutput(error=describe_failure(self.name, stderr or stdout, exit_code))
            return ParsedOutput(error="claude exited without a result")
        error = _result_error(data)
        if error is None and exit_code != 0:
            error = describe_failure(self.name, stderr, exit_code)
        return ParsedOutput(str(data.get("result") or ""), error, data.get("session_id"), _usage(data),
                            _first_model(data))

    def stream_parser(self) -> StreamParser:
        return ClaudeStreamParser()


class ClaudeStreamParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self._streamed_text = False  # partial deltas already carried the current message's text
        self._streamed_thinking = False

    def handle(self, data: dict[str, Any]) -> Iterable[Event]:
        kind = data.get("type")
        if kind == "system" and data.get("subtype") == "init":
            self.backend_session_id = data.get("session_id")
            self.model = data.get("model")
            yield Event(INIT, {"backend_session_id": self.backend_session_id, "model": self.model,
                                 "working_dir": data.get("cwd")})
        elif kind == "system" and data.get("subtype") == "api_retry":
            yield Event(PROGRESS, {"stage": "retry", "message": f"API error {data.get('error_status')}, "
                                                                  f"retry {data.get('attempt')}"})
        elif kind == "stream_event":
            yield from self._partial(data.get("event") or {})
        elif kind == "assistant":
            yield from self._assistant(data.get("message") or {})
        elif kind == "user":
            for block in _blocks(data.get("message")):
                if block.get("type") == "tool_result":
                    yield Event(TOOL_RESULT, {"tool_id": block.get("tool_use_id"),
                                                "output": _text_of(block.get("content")),
                                                "is_error": bool(block.get("is_error"))})
        elif kind == "result":
            self.token_usage = _usage(data)
            self.backend_session_id = data.get("session_id") or self.backend_session_id
            self.model = _first_model(data) or self.model
            if "result" in data:
                self.final_text = str(data.get("result") or "")
            self.error = _result_error(data)
            if self.error:
                yield Event(ERROR, {"message": self.error, "code": data.get("api_error_status")})

    def _partial(self, event: dict[str, Any]) -> Iterable[Event]:
        if event.get("type") == "message_start":
            self._streamed_text = self._streamed_thinking = False
        elif event.get("type") == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                self._streamed_text = True
                yield self.message(delta["text"], partial=True)
            elif delta.get("type") == "thinking_delta" and delta.get("thinking"):
                self._streamed_thinking = True
                yield Event(THINKING, {"text": delta["thinking"], "is_partial": True})

    def _assistant(self, message: dict[str, Any]) -> Iterable[Event]:
        if message.get("model") == "<synthetic>":
            return  # API error text; the result line reports it as the error
        for block in _blocks(message):
            kind = block.get("type")
            if kind == "text" and block.get("text") and not self._streamed_text:
                yield self.message(block["text"], partial=False)
            elif kind == "thinking" and block.get("thinking") and not self._streamed_thinking:
                yield Event(THINKING, {"text": block["thinking"]})
            elif kind == "tool_use":
                yield Event(TOOL_USE, {"tool_id": block.get("id"), "tool_name": block.get("name"),
                                         "input": block.get("input")})
        self._streamed_text = self._streamed_thinking = False


def _blocks(message: Any) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return "" if content is None else json.dumps(content)


def _last_json_object(text: str) -> dict[str, Any] | None:
    """The result object: the whole stdout, or its last JSON line if something printed before it."""
    text = text.strip()
    if not text:
        return None
    for candidate in (text, text.rsplit("\n", 1)[-1]):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None
