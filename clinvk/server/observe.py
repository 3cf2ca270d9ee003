"""Request ids and one structured log line per request."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request

log = logging.getLogger("clinvk.request")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def init_observability(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if REQUEST_ID.match(sent) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        request_id = getattr(g, "request_id", None) or uuid.uuid4().hex
        response.headers["X-Request-Id"] = request_id
        started = getattr(g, "started", None)
        duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
        if log.isEnabledFor(logging.INFO):
            log.info("request method=%s path=%s status=%s duration_ms=%.1f request_id=%s", request.method,
                     request.path, response.status_code, duration_ms, request_id)
        return response
