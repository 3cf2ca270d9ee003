"""Request admission: who the client is, whether its body may be read, whether its API key is good.

Order on every request (``before_request``, see :func:`init_security` and create_app):

1. client IP (``g.client_ip``, :mod:`.clientip`): the peer address, or — only when the peer is one of
   ``server.trusted_proxies`` — the address its ``X-Forwarded-For`` / ``X-Real-IP`` names;
2. body size: a declared ``Content-Length`` over ``server.max_request_body_bytes`` is a 413 at once,
   before a byte of the body is read (chunked bodies are cut at the limit while they are read);
3. API key identification (``g.api_key_id``, and ``g.tenant``, the :class:`~clinvk.tenants.Tenant` the
   key belongs to: :func:`~clinvk.tenants.local_tenant` when no key is configured), then the rate
   limiter (keyed by the tenant), then the 401 for a missing or wrong key. CORS preflights and ``/health``, ``/docs``, ``/openapi.json`` need no key.

A refusal is an :class:`ApiError`, rendered in the shape of the API the request was made to.
flask-cors (:mod:`.cors`) adds its headers in ``after_request`` — to every response, errors included.
"""

from __future__ import annotations

import io
import logging

from flask import Flask, g, request
from werkzeug.exceptions import ClientDisconnected

from ...apikeys import ApiKeys
from ...config import Config
from ...tenants import Tenants
from .clientip import client_ip, parse_networks
from .context import settings
from .errors import ApiError, converts

log = logging.getLogger(__name__)

# Paths anyone may read, keys or not (exact, plus everything under /docs/ for its assets).
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/docs/",)


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def is_preflight() -> bool:
    return request.method == "OPTIONS"


# ------------------------------------------------------------------------------------------ keys

def presented_key() -> str | None:
    """``X-Api-Key`` if sent (it wins, as in the Go clinvoker), else an ``Authorization: Bearer`` token."""
    key = request.headers.get("X-Api-Key", "").strip()
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def unauthorized(message: str) -> ApiError:
    return ApiError(401, message, code="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="clinvk"'})


# ------------------------------------------------------------------------------------ body limit

def body_stalled() -> ApiError:
    seconds = settings().read_timeout_secs
    return ApiError(408, f"the request body stopped arriving: nothing was received for {seconds} s "
                         "(server.read_timeout_secs)")


@converts(ClientDisconnected)
def _body_not_received(exc: ClientDisconnected) -> ApiError:
    # With server.read_timeout_secs the listening socket has SO_RCVTIMEO: a client that stops
    # sending its body makes the read fail with EAGAIN, which werkzeug reports as a disconnect.
    # Either way it is the client's doing, never a 500.
    if isinstance(exc.__context__, BlockingIOError):
        return body_stalled()
    return ApiError(400, "the client disconnected before the whole request body arrived")


def _buffer_chunked_body(limit: int) -> None:
    """Read a chunked body (no Content-Length) up to ``limit`` + 1 bytes: 413 when there is more.

    werkzeug cuts a chunked body at MAX_CONTENT_LENGTH silently (its readall stops at the limit), so
    a body one byte over would reach the view truncated. The body read here (at most the limit) is
    handed on to the view as a plain stream with a Content-Length."""
    environ = request.environ
    try:
        data = environ["wsgi.input"].read(limit + 1)
    except BlockingIOError:
        raise body_stalled() from None
    except Exception as exc:  # a broken chunk, a client gone: gunicorn's parser errors are not OSErrors
        log.info("could not read a chunked request body: %s", exc)
        raise ApiError(400, "the chunked request body could not be read (malformed or cut short)") from None
    if len(data) > limit:
        raise ApiError(413, f"request body is larger than this server accepts: at most {limit} bytes "
                            "(server.max_request_body_bytes)")
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    request.__dict__.pop("stream", None)  # if anything looked at it already, build it again from environ


# -------------------------------------------------------------------------------------- wiring


def init_security(app: Flask, config: Config, api_keys: ApiKeys, tenants: Tenants) -> None:
    """Register client-IP, body-limit and key-identification hooks. Call before the limiter."""
    server = config.server
    trusted = parse_networks(server.trusted_proxies)
    limit = server.max_request_body_bytes or None
    app.extensions["clinvk.api_keys"] = api_keys
    app.extensions["clinvk.tenants"] = tenants

    @app.before_request
    def _identify():
        g.client_ip = client_ip(request.remote_addr, request.headers, trusted)
        if limit is not None:
            if request.content_length is not None:
                if request.content_length > limit:
                    raise ApiError(413, f"request body is {request.content_length} bytes; this server "
                                        f"accepts at most {limit} (server.max_request_body_bytes)")
            elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
                _buffer_chunked_body(limit)
        g.api_key_id = None
        g.auth_error = None
        g.tenant = None
        if not api_keys:
            g.tenant = tenants.get(None)
            return None
        if is_preflight() or is_open_path(request.path):
            return None
        key = presented_key()
        if key is None:
            g.auth_error = "missing API key: send it as X-Api-Key or Authorization: Bearer <key>"
        else:
            g.api_key_id = api_keys.match(key)
            if g.api_key_id is None:
                g.auth_error = "invalid API key"
            else:
                g.tenant = tenants.get(g.api_key_id)
        return None


def init_auth_enforcement(app: Flask) -> None:
    """Answer 401 for a missing or wrong key. Registered after the limiter, so failed attempts from
    one address are rate limited too (by client IP)."""

    @app.before_request
    def _enforce():
        error = getattr(g, "auth_error", None)
        if error:
            raise unauthorized(error)
