"""CORS with flask-cors: allowed origins may be patterns (``http://localhost:*``); preflights pass
before any key check (see :mod:`.security`), and every response gets the headers, errors included."""

from __future__ import annotations

import logging
import re

from flask import Flask
from flask_cors import CORS

from ...config import Config

log = logging.getLogger(__name__)

CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_EXPOSE = ["X-Request-Id", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
               "X-RateLimit-Reset", "Link"]


def origin_pattern(pattern: str) -> re.Pattern[str]:
    """``http://localhost:*`` → a regex; ``*`` matches host-name and port characters only (never
    ``/``, ``@`` or ``?``), so ``http://localhost:*`` does not match ``http://localhost:1@evil.com``.
    ``*`` alone allows every origin."""
    pattern = pattern.strip()
    if pattern == "*":
        return re.compile(r".*", re.IGNORECASE)
    body = "".join("[A-Za-z0-9.-]*" if part == "*" else re.escape(part)
                   for part in re.split(r"(\*)", pattern.rstrip("/")))
    return re.compile(rf"{body}\Z", re.IGNORECASE)


def init_cors(app: Flask, config: Config) -> None:
    server = config.server
    origins = [origin_pattern(o) for o in server.cors_allowed_origins if o.strip()]
    if server.cors_allow_credentials and any("*" in o for o in server.cors_allowed_origins):
        log.warning("server.cors_allow_credentials is on with a wildcard in server.cors_allowed_origins: "
                    "every matching site may send credentialed requests")
    options = dict(origins=origins, methods=CORS_METHODS, expose_headers=CORS_EXPOSE,
                   supports_credentials=server.cors_allow_credentials, always_send=False,
                   send_wildcard=False, vary_header=True, allow_private_network=False)
    if server.cors_max_age > 0:
        options["max_age"] = server.cors_max_age
    CORS(app, **options)
