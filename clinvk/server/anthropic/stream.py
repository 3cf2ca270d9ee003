"""The Anthropic-compatible API's SSE stream: named events in Anthropic's order (message_start,
content_block_start, ping, content_block_delta..., content_block_stop, message_delta, message_stop),
pings while the CLI is silent. A failure after the stream started is an ``error`` event, which ends it."""

from __future__ import annotations

from typing import Any, Iterator

from ...service import StreamingRun
from ..compat import Conversation, Usage, sse_event, text_frames
from ..http.errors import ApiError
from . import errors

PING = sse_event("ping", {"type": "ping"})


def events(run: StreamingRun, message: dict[str, Any], chat: Conversation) -> Iterator[str]:
    """The SSE events of a streamed message."""
    yield sse_event("message_start", {"type": "message_start", "message": {
        **message, "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 0, "output_tokens": 0}}})
    yield sse_event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})
    yield PING
    yield from text_frames(run, PING, lambda text: sse_event("content_block_delta", {
        "type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}))
    usage = Usage.of(run.result, run.result.token_usage, chat)
    yield sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse_event("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                      "usage": usage.anthropic()})
    yield sse_event("message_stop", {"type": "message_stop"})


def failed(error: ApiError) -> list[str]:
    return [sse_event("error", errors.body(error))]
