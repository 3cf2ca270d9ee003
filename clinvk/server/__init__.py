"""The Flask application factory: one app, three API blueprints and the meta routes."""

from __future__ import annotations

import logging
import time

from flask import Flask

from ..config import Config, load_config
from ..service import Service
from ..sessions import SessionStore
from . import api, meta
from .errors import register_error_handlers
from .observe import init_observability

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, *, store: SessionStore | None = None) -> Flask:
    """Build the app. Without ``config`` the usual file + environment config is loaded."""
    config = config if config is not None else load_config()
    app = Flask(__name__)
    app.config["CLINVK"] = config
    app.config["MAX_CONTENT_LENGTH"] = config.server.max_request_body_bytes or None
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    service = Service(config, store)
    app.extensions["clinvk.service"] = service
    app.extensions["clinvk.started"] = time.monotonic()
    if config.session.retention_days > 0:
        try:
            removed = service.store.clean(config.session.retention_days)
            if removed:
                log.info("removed %d sessions older than %d days", removed, config.session.retention_days)
        except Exception:
            log.exception("session retention cleanup failed")
    register_error_handlers(app)
    init_observability(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(meta.bp)
    return app
