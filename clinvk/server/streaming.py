"""Streaming responses: flushed per event, keep-alive while the CLI is silent, the CLI killed when the
client goes away (WSGI reports a gone client by closing our iterator)."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from flask import Response, stream_with_context

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_response(chunks: Iterable[str], mimetype: str, on_close: Callable[[], None]) -> Response:
    """A response that yields ``chunks`` as they come and always runs ``on_close`` at the end."""

    def generate() -> Iterator[bytes]:
        try:
            for chunk in chunks:
                yield chunk.encode("utf-8")
        finally:
            on_close()

    response = Response(stream_with_context(generate()), mimetype=mimetype, headers=STREAM_HEADERS)
    # A generator that never started runs no `finally`: the WSGI server's close() must still end the run.
    response.call_on_close(on_close)
    # Defeat any buffering by the WSGI server: it must send each chunk at once.
    response.direct_passthrough = True
    return response
