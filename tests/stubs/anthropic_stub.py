"""Loopback stub of the Anthropic Messages API, enough for the real ``claude`` CLI.

``POST .../v1/messages[?beta=true]``: SSE when ``stream`` is true (message_start,
content_block_start, ping, content_block_delta x n, content_block_stop, message_delta with
usage, message_stop), else one JSON message.  ``POST .../v1/messages/count_tokens`` gives
``{"input_tokens": N}``; tool mode answers a ``tool_use`` block of the ``Bash`` tool (streamed as
``input_json_delta``); GET/HEAD of anything gives 200 ``{}`` (``GET /v1/models`` a
one-model list).  Error modes answer ``{"type":"error","error":{...}}``.

Each logged request carries ``user_text`` (the text blocks of the last ``user`` message,
``<system-reminder>`` blocks removed), ``n_messages`` (all messages incl. the CLI's
``role:"system"`` environment message), ``n_turns`` (user + assistant messages), ``model``
and ``stream``.

Usage: ``python3 tests/stubs/anthropic_stub.py --port 0 --mode ok|echo|401|429|500|hang|stall|tool
--reply TEXT [--command CMD]`` or ``start_stub(...)`` from a test.
"""

import json
import re
import sys
import uuid

try:
    from . import common
except ImportError:  # run as a script
    import common

REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>\s*", re.S)
ERRORS = {
    401: ("authentication_error", "invalid x-api-key", {}),
    429: ("rate_limit_error", "stub: rate limited", {"retry-after": "1"}),
    500: ("api_error", "stub: internal server error", {}),
}


def user_text(messages):
    """Text of the last ``user`` message with system-reminder blocks removed."""
    for msg in reversed(messages or []):
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return REMINDER.sub("", content)
        texts = [REMINDER.sub("", b.get("text", "")) for b in content or []
                 if isinstance(b, dict) and b.get("type") == "text"]
        return "\n".join(t for t in texts if t)
    return ""


def sse(event, data):
    return "event: %s\ndata: %s\n\n" % (event, json.dumps(data))


class AnthropicApp(common.App):
    name = "anthropic"

    def summarize(self, body, path):
        messages = body.get("messages") or []
        return {
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "user_text": user_text(messages),
            "n_messages": len(messages),
            "n_turns": sum(1 for m in messages if m.get("role") in ("user", "assistant")),
        }

    def error(self, status):
        kind, message, headers = ERRORS.get(status, ("api_error", "stub error", {}))
        headers = dict(headers, **{"request-id": "req_stub_error"})
        return {"type": "error", "error": {"type": kind, "message": message}}, headers

    def get(self, req):
        if req.path.split("?")[0].endswith("/v1/models"):
            model = {"type": "model", "id": "claude-stub", "display_name": "Stub",
                     "created_at": "2026-01-01T00:00:00Z"}
            return req.send_json(200, {"data": [model], "has_more": False,
                                       "first_id": "claude-stub", "last_id": "claude-stub"})
        req.send_json(200, {})

    def post(self, req, body):
        path = req.path.split("?")[0]
        body = body if isinstance(body, dict) else {}
        if path.endswith("/v1/messages/count_tokens"):
            return req.send_json(200, {"input_tokens": common.estimate_tokens(body)})
        if not path.endswith("/v1/messages"):
            return req.send_json(404, {"type": "error", "error": {
                "type": "not_found_error", "message": "stub: no route %s" % path}})
        text = self.reply_text(req.state, req.summary)
        command = self.shell_call(req.state, body)
        if command is not None:
            block = {"type": "tool_use", "id": "toolu_stub_" + uuid.uuid4().hex[:20], "name": "Bash",
                     "input": {"command": command, "description": "Run the stub's command"}}
            stop_reason = "tool_use"
        else:
            block = {"type": "text", "text": text}
            stop_reason = "end_turn"
        msg_id = "msg_stub_" + uuid.uuid4().hex[:20]
        model = body.get("model") or "claude-stub"
        usage = {"input_tokens": common.estimate_tokens(body.get("messages")),
                 "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": max(1, len(text) // 4) if command is None
                 else common.estimate_tokens(block)}
        message = {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                   "content": [block], "stop_reason": stop_reason,
                   "stop_sequence": None, "usage": usage}
        if not body.get("stream"):
            return req.send_json(200, message, {"request-id": "req_" + msg_id})
        start = dict(message, content=[], stop_reason=None, usage=dict(usage, output_tokens=1))
        req.start_sse()
        req.send_chunk(sse("message_start", {"type": "message_start", "message": start}))
        if block["type"] == "tool_use":
            opened = dict(block, input={})
            deltas = [{"type": "input_json_delta", "partial_json": piece}
                      for piece in common.words(json.dumps(block["input"]))]
        else:
            opened = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in common.words(text)]
        req.send_chunk(sse("content_block_start", {
            "type": "content_block_start", "index": 0, "content_block": opened}))
        req.send_chunk(sse("ping", {"type": "ping"}))
        for delta in deltas:
            req.send_chunk(sse("content_block_delta", {
                "type": "content_block_delta", "index": 0, "delta": delta}))
        req.send_chunk(sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
        req.send_chunk(sse("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]}}))
        req.send_chunk(sse("message_stop", {"type": "message_stop"}))
        req.end_chunks()

    def offers_shell(self, body):
        return any(isinstance(t, dict) and t.get("name") == "Bash" for t in body.get("tools") or [])

    def has_tool_result(self, body):
        return any(isinstance(block, dict) and block.get("type") == "tool_result"
                   for msg in body.get("messages") or [] if msg.get("role") == "user"
                   and isinstance(msg.get("content"), list) for block in msg["content"])

def start_stub(mode="ok", reply="Hello from stub", port=0, host="127.0.0.1", delay=0.0):
    """Start the Anthropic stub in a background thread; returns a ``common.StubHandle``."""
    return common.serve(AnthropicApp(), mode, reply, port, host, delay)


if __name__ == "__main__":
    sys.exit(common.main(AnthropicApp()))
