"""Streaming responses: flushed per event, keep-alive while the CLI is silent, the CLI killed as soon as
the client goes away (the socket watch of :mod:`.disconnect`; WSGI itself would report it only at the
next write, by closing our iterator), and one way to end on a failure."""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator

from flask import Response, g, request, stream_with_context

from .disconnect import Cancel, on_client_gone
from .errors import ApiError

log = logging.getLogger(__name__)

STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_response(frames: Iterable[str], mimetype: str, on_close: Callable[[], None],
                    on_error: Callable[[ApiError], Iterable[str]], cancel: Cancel) -> Response:
    """A response that yields ``frames`` as they come and always runs ``on_close`` at the end.

    ``cancel(reason)`` ends the run(s) behind the stream from another thread: it is called the moment
    the client hangs up, even while the CLI is silent and nothing is being written.

    Once the stream has started its status can no longer change, so a failure ends it the same way
    for every API style: the run is ended (``on_close``), one line is logged with the request id, and
    the last frames are ``on_error(error)`` — the style's error event and its terminal marker. The
    failure is an :class:`ApiError` the frames raise (the run failed), or any other exception.
    """

    forget = on_client_gone(cancel)

    def close() -> None:
        forget()
        on_close()

    def generate() -> Iterator[bytes]:
        try:
            try:
                for frame in frames:
                    yield frame.encode("utf-8")
                return
            except ApiError as error:
                failure = error
                log.info("stream ended with an error: %s %s status=%s %s request_id=%s", request.method,
                         request.path, error.status, error.message, _request_id())
            except Exception:
                log.exception("stream failed: %s %s request_id=%s", request.method, request.path, _request_id())
                failure = ApiError(500, "the run failed inside the server; the server log has the details")
            close()  # before the last frames: a slow client must not keep the CLI alive
            for frame in on_error(failure):
                yield frame.encode("utf-8")
        finally:
            close()

    response = Response(stream_with_context(generate()), mimetype=mimetype, headers=STREAM_HEADERS)
    # A generator that never started runs no `finally`: the WSGI server's close() must still end the run.
    response.call_on_close(close)
    # Defeat any buffering by the WSGI server: it must send each chunk at once.
    response.direct_passthrough = True
    return response


def _request_id() -> str:
    return getattr(g, "request_id", None) or "-"
