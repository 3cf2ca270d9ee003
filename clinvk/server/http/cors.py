"""CORS with flask-cors: allowed origins may be patterns (``http://localhost:*``); preflights pass
before any key check (see :mod:`.security`), and every response gets the headers, errors included."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, request
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
    only_with_origin(app)


def only_with_origin(app: Flask) -> None:
    """Run flask-cors's after_request hook only for requests that send an ``Origin``: with
    ``always_send`` off it adds nothing to any other response (not even ``Vary``), yet would match
    every path against its resource patterns first."""
    hooks = app.after_request_funcs.setdefault(None, [])
    index = next(i for i, hook in enumerate(hooks) if getattr(hook, "__name__", "") == "cors_after_request")
    cors_after_request = hooks[index]

    def cors_when_asked(response: Response) -> Response:
        return cors_after_request(response) if request.headers.get("Origin") else response

    hooks[index] = cors_when_asked
