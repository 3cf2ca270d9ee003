"""The Responses API's SSE stream: named events (``event:`` = the JSON's ``type``), each with its
``sequence_number``, in the order the OpenAI SDKs' stream helpers expect. Comments while the CLI is silent."""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

from ...service import StreamingRun
from ..compat import sse_event, text_frames
from ..http.errors import ApiError

KEEPALIVE = ": keep-alive\n\n"
CONTENT = {"output_index": 0, "content_index": 0}


class ResponseEvents:
    """The events of one streamed response.

    :param snapshot: the response object for ``status`` and the answer so far (``None`` = no output yet).
    :param finished: called with the answer's text once the run succeeded; returns the final response.
    """

    def __init__(self, snapshot: Callable[[str, str | None], dict[str, Any]], item_id: str,
                 finished: Callable[[str], dict[str, Any]]):
        self.snapshot = snapshot
        self.item_id = item_id
        self.finished = finished
        self._seq = itertools.count()
        self.text: list[str] = []

    def event(self, kind: str, **fields: Any) -> str:
        return sse_event(kind, {"type": kind, "sequence_number": next(self._seq), **fields})

    def message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [output_text(text)]
        return {"id": self.item_id, "type": "message", "role": "assistant", "status": status, "content": content}

    def frames(self, run: StreamingRun) -> Iterator[str]:
        yield self.event("response.created", response=self.snapshot("in_progress", None))
        yield self.event("response.in_progress", response=self.snapshot("in_progress", None))
        yield self.event("response.output_item.added", output_index=0, item=self.message("in_progress", None))
        yield self.event("response.content_part.added", item_id=self.item_id, **CONTENT, part=output_text(""))

        def delta(text: str) -> str:
            self.text.append(text)
            return self.event("response.output_text.delta", item_id=self.item_id, **CONTENT, delta=text,
                              logprobs=[])

        yield from text_frames(run, KEEPALIVE, delta)
        text = "".join(self.text)
        yield self.event("response.output_text.done", item_id=self.item_id, **CONTENT, text=text, logprobs=[])
        yield self.event("response.content_part.done", item_id=self.item_id, **CONTENT, part=output_text(text))
        yield self.event("response.output_item.done", output_index=0, item=self.message("completed", text))
        yield self.event("response.completed", response=self.finished(text))

    def failed(self, error: ApiError) -> list[str]:
        """The run failed after the stream started: ``response.failed`` with the response's ``error``."""
        response = self.snapshot("failed", "".join(self.text) if self.text else None)
        response["error"] = {"code": "server_error", "message": error.message}
        return [self.event("response.failed", response=response)]


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
