"""The native API's NDJSON streams: one JSON object a line, ``keepalive`` lines while the CLI is
silent, ``done`` last. A stream that fails after it started ends with an ``error`` event and ``done``."""

from __future__ import annotations

import json
from typing import Any, Callable

from flask import Response

from ...events import Event
from ...lifecycle import StreamingRun
from ...orchestration import ParallelStream
from ..http.context import settings
from ..http.errors import ApiError
from ..http.streaming import stream_response

KEEPALIVE = json.dumps({"type": "keepalive"}) + "\n"
MIMETYPE = "application/x-ndjson"


def ndjson(item: Event | dict[str, Any] | None) -> str:
    """One line: an event (a unified :class:`Event` or its dict form), or a keep-alive for ``None``."""
    if item is None:
        return KEEPALIVE
    return json.dumps(item.to_dict() if isinstance(item, Event) else item, ensure_ascii=False) + "\n"


def failed(error: ApiError, backend: str = "", session_id: str | None = None) -> list[str]:
    """The last lines of a stream that failed: ``error`` (message and code), then ``done``.

    Without ``backend`` they are a batch's own events (parallel, compare), like its summary ``done``.
    """
    lines = []
    for event in (Event("error", {"message": error.message, "code": error.code}, backend, session_id),
                  Event("done", {"exit_code": -1, "duration_ms": 0}, backend, session_id)):
        data = event.to_dict()
        if not backend:
            del data["backend"]
        lines.append(ndjson(data))
    return lines


def respond(run: StreamingRun | ParallelStream,
            on_error: Callable[[ApiError], list[str]] = failed) -> Response:
    """An NDJSON response of the run's ``events(keepalive_secs)``; ``run.close()`` ends the run(s)
    behind it, ``run.cancel(reason)`` when the client hangs up."""
    lines = (ndjson(item) for item in run.events(settings().keepalive_interval_secs))
    return stream_response(lines, MIMETYPE, run.close, on_error, run.cancel)
