"""Request ids and one structured log line per request.

Every response carries ``X-Request-Id``: the client's own when it sent a sane one, a new one
otherwise. The log line (logger ``clinvk.request``, INFO) is written when the response starts, so a
stream is logged at once rather than after it ends; ``bytes`` is the body length when it is known
(``-`` for a stream). API keys never appear: only the name of their tenant (``tenant=``; a bare key's
tenant is named after its short SHA-256 id).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid

from flask import Flask, g, request

log = logging.getLogger("clinvk.request")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")


def _quote(value: str) -> str:
    """logfmt value: bare when safe, else a JSON string (a path can hold anything, newlines too)."""
    if value and re.fullmatch(r"[A-Za-z0-9._:/+=<>@%-]+", value):
        return value
    return json.dumps(value)


def _tenant_name() -> str:
    tenant = getattr(g, "tenant", None)
    return _quote(tenant.name) if tenant is not None else "-"


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
        if log.isEnabledFor(logging.INFO):
            started = getattr(g, "started", None)
            duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
            rule = request.url_rule
            size = response.content_length if not response.is_streamed else None
            log.info("request method=%s path=%s route=%s status=%s bytes=%s duration_ms=%.1f client=%s tenant=%s "
                     "request_id=%s worker=%d", _quote(request.method), _quote(request.path),
                     _quote(rule.rule if rule is not None else "<unmatched>"), response.status_code,
                     size if size is not None else "-", duration_ms,
                     _quote(getattr(g, "client_ip", None) or request.remote_addr or "-"),
                     _tenant_name(), request_id, os.getpid())
        return response
