"""Request ids and one structured log line per request.

Every response carries ``X-Request-Id``: the client's own when it sent a sane one, a new one
otherwise. The log line (logger ``clinvk.request``, INFO) is written when the response starts, so a
stream is logged at once rather than after it ends; ``bytes`` is the body length when it is known
(``-`` for a stream). API keys never appear: only the name of their tenant (``tenant=``; a bare key's
tenant is named after its short SHA-256 id).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import time

from flask import Flask, g, request

log = logging.getLogger("clinvk.request")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,128}$")
BARE = re.compile(r"[A-Za-z0-9._:/+=<>@%-]+")
LINE = ("request method=%s path=%s route=%s status=%s bytes=%s duration_ms=%.1f client=%s tenant=%s "
        "request_id=%s worker=%d")


@functools.lru_cache(maxsize=4096)  # methods, routes, clients and tenants repeat
def _quote(value: str) -> str:
    """logfmt value: bare when safe, else a JSON string (a path can hold anything, newlines too)."""
    if value and BARE.fullmatch(value):
        return value
    return json.dumps(value)


def _tenant_name() -> str:
    tenant = getattr(g, "tenant", None)
    return _quote(tenant.name) if tenant is not None else "-"


def new_request_id() -> str:
    """32 hex digits. Not a secret (it is echoed and logged), so no system call for randomness: the
    random module's generator, which it seeds again in a forked worker."""
    return f"{random.getrandbits(128):032x}"


def init_observability(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if REQUEST_ID.match(sent) else new_request_id()
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response):
        request_id = getattr(g, "request_id", None) or new_request_id()
        response.headers["X-Request-Id"] = request_id
        if log.isEnabledFor(logging.INFO):
            started = getattr(g, "started", None)
            duration_ms = (time.perf_counter() - started) * 1000 if started else 0.0
            req = request._get_current_object()
            rule = req.url_rule
            size = response.content_length if not response.is_streamed else None
            args = (_quote(req.method), _quote(req.path), _quote(rule.rule if rule is not None else "<unmatched>"),
                    response.status_code, size if size is not None else "-", duration_ms,
                    _quote(getattr(g, "client_ip", None) or req.remote_addr or "-"), _tenant_name(), request_id,
                    os.getpid())
            # log.info() would also look up the calling source line, which the line does not show.
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, LINE, args, None, "_finish"))
        return response
