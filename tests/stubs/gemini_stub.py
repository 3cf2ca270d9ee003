"""Loopback stub of the Gemini API (generativelanguage v1beta), enough for the real ``gemini`` CLI.

* ``POST /v1beta/models/<model>:streamGenerateContent?alt=sse``: SSE ``data:`` chunks of
  ``GenerateContentResponse``; the last one has ``finishReason: "STOP"`` and ``usageMetadata``.
* ``POST /v1beta/models/<model>:generateContent``: one JSON response.  When the request asks for
  JSON (``generationConfig.responseJsonSchema``/``responseSchema`` or ``responseMimeType``
  ``application/json``) the answer is a value synthesised from the schema (the CLI's model router
  needs ``complexity_score >= 1``).
* ``:countTokens``, ``:embedContent``, ``GET /v1beta/models[/...]``; 404 JSON for anything else.
* Tool mode answers a ``functionCall`` of ``run_shell_command`` (offered in yolo mode only).
* Error modes answer ``{"error": {"code", "message", "status"}}``.

Each logged request carries ``user_text`` (text parts of the last ``user`` content, minus the
CLI's ``<session_context>`` preamble), ``n_contents``, ``n_turns`` (user + model contents),
``model``, ``method`` (``streamGenerateContent``...) and ``stream``.

Usage: ``python3 tests/stubs/gemini_stub.py --port 0 --mode ok|echo|401|429|500|hang|stall|tool
--reply TEXT [--command CMD]`` or ``start_stub(...)`` from a test.
"""

import json
import re
import sys

try:
    from . import common
except ImportError:  # run as a script
    import common

ROUTE = re.compile(r"/models/([^/:]+):(\w+)$")
ERRORS = {
    401: ("API key not valid. Please pass a valid API key.", "UNAUTHENTICATED"),
    429: ("Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
    500: ("An internal error has occurred. Please retry.", "INTERNAL"),
}


def user_text(contents):
    """Text of the last user content, without ``<session_context>`` parts or function parts."""
    for content in reversed(contents or []):
        if content.get("role", "user") != "user":
            continue
        texts = [p["text"] for p in content.get("parts") or []
                 if isinstance(p.get("text"), str) and not p.get("thought")
                 and not p["text"].startswith("<session_context>")]
        if texts or not any("functionResponse" in p for p in content.get("parts") or []):
            return "\n".join(texts)
    return ""


def from_schema(schema, text, depth=0):
    """A value that fits a (Gemini- or JSON-Schema-style) schema; strings get ``text``."""
    schema = schema or {}
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return from_schema(schema[key][0], text, depth + 1)
    kind = schema.get("type", "object")
    kind = (kind[0] if isinstance(kind, list) else kind).lower()
    if depth > 8:
        return None
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: from_schema(v, text, depth + 1) for k, v in props.items()}
    if kind == "array":
        return [from_schema(schema.get("items"), text, depth + 1)]
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


class GeminiApp(common.App):
    name = "gemini"

    def summarize(self, body, path):
        contents = body.get("contents") or []
        match = ROUTE.search(path)
        model, method = match.groups() if match else (None, None)
        return {
            "model": model,
            "method": method,
            "stream": method == "streamGenerateContent",
            "user_text": user_text(contents),
            "n_contents": len(contents),
            "n_turns": sum(1 for c in contents if c.get("role") in ("user", "model")),
        }

    def error(self, status):
        message, kind = ERRORS.get(status, ("stub error", "UNKNOWN"))
        return {"error": {"code": status, "message": message, "status": kind}}, {}

    def get(self, req):
        path = req.path.split("?")[0]
        model = {"name": "models/gemini-stub", "displayName": "Stub",
                 "supportedGenerationMethods": ["generateContent", "streamGenerateContent"]}
        if path.rstrip("/").endswith("/models"):
            return req.send_json(200, {"models": [model]})
        if "/models/" in path:
            return req.send_json(200, dict(model, name="models/" + path.rsplit("/", 1)[-1]))
        req.send_json(200, {})

    def post(self, req, body):
        path = req.path.split("?")[0]
        body = body if isinstance(body, dict) else {}
        match = ROUTE.search(path)
        model, method = match.groups() if match else (None, None)
        usage = {"promptTokenCount": common.estimate_tokens(body.get("contents")),
                 "candidatesTokenCount": 0, "totalTokenCount": 0}
        if method == "countTokens":
            return req.send_json(200, {"totalTokens": usage["promptTokenCount"]})
        if method in ("embedContent", "batchEmbedContents"):
            return req.send_json(200, {"embedding": {"values": [0.0] * 8}})
        if method not in ("generateContent", "streamGenerateContent"):
            return req.send_json(404, {"error": {"code": 404, "status": "NOT_FOUND",
                                                 "message": "stub: no route %s" % path}})
        text = self.reply_text(req.state, req.summary)
        config = body.get("generationConfig") or {}
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if schema or config.get("responseMimeType") == "application/json":
            text = json.dumps(from_schema(schema, text))
        usage["candidatesTokenCount"] = max(1, len(text) // 4)
        usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]

        command = None if schema else self.shell_call(req.state, body)
        if command is not None:
            call = {"functionCall": {"name": "run_shell_command", "args": {"command": command}}}
            usage["candidatesTokenCount"] = common.estimate_tokens(call)
            usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]

        def chunk(piece, last):
            parts = [call] if command is not None else [{"text": piece}]
            cand = {"content": {"parts": parts, "role": "model"}, "index": 0}
            out = {"candidates": [cand], "modelVersion": model, "responseId": "stub"}
            if last:
                cand["finishReason"] = "STOP"
                out["usageMetadata"] = usage
            return out

        if method == "generateContent":
            return req.send_json(200, chunk(text, True))
        pieces = [""] if command is not None else common.words(text, 2)
        req.start_sse()
        for i, piece in enumerate(pieces):
            req.send_chunk("data: %s\r\n\r\n" % json.dumps(chunk(piece, i == len(pieces) - 1)))
        req.end_chunks()

    def offers_shell(self, body):
        return any(isinstance(d, dict) and d.get("name") == "run_shell_command"
                   for tool in body.get("tools") or [] if isinstance(tool, dict)
                   for d in tool.get("functionDeclarations") or [])

    def has_tool_result(self, body):
        return any(isinstance(p, dict) and "functionResponse" in p
                   for c in body.get("contents") or [] for p in c.get("parts") or [])


def start_stub(mode="ok", reply="Hello from stub", port=0, host="127.0.0.1", delay=0.0):
    """Start the Gemini stub in a background thread; returns a ``common.StubHandle``."""
    return common.serve(GeminiApp(), mode, reply, port, host, delay)


if __name__ == "__main__":
    sys.exit(common.main(GeminiApp()))
