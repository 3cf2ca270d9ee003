"""The OpenAI-compatible API's SSE stream: ``data:`` frames holding chat completion chunks, comments
while the CLI is silent, ``data: [DONE]`` last. A failure after the stream started is a frame
``{"error": {...}}`` followed by ``[DONE]``."""

from __future__ import annotations

from typing import Any, Iterator

from ...service import StreamingRun
from ..compat import Conversation, Usage, sse_data, text_frames
from ..http.errors import ApiError
from . import errors

DONE = "data: [DONE]\n\n"
KEEPALIVE = ": keep-alive\n\n"


def chunks(run: StreamingRun, meta: dict[str, Any], chat: Conversation, include_usage: bool) -> Iterator[str]:
    """The SSE frames of a streamed completion: role, content deltas, finish, usage, [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        frame: dict[str, Any] = {**meta, "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if include_usage:
            frame["usage"] = None
        return sse_data(frame)

    yield chunk({"role": "assistant", "content": ""})
    yield from text_frames(run, KEEPALIVE, lambda text: chunk({"content": text}))
    yield chunk({}, "stop")
    if include_usage:
        usage = Usage.of(run.result, run.result.token_usage, chat)
        yield sse_data({**meta, "object": "chat.completion.chunk", "choices": [], "usage": usage.openai()})
    yield DONE


def failed(error: ApiError) -> list[str]:
    return [sse_data(errors.body(error)), DONE]
