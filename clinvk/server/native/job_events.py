"""A job's events as a response: NDJSON lines carrying ``seq``, or SSE frames with ``id:`` lines, from
any position, following the job live until it ends.

Events are read from the session store (polled), so this works on any worker or host, and a client that
disconnects only ends its own read: the job runs on.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterator

from ...jobs.model import Job, JobNotFound
from ...jobs.store import JobStore
from ..http.streaming import stream_response

POLL_SECS = 0.2
NDJSON, SSE = "application/x-ndjson", "text/event-stream"


def follow(store: JobStore, job_id: str, owner: str, after: int, *, live: bool, keepalive: float,
           expire_stale: Callable[[], Any], stale_check_secs: float) -> Iterator[tuple[int, dict] | None]:
    """(seq, event) pairs after ``after``; ``None`` as a keep-alive tick. Ends once the job has ended and
    every event was given (or at once after the stored ones when not ``live``)."""
    quiet_since = checked = time.monotonic()
    while True:
        batch = store.job_events(job_id, after)
        for seq, event in batch:
            yield seq, event
            after = seq
        if batch:
            quiet_since = time.monotonic()
            continue
        try:
            job: Job = store.get_job(job_id, owner)
        except JobNotFound:  # deleted meanwhile
            return
        if job.finished or not live:
            for seq, event in store.job_events(job_id, after):  # written just before it ended
                yield seq, event
            return
        now = time.monotonic()
        if now - checked >= stale_check_secs:  # a job whose server died must not be followed forever
            expire_stale()
            checked = now
        if now - quiet_since >= keepalive:
            yield None
            quiet_since = now
        time.sleep(POLL_SECS)


def ndjson_frame(item: tuple[int, dict] | None) -> str:
    if item is None:
        return json.dumps({"type": "keepalive"}) + "\n"
    seq, event = item
    return json.dumps({"seq": seq, **event}, ensure_ascii=False) + "\n"


def sse_frame(item: tuple[int, dict] | None) -> str:
    if item is None:
        return ": keep-alive\n\n"
    seq, event = item
    return f"id: {seq}\ndata: {json.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n"


def respond(items: Iterator[tuple[int, dict] | None], sse: bool):
    frame = sse_frame if sse else ndjson_frame
    # Leaving the stream never stops the job: nothing to close or cancel.
    return stream_response((frame(item) for item in items), SSE if sse else NDJSON, lambda: None,
                           lambda error: [], lambda reason: None)
