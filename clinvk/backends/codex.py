"""OpenAI Codex (`codex exec --json`): a JSONL event stream in both modes."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..events import ERROR, INIT, PROGRESS, THINKING, TOOL_RESULT, TOOL_USE, Event
from .base import Backend, Invocation, ParsedOutput, RunSpec, StreamParser, usage_from

SANDBOXES = {"read-only": "read-only", "workspace": "workspace-write", "full": "danger-full-access"}


def _usage(data: Any):
    return usage_from(data, input_key="input_tokens", output_key="output_tokens",
                      cached_key="cached_input_tokens", reasoning_key="reasoning_output_tokens")


class CodexBackend(Backend):
    name = "codex"
    # Audited against the pinned --help (tests/fixtures/codex/exec-help.txt).
    allowed_extra_flags = {"--model": True, "-m": True}
    dangerous_extra_flags = {
        "-c": True, "--config": True,  # any config key: sandbox, approvals, MCP servers, providers
        "-s": True, "--sandbox": True, "--add-dir": True, "--enable": True, "--disable": True,
        "-p": True, "--profile": True, "--dangerously-bypass-approvals-and-sandbox": False,
        "--approve-for-me": False, "--dangerously-bypass-hook-trust": False, "--trust": False,
        "--ignore-rules": False,
    }
    # turn.completed carries the thread's running total, not the turn's (measured with codex 0.169.0).
    cumulative_usage = True

    def build(self, spec: RunSpec, executable: str, allow_dangerous: bool) -> Invocation:
        # --skip-git-repo-check: a workdir need not be a git repository.
        argv = [executable, "exec", "--json", "--skip-git-repo-check"]
        notes: list[str] = []
        if spec.model:
            argv += ["-m", spec.model]
        sandbox = self.mode_flag("sandbox_mode", spec.sandbox_mode, SANDBOXES, "full", allow_dangerous,
                                 "turns codex's sandbox off")
        if sandbox:
            argv += ["-s", sandbox]
        if spec.approval_mode not in ("", "default"):
            notes.append("codex exec has no approval setting (it never asks): approval_mode "
                         f"{spec.approval_mode!r} was not applied")
        if spec.max_turns > 0:
            notes.append("codex has no max-turns flag: max_turns was not applied")
        if spec.ephemeral:
            argv.append("--ephemeral")
        argv += spec.operator_flags + spec.extra
        if spec.resume_id:
            argv += ["resume", spec.resume_id]
        argv.append("-")  # read the prompt from stdin
        return Invocation(argv, _with_system_prompt(spec), spec.workdir or None, notes=notes)

    def parse_output(self, stdout: str, stderr: str, exit_code: int) -> ParsedOutput:
        parser = CodexStreamParser()
        for line in stdout.splitlines():
            parser.feed(line)
        return self.finish_stream(parser, stderr, exit_code)

    def stream_parser(self) -> StreamParser:
        return CodexStreamParser()


def _with_system_prompt(spec: RunSpec) -> str:
    """codex exec has no system-prompt flag, so the instructions lead the prompt text."""
    if not spec.system_prompt:
        return spec.prompt
    return f"<system_instructions>\n{spec.system_prompt}\n</system_instructions>\n\n{spec.prompt}"


class CodexStreamParser(StreamParser):
    def __init__(self) -> None:
        super().__init__()
        self._last_error: str | None = None

    def handle(self, data: dict[str, Any]) -> Iterable[Event]:
        kind = data.get("type")
        if kind == "thread.started":
            self.backend_session_id = data.get("thread_id")
            yield Event(INIT, {"backend_session_id": self.backend_session_id})
        elif kind == "turn.started":
            yield Event(PROGRESS, {"stage": "turn_started"})
        elif kind in ("item.started", "item.completed"):
            yield from self._item(data.get("item") or {}, completed=kind == "item.completed")
        elif kind == "turn.completed":
            self.token_usage = _usage(data.get("usage"))
        elif kind == "error":
            # Also used for "Reconnecting... n/5" progress; only turn.failed is final.
            self._last_error = str(data.get("message") or "")
            yield Event(PROGRESS, {"stage": "retry", "message": self._last_error})
        elif kind == "turn.failed":
            error = data.get("error") or {}
            self.error = str(error.get("message") if isinstance(error, dict) else error) or self._last_error
            yield Event(ERROR, {"message": self.error})

    def _item(self, item: dict[str, Any], completed: bool) -> Iterable[Event]:
        kind, item_id = item.get("type"), item.get("id")
        if kind == "agent_message" and completed and item.get("text"):
            # The answer: a stream without it would have no text.
            if self.text_parts:
                self.text_parts.append("\n")
            yield self.message(str(item["text"]), partial=False)
        elif kind == "reasoning" and completed and item.get("text"):
            yield Event(THINKING, {"text": item["text"]})
        elif kind == "command_execution":
            if not completed:
                yield Event(TOOL_USE, {"tool_id": item_id, "tool_name": "shell",
                                         "input": {"command": item.get("command")}})
            else:
                yield Event(TOOL_RESULT, {"tool_id": item_id, "tool_name": "shell",
                                            "output": item.get("aggregated_output", ""),
                                            "is_error": item.get("status") == "failed"})
        elif kind == "file_change":
            if not completed:
                yield Event(TOOL_USE, {"tool_id": item_id, "tool_name": "apply_patch",
                                         "input": {"changes": item.get("changes")}})
            else:
                yield Event(TOOL_RESULT, {"tool_id": item_id, "tool_name": "apply_patch",
                                            "output": json.dumps(item.get("changes")),
                                            "is_error": item.get("status") == "failed"})
        elif kind == "error" and completed:
            # A warning item (e.g. unknown model metadata), not a failure.
            yield Event(PROGRESS, {"stage": "warning", "message": item.get("message")})
