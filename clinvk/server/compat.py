"""What the OpenAI- and Anthropic-compatible APIs share: model → backend, messages → one prompt,
running the CLI (answered whole or streamed), usage in each vendor's terms, text deltas from unified
events, SSE framing. Each API's package turns these into its own wire format."""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from flask import Response, jsonify
from marshmallow import Schema

from .. import runner
from ..config import BACKEND_NAMES
from ..lifecycle import SHUTTING_DOWN
from ..events import Event, RunResult, TokenUsage
from ..service import PreparedRun, PromptRequest, ServiceError, StreamingRun
from .http import bodies
from .http.context import service, settings
from .http.disconnect import client_gone_token
from .http.errors import ApiError, service_error
from .http.streaming import stream_response
from ..specs import MAX_SYSTEM_PROMPT_CHARS
from ..specs.plain import PlainBody

# A failed or timed-out run is not retried by the SDKs: the CLI already retried its vendor API,
# and an agent run may have had side effects (edited files) that a blind repeat would redo.
NO_RETRY = {"x-should-retry": "false"}
CLAUDE_FAMILY = re.compile(r"^(sonnet|opus|haiku)\b")
OPENAI_REASONING = re.compile(r"(?:^|[^a-z0-9])o\d")
MODEL_HELP = ("use claude, codex or gemini (the backend's configured model), or a model name containing "
              "claude/sonnet/opus/haiku (claude), gpt, o<digit> or codex (codex), or gemini (gemini)")

# How each CLI counts: does its input count include cache reads, its output count reasoning tokens?
INPUT_INCLUDES_CACHED = {"claude": False, "codex": True, "gemini": True}
OUTPUT_INCLUDES_REASONING = {"claude": True, "codex": True, "gemini": False}


# -- request ---------------------------------------------------------------------------------------------

def load(schema: Schema, plain: PlainBody | None = None) -> dict[str, Any]:
    """The JSON body validated by ``schema`` (``plain``: its fast path); errors name fields as the vendor
    APIs do (``messages[0]``, no ``body.``), and a bad request is a 400, as theirs are."""
    return bodies.load(schema, root=None, status=400, plain=plain)


def backend_for_model(model: str) -> tuple[str, str]:
    """The backend a requested model runs on, and the model to pass to its CLI ("" = the configured one).

    :raise ApiError: 400 naming ``model`` when no backend fits.
    """
    name = model.strip()
    lower = name.lower()
    if lower in BACKEND_NAMES:
        return lower, ""
    if "claude" in lower or CLAUDE_FAMILY.match(lower):
        return "claude", name
    if "gpt" in lower or "codex" in lower or OPENAI_REASONING.search(lower):
        return "codex", name
    if "gemini" in lower:
        return "gemini", name
    message = f"model {model!r} matches no backend: {MODEL_HELP}"
    raise ApiError(400, message, code="model_not_found", errors=[{"field": "model", "message": message}])


@dataclass
class Conversation:
    prompt: str
    system: str


def fold(turns: Iterable[tuple[str, list[str] | None]], system: list[str]) -> Conversation:
    """Turn a chat into one prompt, the way the Go clinvoker does.

    User turns are joined with newlines; an assistant turn after a user turn becomes
    ``[Previous response: ...]``; a leading assistant turn is dropped. ``system`` pieces are joined
    into the system prompt. Parts of one message are joined with newlines.

    :raise ApiError: 400 naming ``messages`` when no user turn has text.
    """
    prompt = ""
    for role, parts in turns:
        text = "\n".join(parts or [])
        if role == "user" and text:
            prompt = f"{prompt}\n{text}" if prompt else text
        elif role == "assistant" and text and prompt:
            prompt += f"\n[Previous response: {text}]\n"
    if not prompt.strip():
        message = "messages must contain a user message with text content"
        raise ApiError(400, message, errors=[{"field": "messages", "message": message}])
    return Conversation(prompt, "\n\n".join(piece for piece in system if piece))


def prepare(model: str, conversation: Conversation, *, stream: bool, system_field: str = "system") -> PreparedRun:
    """A stateless run of the backend ``model`` maps to. Service errors name the request's own fields."""
    backend, cli_model = backend_for_model(model)
    check_system_prompt(backend, conversation, system_field)
    request = PromptRequest(prompt=conversation.prompt, backend=backend, model=cli_model,
                            system_prompt=conversation.system, stream=stream, ephemeral=True)
    try:
        return service().prepare(request)
    except ServiceError as exc:
        raise from_service_error(exc, system_field) from None


def check_system_prompt(backend: str, conversation: Conversation, system_field: str) -> None:
    """:raise ApiError: 400 naming ``system_field`` when claude could not take the system prompt."""
    if backend == "claude" and len(conversation.system) > MAX_SYSTEM_PROMPT_CHARS:
        message = (f"the system prompt is {len(conversation.system)} characters; claude takes it as a "
                   f"command-line argument, which holds at most {MAX_SYSTEM_PROMPT_CHARS}")
        raise ApiError(400, message, errors=[{"field": system_field, "message": message}])


def fields(system_field: str = "system") -> Callable[[str], str]:
    """Maps a service field to the request field of these APIs (``prompt`` → ``messages``)."""
    names = {"backend": "model", "prompt": "messages", "system_prompt": system_field}
    return lambda name: names.get(name, name)


def from_service_error(exc: ServiceError, system_field: str = "system") -> ApiError:
    """The service's error, naming the request field of this API that caused it."""
    error = service_error(exc, fields(system_field))
    if exc.status >= 500:
        error.headers.update(NO_RETRY)
    return error


def start_stream(prepared: PreparedRun) -> StreamingRun:
    """Take a run slot and start the CLI before the response starts, so refusals stay HTTP errors."""
    try:
        return prepared.start_stream()
    except ServiceError as exc:
        raise from_service_error(exc) from None


def execute(prepared: PreparedRun) -> RunResult:
    """Run a non-streaming request to the end (or until its client hangs up); a failed run raises
    the HTTP error it amounts to."""
    with client_gone_token() as cancel:
        result = prepared.execute(cancel)
    failure = run_failure(result)
    if failure:
        raise failure
    return result


def run_failure(result: RunResult | None) -> ApiError | None:
    """The HTTP error a finished run amounts to, or None when it succeeded."""
    if result is None:
        return ApiError(500, "the run ended without a result; the server log has the details", headers=NO_RETRY)
    if result.ok:
        return None
    if result.timed_out:
        timeout = settings().request_timeout_secs
        return ApiError(504, f"{result.backend} did not finish within {timeout} s (server.request_timeout_secs)",
                        headers=NO_RETRY)
    if result.cancelled:
        return ApiError(503, result.error or f"{result.backend} run was cancelled", headers=NO_RETRY,
                        code=SHUTTING_DOWN if runner.stopping() else None)
    return ApiError(502, f"{result.backend} run failed: {result.error or f'exit status {result.exit_code}'}",
                    code="backend_failed", headers=NO_RETRY)


# -- response --------------------------------------------------------------------------------------------

def answer(model: str, conversation: Conversation, *, stream: bool, body: Callable[[RunResult], dict[str, Any]],
           frames: Callable[[StreamingRun], Iterator[str]], failed: Callable[[ApiError], list[str]],
           system_field: str = "system") -> Response:
    """Run the conversation on the backend ``model`` names and answer in one API's format.

    :param body: the JSON answer of a finished, successful run.
    :param frames: the SSE frames of a streamed run (:func:`text_frames` makes its text deltas).
    :param failed: the frames that end a stream after a failure: the API's error event and end marker.
    """
    prepared = prepare(model, conversation, stream=stream, system_field=system_field)
    if stream:
        run = start_stream(prepared)
        return stream_response(frames(run), "text/event-stream", run.close, failed, run.cancel)
    return jsonify(body(execute(prepared)))


def text_frames(run: StreamingRun, keepalive: str, delta: Callable[[str], str]) -> Iterator[str]:
    """The answer's text as it comes, ``delta(text)`` per piece, ``keepalive`` while the CLI is silent.

    :raise ApiError: after the last piece, when the run failed.
    """
    deltas = TextDeltas()
    for event in run.events(settings().keepalive_interval_secs):
        if event is None:
            yield keepalive
            continue
        text = deltas.feed(event)
        if text:
            yield delta(text)
    failure = run_failure(run.result)
    if failure:
        raise failure


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


@dataclass
class Usage:
    """Token counts of a run in vendor terms: input includes cache reads, output includes reasoning."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def of(cls, result: RunResult | None, usage: TokenUsage | None, conversation: Conversation) -> "Usage":
        """The CLI's own counts; an estimate (4 characters a token) when it reported none."""
        if usage is None:
            output = result.output if result is not None else ""
            return cls(math.ceil(len(conversation.prompt + conversation.system) / 4), math.ceil(len(output) / 4))
        backend = result.backend if result is not None else "claude"
        input_tokens = usage.input_tokens + (0 if INPUT_INCLUDES_CACHED.get(backend, True) else usage.cached_tokens)
        output_tokens = usage.output_tokens + (
            0 if OUTPUT_INCLUDES_REASONING.get(backend, True) else usage.reasoning_tokens)
        return cls(input_tokens, output_tokens, usage.cached_tokens, usage.reasoning_tokens)

    def openai(self) -> dict[str, Any]:
        return {"prompt_tokens": self.input_tokens, "completion_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
                "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
                "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens}}

    def anthropic(self) -> dict[str, Any]:
        # Anthropic counts cache reads apart from input_tokens.
        return {"input_tokens": max(0, self.input_tokens - self.cached_tokens), "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": self.cached_tokens}


class TextDeltas:
    """The answer's text, piece by piece, from a run's unified events.

    Token deltas pass as they are; a whole message that follows earlier text (codex answers in
    several messages), or text after a tool call, starts on a new line, as in the non-streamed answer.
    """

    def __init__(self) -> None:
        self.sent = False
        self.boundary = False

    def feed(self, event: Event) -> str:
        if event.type == "message":
            text = event.content.get("text") or ""
            if not text:
                return ""
            if self.sent and (self.boundary or not event.content.get("is_partial")):
                text = "\n" + text
            self.sent, self.boundary = True, False
            return text
        if event.type in ("tool_use", "tool_result"):
            self.boundary = True
        return ""


def sse_data(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_event(name: str, payload: Any) -> str:
    return f"event: {name}\n{sse_data(payload)}"
