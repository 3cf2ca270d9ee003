"""Request security: client IP behind trusted proxies, request-body limits, API keys, CORS.

Order on every request (``before_request``, see :func:`init_security` and create_app):

1. client IP (``g.client_ip``): the peer address, or — only when the peer is one of
   ``server.trusted_proxies`` — the address its ``X-Forwarded-For`` / ``X-Real-IP`` names;
2. body size: a declared ``Content-Length`` over ``server.max_request_body_bytes`` is a 413 at once,
   before a byte of the body is read (chunked bodies are cut at the limit while they are read);
3. API key identification (``g.api_key_id``), then the rate limiter (keyed by it), then the 401 for a
   missing or wrong key. CORS preflights and ``/health``, ``/docs``, ``/openapi.json`` need no key.

flask-cors adds its headers in ``after_request`` — to every response, errors (401, 413, 429) included.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import re

from flask import Flask, Response, current_app, g, request
from flask_cors import CORS
from werkzeug.exceptions import ClientDisconnected

from ..apikeys import ApiKeys
from ..config import Config
from .errors import error_response

log = logging.getLogger(__name__)

# Paths anyone may read, keys or not (exact, plus everything under /docs/ for its assets).
OPEN_PATHS = frozenset({"/health", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/docs/",)
CORS_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CORS_EXPOSE = ["X-Request-Id", "Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
               "X-RateLimit-Reset", "Link"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def is_preflight() -> bool:
    return request.method == "OPTIONS"


# ------------------------------------------------------------------------------------- client IP

def parse_networks(entries: list[str]) -> list[Network]:
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_ip(remote_addr: str | None, headers, trusted: list[Network]) -> str:
    """The client's address. Forwarding headers count only when the peer is a trusted proxy.

    ``X-Forwarded-For`` is read from the right: each hop that is itself a trusted proxy passes the
    question on to the address it received the request from; the first untrusted hop is the client.
    So a client cannot choose its identity by sending its own ``X-Forwarded-For``: the trusted proxy
    appends the real peer after whatever the client wrote.
    """
    peer = _ip(remote_addr or "")
    if peer is None:
        return remote_addr or "unknown"

    def is_trusted(address) -> bool:
        return any(address.version == net.version and address in net for net in trusted)

    if not trusted or not is_trusted(peer):
        return str(peer)
    hops = [h for value in headers.getlist("X-Forwarded-For") for h in value.split(",") if h.strip()]
    if hops:
        current = peer
        for hop in reversed(hops):
            address = _ip(hop)
            if address is None:  # garbage from further out: trust stops at the last good hop
                return str(current)
            if not is_trusted(address):
                return str(address)
            current = address
        return str(current)
    real = _ip(headers.get("X-Real-IP", ""))
    return str(real) if real is not None else str(peer)


# ------------------------------------------------------------------------------------------ keys

def presented_key() -> str | None:
    """``X-Api-Key`` if sent (it wins, as in the original), else an ``Authorization: Bearer`` token."""
    key = request.headers.get("X-Api-Key", "").strip()
    if key:
        return key
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def unauthorized(message: str) -> Response:
    return error_response(401, message, code="unauthorized",
                          headers={"WWW-Authenticate": 'Bearer realm="clinvk"'})


# ------------------------------------------------------------------------------------------ CORS

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


# -------------------------------------------------------------------------------------- wiring

def _buffer_chunked_body(limit: int) -> Response | None:
    """Read a chunked body (no Content-Length) up to ``limit`` + 1 bytes: 413 when there is more.

    werkzeug cuts a chunked body at MAX_CONTENT_LENGTH silently (its readall stops at the limit), so
    a body one byte over would reach the view truncated. The body read here (at most the limit) is
    handed on to the view as a plain stream with a Content-Length."""
    environ = request.environ
    try:
        data = environ["wsgi.input"].read(limit + 1)
    except BlockingIOError:
        seconds = current_app.config["CLINVK"].server.read_timeout_secs
        return error_response(408, f"the request body stopped arriving: nothing was received for {seconds} s "
                                   "(server.read_timeout_secs)")
    except Exception as exc:  # a broken chunk, a client gone: gunicorn's parser errors are not OSErrors
        log.info("could not read a chunked request body: %s", exc)
        return error_response(400, "the chunked request body could not be read (malformed or cut short)")
    if len(data) > limit:
        return error_response(413, f"request body is larger than this server accepts: at most {limit} bytes "
                                   "(server.max_request_body_bytes)")
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    request.__dict__.pop("stream", None)  # if anything looked at it already, build it again from environ
    return None


def init_security(app: Flask, config: Config, api_keys: ApiKeys) -> None:
    """Register client-IP, body-limit and key-identification hooks. Call before the limiter."""
    server = config.server
    trusted = parse_networks(server.trusted_proxies)
    limit = server.max_request_body_bytes or None
    app.extensions["clinvk.api_keys"] = api_keys

    @app.before_request
    def _identify():
        g.client_ip = client_ip(request.remote_addr, request.headers, trusted)
        if limit is not None:
            if request.content_length is not None:
                if request.content_length > limit:
                    return error_response(413, f"request body is {request.content_length} bytes; this server "
                                               f"accepts at most {limit} (server.max_request_body_bytes)")
            elif "chunked" in request.headers.get("Transfer-Encoding", "").lower():
                refusal = _buffer_chunked_body(limit)
                if refusal is not None:
                    return refusal
        g.api_key_id = None
        g.auth_error = None
        if not api_keys or is_preflight() or is_open_path(request.path):
            return None
        key = presented_key()
        if key is None:
            g.auth_error = "missing API key: send it as X-Api-Key or Authorization: Bearer <key>"
        else:
            g.api_key_id = api_keys.match(key)
            if g.api_key_id is None:
                g.auth_error = "invalid API key"
        return None


def init_auth_enforcement(app: Flask) -> None:
    """Answer 401 for a missing or wrong key. Registered after the limiter, so failed attempts from
    one address are rate limited too (by client IP)."""

    @app.before_request
    def _enforce():
        error = getattr(g, "auth_error", None)
        if error:
            return unauthorized(error)
        return None

    @app.errorhandler(ClientDisconnected)
    def _body_not_received(exc: ClientDisconnected):
        # With server.read_timeout_secs the listening socket has SO_RCVTIMEO: a client that stops
        # sending its body makes the read fail with EAGAIN, which werkzeug reports as a disconnect.
        # Either way it is the client's doing, never a 500.
        if isinstance(exc.__context__, BlockingIOError):
            seconds = current_app.config["CLINVK"].server.read_timeout_secs
            return error_response(408, f"the request body stopped arriving: nothing was received for "
                                       f"{seconds} s (server.read_timeout_secs)")
        return error_response(400, "the client disconnected before the whole request body arrived")


# ----------------------------------------------------------------------------------- OpenAPI

def document_common_errors(document: dict) -> dict:
    """Add the answers every operation can give because of this module and the rate limiter to the
    OpenAPI document (401 with keys on, 429 when limited; 400/408/413/415 for a request body), each
    in its API's own error shape. Entries a view documents itself are kept."""

    def error(description: str, path: str, headers: dict | None = None) -> dict:
        if path.startswith("/openai/"):
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIErrorSchema"}}}
        elif path.startswith("/anthropic/"):
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/AnthropicErrorSchema"}}}
        else:
            content = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemSchema"}}}
        response: dict = {"description": description, "content": content}
        if headers:
            response["headers"] = headers
        return response

    retry_after = {"Retry-After": {"description": "Seconds to wait before trying again", "required": True,
                                   "schema": {"type": "integer", "minimum": 1}}}
    www_auth = {"WWW-Authenticate": {"description": "Bearer", "required": True, "schema": {"type": "string"}}}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            common = {}
            if operation.get("security") != []:
                common["401"] = error("Missing or invalid API key (when the server has API keys)", path, www_auth)
                common["429"] = error("Rate limited, or every run slot taken and the wait queue full", path,
                                      retry_after)
            if "requestBody" in operation:
                common["400"] = error("Malformed JSON, or a body that is not a JSON object", path)
                common["408"] = error("The request body stopped arriving (server.read_timeout_secs)", path)
                common["413"] = error("Request body larger than server.max_request_body_bytes", path)
                common["415"] = error("Content-Type is not application/json", path)
            for status, response in common.items():
                if status not in responses:
                    responses[status] = response
                elif "headers" in response:
                    responses[status].setdefault("headers", {}).update(response["headers"])
    return document
