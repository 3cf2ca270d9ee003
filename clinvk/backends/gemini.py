"""Google Gemini CLI (headless, prompt on stdin): one JSON document, or stream-json lines.

Errors in json mode arrive on stderr as a JSON block, and the exit code is the HTTP status mod 256.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import threading
import time
from typing import Any, Iterable

from ..events import ERROR, INIT, PROGRESS, TOOL_RESULT, TOOL_USE, Event, TokenUsage
from .base import Backend, Invocation, ParsedOutput, RunSpec, StreamParser, \
    describe_failure, slash_as_text

APPROVAL_MODES = {"auto": "auto_edit", "always": "default", "none": "yolo"}
# gemini 0.61.0 leaves this lock dir behind after fast runs; the next run then waits ~12 s for it to
# go stale. A lock that is held for real is refreshed far more recently.
STALE_LOCK_SECS = 2.0


class GeminiBackend(Backend):
    name = "gemini"
    # Audited against the pinned --help (tests/fixtures/gemini/help.txt).
    allowed_extra_flags = {"--model": True, "-m": True, "--debug": False, "-d": False}
    dangerous_extra_flags = {
        "--yolo": False, "-y": False, "--approval-mode": True, "--include-directories": True,
        "--allowed-tools": True, "--allowed-mcp-server-names": True, "-e": True, "--extensions": True,
        "--policy": True, "--admin-policy": True,
    }
    # One process instead of a parent that ignores SIGTERM plus a child; also ~0.45 s faster.
    default_env = {"GEMINI_CLI_NO_RELAUNCH": "true", "NO_COLOR": "1"}

    def build(self, spec: RunSpec, executable: str, allow_dangerous: bool) -> Invocation:
        # No -p: the prompt is on stdin, which is not a TTY, so the CLI runs headless.
        # --skip-trust: without it every new workdir fails with exit 55 (untrusted folder).
        argv = [executable, "-o", "stream-json" if spec.stream else "json", "--skip-trust"]
        notes: list[str] = []
        if spec.model:
            argv += ["-m", spec.model]
        approval = self.mode_flag("approval_mode", spec.approval_mode, APPROVAL_MODES, "none", allow_dangerous,
                                  "runs every gemini tool without asking")
        if approval:
            argv += ["--approval-mode", approval]
        if spec.sandbox_mode not in ("", "default"):
            notes.append("gemini's --sandbox needs docker or podman: sandbox_mode "
                         f"{spec.sandbox_mode!r} was not applied")
        if spec.max_turns > 0:
            notes.append("gemini has no max-turns flag: max_turns was not applied")
        if spec.resume_id:
            argv += ["--resume", spec.resume_id]
        argv += spec.operator_flags + spec.extra
        # Headless gemini runs "/cmd" (built-ins, MCP prompts, project commands with shell code) and
        # can persist settings; "@path" inlines workspace files, a documented feature.
        prompt = slash_as_text(spec.prompt)
        if spec.system_prompt:
            prompt = f"<system_instructions>\n{spec.system_prompt}\n</system_instructions>\n\n{prompt}"
        return Invocation(argv, prompt, spec.workdir or None, notes=notes)

    def parse_output(self, stdout: str, stderr: str, exit_code: int) -> ParsedOutput:
        data = _json_document(stdout)
        if isinstance(data, dict) and "response" in data and not data.get("error"):
            return ParsedOutput(str(data.get("response") or ""), None, data.get("session_id"),
                                _usage_from_stats(data.get("stats")), _main_model(data.get("stats")))
        error_doc = data if isinstance(data, dict) and data.get("error") else _error_block(stderr)
        if error_doc:
            return ParsedOutput(error=_error_message(error_doc.get("error")),
                                backend_session_id=error_doc.get("session_id"))
        return ParsedOutput(error=describe_failure(self.name, stderr or stdout, exit_code))

    def stream_parser(self) -> StreamParser:
        return GeminiStreamParser()

    def __init__(self) -> None:
        self._active: dict[str, int] = {}  # gemini dir -> runs of this process using it
        self._lock = threading.Lock()

    def before_run(self, env: dict[str, str]) -> None:
        directory = _gemini_dir(env)
        with self._lock:
            alone = not self._active.get(directory)
            self._active[directory] = self._active.get(directory, 0) + 1
        lock = os.path.join(directory, "projects.json.lock")
        try:
            # With no run of ours in flight any lock is a leftover; otherwise only an old one is.
            if alone or time.time() - os.stat(lock).st_mtime > STALE_LOCK_SECS:
                os.rmdir(lock)
        except OSError:
            pass  # no lock, or another run just took it

    def after_run(self, env: dict[str, str]) -> None:
        directory = _gemini_dir(env)
        with self._lock:
            self._active[directory] = max(0, self._active.get(directory, 1) - 1)

    def cleanup_ephemeral(self, backend_session_id: str | None, env: dict[str, str], workdir: str) -> None:
        """gemini cannot skip writing a transcript, so delete it (cheaper than `gemini --delete-session`)."""
        if not backend_session_id:
            return
        pattern = os.path.join(glob.escape(_gemini_dir(env)), "tmp", "*", "chats",
                               f"session-*-{glob.escape(backend_session_id[:8])}.json*")
        for path in glob.glob(pattern):
            try:
                with open(path, encoding="utf-8") as handle:
                    head = handle.read(4096)
                if backend_session_id in head:
                    os.unlink(path)
            except OSError:
                continue


    def forget_workdir(self, env: dict[str, str], workdir: str) -> None:
        """gemini keeps tmp/<slug>/ and history/<slug>/ per project directory; a scratch dir is never
        used again, so they would only pile up (its projects.json entry stays: the file is shared)."""
        root = _gemini_dir(env)
        for kind in ("tmp", "history"):
            for marker in glob.glob(os.path.join(glob.escape(root), kind, "*", ".project_root")):
                try:
                    with open(marker, encoding="utf-8") as handle:
                        owner = handle.read().strip()
                except OSError:
                    continue
                if owner == workdir:
                    shutil.rmtree(os.path.dirname(marker), ignore_errors=True)


def _gemini_dir(env: dict[str, str]) -> str:
    home = env.get("GEMINI_CLI_HOME") or env.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".gemini")


def _json_document(text: str) -> Any:
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def _error_block(stderr: str) -> dict[str, Any] | None:
    """The pretty-printed error object that follows stack-trace noise on stderr."""
    lines = stderr.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("{"):
            try:
                data = json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
            if isinstance(data, dict) and "error" in data:
                return data
    return None


def _error_message(error: Any) -> str:
    if not isinstance(error, dict):
        return str(error)
    message = str(error.get("message") or "gemini reported an error")
    # HTTP errors carry Google's error JSON as a string, sometimes wrapped ("[API Error: {...}]"):
    # surface its readable message.
    start, end = message.find("{"), message.rfind("}")
    if 0 <= start < end:
        try:
            inner = json.loads(message[start:end + 1])
            message = str(inner["error"]["message"])
        except (ValueError, KeyError, TypeError):
            pass
    code = error.get("code")
    return f"{message} (code {code})" if code not in (None, 1) else message


def _usage_from_stats(stats: Any) -> TokenUsage | None:
    models = stats.get("models") if isinstance(stats, dict) else None
    if not isinstance(models, dict):
        return None
    total = TokenUsage()
    for model in models.values():
        tokens = model.get("tokens") if isinstance(model, dict) else None
        if isinstance(tokens, dict):
            total += TokenUsage(int(tokens.get("prompt") or tokens.get("input") or 0),
                                int(tokens.get("candidates") or 0), int(tokens.get("cached") or 0),
                                int(tokens.get("thoughts") or 0))
    return total


def _main_model(stats: Any) -> str | None:
    models = stats.get("models") if isinstance(stats, dict) else None
    if not isinstance(models, dict):
        return None
    for name, model in models.items():
        if isinstance(model, dict) and "main" in (model.get("roles") or {}):
            return name
    return next(iter(models), None)


class GeminiStreamParser(StreamParser):
    def handle(self, data: dict[str, Any]) -> Iterable[Event]:
        kind = data.get("type")
        if kind == "init":
            self.backend_session_id = data.get("session_id")
            self.model = data.get("model")
            yield Event(INIT, {"backend_session_id": self.backend_session_id, "model": self.model})
        elif kind == "message":
            if data.get("role") == "assistant" and data.get("content"):
                yield self.message(str(data["content"]), partial=bool(data.get("delta")))
        elif kind == "tool_use":
            yield Event(TOOL_USE, {"tool_id": data.get("tool_id"), "tool_name": data.get("tool_name"),
                                     "input": data.get("parameters")})
        elif kind == "tool_result":
            content: dict[str, Any] = {"tool_id": data.get("tool_id"), "output": data.get("output"),
                                       "is_error": data.get("status") == "error"}
            if isinstance(data.get("error"), dict):
                content["error_message"] = data["error"].get("message")
            yield Event(TOOL_RESULT, content)
        elif kind == "error":
            yield Event(PROGRESS, {"stage": "warning", "message": data.get("message")})
        elif kind == "result":
            stats = data.get("stats") or {}
            self.token_usage = TokenUsage(int(stats.get("input_tokens") or 0), int(stats.get("output_tokens") or 0),
                                          int(stats.get("cached") or 0))
            if data.get("status") == "error":
                self.error = _error_message(data.get("error"))
                yield Event(ERROR, {"message": self.error})
