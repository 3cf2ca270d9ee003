"""Meta routes: /health and /openapi.json (the spec is generated once, from the views' docstrings and
the marshmallow schemas)."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify

from ... import __version__
from ...config import BACKEND_NAMES
from ...errors import StoreUnavailable
from . import context

log = logging.getLogger(__name__)

bp = Blueprint("meta", __name__)


def format_uptime(seconds: float) -> str:
    """1h2m3s / 3m25s / 45s, rounded to whole seconds, as the Go clinvoker reports it."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@bp.get("/health")
def health():
    """Report server health: backends, session store, uptime, whether CLI runs are sandboxed. Always
    HTTP 200; read `status`.

    ---
    get:
      tags: [Health]
      operationId: healthCheck
      security: []
      responses:
        200: {description: Health report, content: {application/json: {schema: HealthResponseSchema}}}
    """
    service = context.service()
    backends = [{"name": name, "available": service.executable(name) is not None} for name in BACKEND_NAMES]
    store: dict = {"available": True}
    try:
        service.store.check()
        store["session_count"] = service.store.count()
    except Exception as exc:  # an unusable store makes the server unhealthy, not broken
        # /health needs no key: the reason (paths, OS errors) goes to the log, not to the caller.
        if not isinstance(exc, StoreUnavailable):  # that one the store has logged already
            log.exception("session store check failed")
        store = {"available": False, "error": "the session store is not usable (see the server log)"}
    if not store["available"]:
        status = "unhealthy"
    elif not all(b["available"] for b in backends):
        status = "degraded"
    else:
        status = "ok"
    uptime = time.monotonic() - current_app.extensions["clinvk.started"]
    return jsonify({"status": status, "version": __version__, "uptime": format_uptime(uptime),
                    "uptime_millis": int(uptime * 1000), "backends": backends, "session_store": store,
                    "sandbox": service.sandbox.to_dict()})


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 document of this server.

    ---
    get:
      tags: [Health]
      operationId: openapiSpec
      security: []
      responses:
        200: {description: OpenAPI document, content: {application/json: {schema: {type: object}}}}
    """
    spec = current_app.extensions.get("clinvk.openapi")
    if spec is None:
        from .openapi import build_spec
        spec = current_app.extensions["clinvk.openapi"] = build_spec(current_app)
    return jsonify(spec)
