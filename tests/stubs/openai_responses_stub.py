"""Loopback stub of the OpenAI Responses API, enough for the real ``codex`` CLI.

``POST .../responses`` answers SSE with the realistic event sequence (response.created,
response.in_progress, response.output_item.added, response.content_part.added,
response.output_text.delta x n, response.output_text.done, response.content_part.done,
response.output_item.done, response.completed with usage).  A ``stream: false`` request gets
the final response object as JSON.  Tool mode answers a ``function_call`` item of codex's
``exec_command`` tool (``{"cmd": command}``, with ``response.function_call_arguments.*`` events).
Error modes answer ``{"error": {...}}``.

Each logged request carries ``user_text`` (text of the last ``user`` input message, i.e. the
prompt), ``user_texts`` (every user prompt, in order), ``n_input`` (input items), ``n_turns``
(user + assistant messages; codex's injected ``<environment_context>`` user message is not
counted, nor in ``user_texts``), ``model`` and ``stream``.

Usage: ``python3 tests/stubs/openai_responses_stub.py --port 0 --mode ok|echo|401|429|500|hang|
stall|tool --reply TEXT [--command CMD]`` or ``start_stub(...)`` from a test.  Codex's ``base_url`` is ``<url>/v1``.
"""

import json
import sys
import time
import uuid

try:
    from . import common
except ImportError:  # run as a script
    import common

CONTEXT_TAGS = ("<environment_context>", "<user_instructions>")
ERRORS = {
    401: ("Incorrect API key provided (stub).", "invalid_request_error", "invalid_api_key"),
    429: ("Rate limit reached (stub).", "rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("The server had an error (stub).", "server_error", None),
}


def message_text(item):
    """Concatenated text parts of a Responses ``message`` input item."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def is_turn(item, roles=("user", "assistant")):
    """True for a conversation message (not codex's injected ``<environment_context>`` etc.)."""
    return (isinstance(item, dict) and item.get("type", "message") == "message"
            and item.get("role") in roles and not message_text(item).startswith(CONTEXT_TAGS))


def user_texts(items):
    """Texts of the user prompts in ``input``, in order."""
    return [message_text(i) for i in items or [] if is_turn(i, ("user",))]


def sse(data):
    return "event: %s\ndata: %s\n\n" % (data["type"], json.dumps(data))


class ResponsesApp(common.App):
    name = "openai-responses"

    def summarize(self, body, path):
        items = body.get("input")
        items = [{"role": "user", "content": items}] if isinstance(items, str) else items or []
        texts = user_texts(items)
        return {
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "user_text": texts[-1] if texts else "",
            "user_texts": texts,
            "n_input": len(items),
            "n_turns": sum(1 for i in items if is_turn(i)),
        }

    def error(self, status):
        message, kind, code = ERRORS.get(status, ("stub error", "server_error", None))
        headers = {"retry-after": "1"} if status == 429 else {}
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers

    def post(self, req, body):
        path = req.path.split("?")[0]
        body = body if isinstance(body, dict) else {}
        if not path.endswith("/responses"):
            return req.send_json(404, {"error": {"message": "stub: no route %s" % path,
                                                 "type": "invalid_request_error"}})
        text = self.reply_text(req.state, req.summary)
        command = self.shell_call(req.state, body)
        rid = uuid.uuid4().hex[:16]
        resp_id, msg_id = "resp_stub_" + rid, "msg_stub_" + rid
        base = {"id": resp_id, "object": "response", "created_at": int(time.time()),
                "model": body.get("model") or "stub-model", "status": "in_progress", "output": []}
        if command is not None:
            item = {"type": "function_call", "id": "fc_stub_" + rid, "call_id": "call_stub_" + rid,
                    "name": "exec_command", "arguments": json.dumps({"cmd": command}),
                    "status": "completed"}
            out_tokens = common.estimate_tokens(item)
        else:
            part = {"type": "output_text", "text": text, "annotations": []}
            item = {"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                    "content": [part]}
            out_tokens = max(1, len(text) // 4)
        in_tokens = common.estimate_tokens(body.get("input"))
        usage = {"input_tokens": in_tokens, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": in_tokens + out_tokens}
        final = dict(base, status="completed", output=[item], usage=usage)
        if body.get("stream") is False:
            return req.send_json(200, final)
        events = [
            {"type": "response.created", "response": base},
            {"type": "response.in_progress", "response": base},
        ]
        if command is not None:
            ids = {"item_id": item["id"], "output_index": 0}
            events += [{"type": "response.output_item.added", "output_index": 0,
                        "item": dict(item, arguments="", status="in_progress")}]
            events += [dict(ids, type="response.function_call_arguments.delta", delta=piece)
                       for piece in common.words(item["arguments"])]
            events += [dict(ids, type="response.function_call_arguments.done",
                            arguments=item["arguments"])]
        else:
            ids = {"item_id": msg_id, "output_index": 0, "content_index": 0}
            events += [
                {"type": "response.output_item.added", "output_index": 0,
                 "item": dict(item, status="in_progress", content=[])},
                dict(ids, type="response.content_part.added", part=dict(part, text="")),
            ]
            events += [dict(ids, type="response.output_text.delta", delta=piece)
                       for piece in common.words(text)]
            events += [
                dict(ids, type="response.output_text.done", text=text),
                dict(ids, type="response.content_part.done", part=part),
            ]
        events += [
            {"type": "response.output_item.done", "output_index": 0, "item": item},
            {"type": "response.completed", "response": final},
        ]
        req.start_sse()
        for seq, event in enumerate(events):
            req.send_chunk(sse(dict(event, sequence_number=seq)))
        req.end_chunks()

    def offers_shell(self, body):
        return any(isinstance(t, dict) and t.get("name") == "exec_command"
                   for t in body.get("tools") or [])

    def has_tool_result(self, body):
        items = body.get("input")
        return isinstance(items, list) and any(
            isinstance(i, dict) and i.get("type") == "function_call_output" for i in items)

def start_stub(mode="ok", reply="Hello from stub", port=0, host="127.0.0.1", delay=0.0):
    """Start the Responses stub in a background thread; returns a ``common.StubHandle``."""
    return common.serve(ResponsesApp(), mode, reply, port, host, delay)


if __name__ == "__main__":
    sys.exit(common.main(ResponsesApp()))
