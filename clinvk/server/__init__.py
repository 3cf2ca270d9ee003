"""The Flask application factory: one app, one blueprint per API style (:mod:`.native`, :mod:`.openai`,
:mod:`.anthropic`), and the HTTP plumbing they share (:mod:`.http`)."""

from __future__ import annotations

import logging
import re
import time

from flask import Flask

from ..apikeys import ApiKeys
from ..config import Config, load_config
from ..gate import SharedGate
from ..scratch import prune_scratch
from ..service import Service
from ..sessions import SessionStore
from . import anthropic, native, openai
from .anthropic import errors as anthropic_errors
from .http import docs, errors, meta
from .http.cors import init_cors
from .http.metrics import init_metrics
from .http.observe import init_observability
from .http.origin import init_request_origin
from .http.ratelimit import init_rate_limits
from .http.security import init_auth_enforcement, init_security
from .native import errors as native_errors
from .openai import errors as openai_errors

log = logging.getLogger(__name__)

def gate_dir(config: Config):
    """Where the run slots of this server (host:port) live, shared by all its gunicorn workers."""
    name = re.sub(r"[^A-Za-z0-9.-]", "_", f"{config.server.host}-{config.server.port}")
    return config.home / "run" / name / "gate"


def create_app(config: Config | None = None, *, store: SessionStore | None = None,
               api_keys: ApiKeys | None = None) -> Flask:
    """Build the app. Without ``config`` the usual file + environment config is loaded.

    ``api_keys``: keys already loaded (``clinvk serve`` loads them once in the master); by default
    they come from the config, and a gopass failure raises :class:`clinvk.apikeys.ApiKeyError`.
    """
    config = config if config is not None else load_config()
    api_keys = api_keys if api_keys is not None else ApiKeys.from_config(config)
    app = Flask(__name__)
    app.config["CLINVK"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_request_body_bytes or None
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    server = config.server
    gate = SharedGate(server.max_concurrent_runs, server.max_queued_runs, server.queue_timeout_secs, gate_dir(config))
    service = Service(config, store, gate)
    app.extensions["clinvk.service"] = service
    app.extensions["clinvk.started"] = time.monotonic()
    if config.session.retention_days > 0:
        try:
            removed = service.store.clean(config.session.retention_days)
            prune_scratch(config.home, service.store)
            if removed:
                log.info("removed %d sessions older than %d days", removed, config.session.retention_days)
        except Exception:
            log.exception("session retention cleanup failed")
    # Each API blueprint renders its own errors; this handler is for what no blueprint sees (unknown
    # paths, wrong methods, the meta routes).
    errors.init_app(app, native_errors.render, {"/openai/": openai_errors.render,
                                                "/anthropic/": anthropic_errors.render})
    # Hook order matters (before_request runs in this order, after_request in reverse): request id
    # and timing, Host and cross-site refusal, client IP + body limit + key check, rate limit (keyed by the key), then the 401.
    init_observability(app)
    init_request_origin(app, config)
    init_security(app, config, api_keys)
    init_rate_limits(app, config)
    init_auth_enforcement(app)
    init_cors(app, config)
    if server.metrics_enabled:
        init_metrics(app, service)
    for blueprint in (docs.bp, native.bp, openai.bp, anthropic.bp, meta.bp):
        app.register_blueprint(blueprint)
    return app
