"""codex's long-lived mode: ``codex app-server`` (JSON-RPC lines without the ``jsonrpc`` field).

While the process waits, ``initialize`` (as client ``codex_exec``, so the vendor sees the same
``originator`` and user agent as ``codex exec``), ``initialized`` and ``thread/start`` (ephemeral,
with the run's cwd, model and sandbox) are done; the run itself is one ``turn/start``. Its
notifications are translated into the lines ``codex exec --json`` prints, for ``CodexStreamParser``.
"""

from __future__ import annotations

import os
from typing import Any

from .protocol import Protocol, Step, dumps

CLIENT_NAME = "codex_exec"
# The exec argv clinvk builds for an ephemeral run: these flags, then "-m M" / "-s S" at most once each.
_FIXED = ("exec", "--json", "--skip-git-repo-check")
_VALUED = {"-m": "model", "-s": "sandbox"}
_INIT, _THREAD, _TURN = 1, 2, 3


def thread_options(argv: list[str], at: int) -> dict[str, str] | None:
    """``thread/start`` options for the one-shot ``argv`` whose CLI is ``argv[at]``, or None if the
    run is not one the app-server can reproduce exactly (a resume, a persistent run, other flags)."""
    tail = argv[at + 1:]
    if tuple(tail[:3]) != _FIXED or tail[-2:] != ["--ephemeral", "-"]:
        return None
    middle, options = tail[3:-2], {}
    while middle:
        if len(middle) < 2 or middle[0] not in _VALUED or _VALUED[middle[0]] in options:
            return None
        options[_VALUED[middle[0]]] = middle[1]
        middle = middle[2:]
    return options


def warm_argv(argv: list[str], at: int) -> list[str] | None:
    if thread_options(argv, at) is None:
        return None
    return argv[:at + 1] + ["app-server"]


def _usage(total: dict[str, Any]) -> dict[str, Any]:
    """app-server's camelCase token counts under exec's names."""
    return {"input_tokens": total.get("inputTokens", 0), "cached_input_tokens": total.get("cachedInputTokens", 0),
            "cache_write_input_tokens": total.get("cacheWriteInputTokens", 0),
            "output_tokens": total.get("outputTokens", 0),
            "reasoning_output_tokens": total.get("reasoningOutputTokens", 0)}


def _item(item: dict[str, Any]) -> dict[str, Any] | None:
    """An app-server thread item as exec prints it (only the kinds clinvk's parser reads)."""
    kind, item_id = item.get("type"), item.get("id")
    if kind == "agentMessage":
        return {"id": item_id, "type": "agent_message", "text": item.get("text") or ""}
    if kind == "reasoning":
        parts = item.get("summary") or item.get("content") or []
        return {"id": item_id, "type": "reasoning", "text": "\n".join(str(p) for p in parts)}
    if kind == "commandExecution":
        status = {"inProgress": "in_progress"}.get(item.get("status"), item.get("status"))
        return {"id": item_id, "type": "command_execution", "command": item.get("command"),
                "aggregated_output": item.get("aggregatedOutput") or "", "exit_code": item.get("exitCode"),
                "status": status}
    if kind == "fileChange":
        status = {"inProgress": "in_progress"}.get(item.get("status"), item.get("status"))
        return {"id": item_id, "type": "file_change", "changes": item.get("changes"), "status": status}
    return None


class CodexProtocol(Protocol):
    def __init__(self, options: dict[str, str], cwd: str, version: str):
        self.options, self.cwd, self.version = options, cwd, version
        self.thread_id: str | None = None
        self.failure: str | None = None  # the handshake failed: the run reports this
        self._prompt: str | None = None  # held until thread/start answered
        self._usage: dict[str, Any] | None = None
        self._last_error = ""

    def opening(self) -> list[str]:
        return [dumps({"id": _INIT, "method": "initialize",
                       "params": {"clientInfo": {"name": CLIENT_NAME, "version": self.version}}})]

    def start(self, prompt: str) -> Step:
        if self.failure is not None:
            return Step(output=[self._failed(self.failure)], done=True)
        if self.thread_id is None:
            self._prompt = prompt  # sent when thread/start answers
            return Step()
        return Step(output=[self._thread_started()], send=[self._turn(prompt)])

    def _thread_started(self) -> str:
        return dumps({"type": "thread.started", "thread_id": self.thread_id})

    @staticmethod
    def _failed(message: str) -> str:
        return dumps({"type": "turn.failed", "error": {"message": message}})

    def _turn(self, prompt: str) -> str:
        return dumps({"id": _TURN, "method": "turn/start", "params": {
            "threadId": self.thread_id, "input": [{"type": "text", "text": prompt, "text_elements": []}]}})

    def _thread_start(self) -> list[str]:
        params: dict[str, Any] = {"cwd": self.cwd or os.getcwd(), "ephemeral": True, "approvalPolicy": "never"}
        params.update(self.options)
        return [dumps({"method": "initialized"}), dumps({"id": _THREAD, "method": "thread/start", "params": params})]

    def receive(self, message: dict[str, Any], line: str, running: bool) -> Step:
        if "id" in message and "method" in message:
            # A request to us (an approval, with approvalPolicy "never" none should come): refuse it
            # rather than let the turn wait forever.
            return Step(send=[dumps({"id": message["id"], "error": {
                "code": -32601, "message": "clinvk answers no requests from a warm codex run"}})])
        if "id" in message:
            return self._response(message, running)
        method, params = message.get("method"), message.get("params") or {}
        if not running:
            return Step()
        if method == "turn/started":
            return Step(output=[dumps({"type": "turn.started"})])
        if method in ("item/started", "item/completed"):
            item = _item(params.get("item") or {})
            if item is None or (item["type"] == "agent_message" and method == "item/started"):
                return Step()
            kind = "item.completed" if method == "item/completed" else "item.started"
            return Step(output=[dumps({"type": kind, "item": item})])
        if method == "thread/tokenUsage/updated":
            total = (params.get("tokenUsage") or {}).get("total")
            if isinstance(total, dict):
                self._usage = _usage(total)
            return Step()
        if method == "error":
            error = params.get("error") or {}
            self._last_error = str(error.get("message") if isinstance(error, dict) else error or "")
            return Step(output=[dumps({"type": "error", "message": self._last_error})])
        if method == "turn/completed":
            return Step(output=[self._turn_end(params.get("turn") or {})], done=True)
        return Step()

    def _turn_end(self, turn: dict[str, Any]) -> str:
        if turn.get("status") == "completed":
            return dumps({"type": "turn.completed", "usage": self._usage or _usage({})})
        error = turn.get("error")
        message = error.get("message") if isinstance(error, dict) else error
        return self._failed(str(message or self._last_error or f"turn {turn.get('status')}"))

    def _response(self, message: dict[str, Any], running: bool) -> Step:
        error = message.get("error")
        if error is not None:
            self.failure = str(error.get("message") if isinstance(error, dict) else error)
            if running:  # the turn could not start: end the run with codex's own message
                return Step(output=[self._failed(self.failure)], done=True)
            return Step()
        if message["id"] == _INIT:
            return Step(send=self._thread_start())
        if message["id"] == _THREAD:
            self.thread_id = ((message.get("result") or {}).get("thread") or {}).get("id")
            if self._prompt is None:
                return Step()
            prompt, self._prompt = self._prompt, None
            return Step(output=[self._thread_started()], send=[self._turn(prompt)])
        return Step()
